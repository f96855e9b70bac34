//! `chat-server`: runs the chat server until SIGINT or SIGTERM.

use clap::Parser;

/// The chat server: sessions, direct messages, broadcasts and shared files
/// over TCP, stored in SQLite under the data directory.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version)]
struct Cli {
    /// Address to listen on for chat clients (TCP).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:7878")]
    listen: std::net::SocketAddr,

    #[command(flatten)]
    config: server::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::signal::init_logging();
    let cli = Cli::parse();
    let mut config = cli.config;
    config.listen = cli.listen;
    let running = server::start(config).await?;
    println!("chat-server listening on {}", running.local_addr());
    let token = running.shutdown_token();
    tokio::select! {
        _ = server::signal::shutdown_signal() => tracing::info!("signal received"),
        _ = token.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}
