//! `chat-gateway`: serves the web app and tunnels browsers to the chat
//! server (embedded unless `--server` is given) until SIGINT or SIGTERM.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The chat gateway: WebSocket tunnel at /ws, health at /healthz, the web
/// app at /. Without --server it runs the chat server in-process.
#[derive(Debug, Parser)]
#[command(name = "chat-gateway", version)]
struct Cli {
    #[command(flatten)]
    config: gateway::GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let tls = cli.config.tls_cert.is_some();
    let running = gateway::start(cli.config).await?;
    let scheme = if tls { "https" } else { "http" };
    println!(
        "chat-gateway listening on {scheme}://{}",
        running.local_addr()
    );
    println!("chat server (TCP) at {}", running.server_addr());
    let token = running.shutdown_token();
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("signal received; shutting down"),
        _ = token.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let ctrl_c = tokio::signal::ctrl_c();
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
