//! The HTTP routes: `/ws` (the tunnel), `/healthz`, and the web app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpStream;

/// Bytes the WebSocket reads from the browser at a time, at most.
const READ_BUFFER: usize = 16 * 1024;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::{origin, static_files, tunnel};

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where the chat server listens.
    pub server_addr: String,
    /// The gateway's settings.
    pub config: Arc<GatewayConfig>,
    /// One permit per open tunnel.
    pub tunnels: Arc<Semaphore>,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
}

/// The gateway's routes.
pub fn router(state: AppState) -> Router {
    let web = static_files::router(&state.config.web_dir);
    Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .with_state(state)
        .merge(web)
}

async fn connect(state: &AppState) -> Result<TcpStream, String> {
    match tokio::time::timeout(
        state.config.connect_timeout(),
        TcpStream::connect(&state.server_addr),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// 200 when the chat server accepts connections, 503 when it does not.
async fn healthz(State(state): State<AppState>) -> Response {
    match connect(&state).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("chat server unreachable: {e}\n"),
        )
            .into_response(),
    }
}

/// Opens the TCP connection first, so a browser learns at once, with a
/// 503, that the chat server is down, then upgrades and tunnels.
async fn ws(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin::allowed(&headers, &state.config.allow_origin) {
        tracing::warn!(%client, origin = ?headers.get("origin"), "foreign origin refused");
        return (
            StatusCode::FORBIDDEN,
            "this origin may not open the chat tunnel\n",
        )
            .into_response();
    }
    let Ok(permit) = state.tunnels.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try again later\n",
        )
            .into_response();
    };
    let tcp = match connect(&state).await {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(%client, error = %e, "chat server unreachable");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("chat server unreachable: {e}\n"),
            )
                .into_response();
        }
    };
    let _ = tcp.set_nodelay(true);
    let max = state.config.max_message_size;
    let opts = tunnel::TunnelOptions {
        ping_interval: state.config.ping_interval(),
        ..Default::default()
    };
    let shutdown = state.shutdown.clone();
    upgrade
        // tungstenite zeroes its whole read buffer before every read (128
        // KiB by default): that memset was the largest cost of a tunnel.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let started = Instant::now();
            let (read, write) = tcp.into_split();
            let report = tunnel::run(socket, read, write, opts, shutdown).await;
            tracing::info!(
                %client,
                to_server = report.to_server,
                to_browser = report.to_browser,
                seconds = started.elapsed().as_secs_f64(),
                end = ?report.end,
                "tunnel closed"
            );
            drop(permit);
        })
}
