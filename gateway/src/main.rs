//! `chat-gateway`: serves the web app and tunnels browsers to the chat
//! server (embedded unless `--server` is given) until SIGINT or SIGTERM.

use std::io::Write;

use clap::Parser;

/// The chat gateway: WebSocket tunnel at /ws, health at /healthz, the web
/// app at /. Without --server it runs the chat server in-process.
#[derive(Debug, Parser)]
#[command(name = "chat-gateway", version)]
struct Cli {
    #[command(flatten)]
    observe: server::observe::ObserveArgs,

    #[command(flatten)]
    config: gateway::GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.observe.init_logging();
    cli.observe.serve_metrics()?;
    let tls = cli.config.tls_cert.is_some();
    let running = gateway::start(cli.config).await?;
    let scheme = if tls { "https" } else { "http" };
    // A closed standard output (a service manager, a pipe that went away)
    // is no reason to stop serving.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "chat-gateway listening on {scheme}://{}",
        running.local_addr()
    );
    let _ = writeln!(out, "chat server (TCP) at {}", running.server_addr());
    let token = running.shutdown_token();
    tokio::select! {
        _ = server::signal::shutdown_signal() => tracing::info!("signal received; shutting down"),
        _ = token.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}
