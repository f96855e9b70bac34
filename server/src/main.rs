//! `chat-server`: runs the chat server until SIGINT or SIGTERM.

use clap::Parser;
use tracing_subscriber::EnvFilter;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = cli.config;
    config.listen = cli.listen;
    let running = server::start(config).await?;
    println!("chat-server listening on {}", running.local_addr());
    let token = running.shutdown_token();
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("signal received"),
        _ = token.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
