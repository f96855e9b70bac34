//! The HTTP routes: `/ws` (the tunnel), `/healthz`, and the web app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use server::peers::PeerLimits;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::origin::OriginPolicy;
use crate::{static_files, tunnel};

/// Bytes the WebSocket reads from the browser at a time, at most.
const READ_BUFFER: usize = 16 * 1024;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where the chat server listens.
    pub server_addr: String,
    /// The gateway's settings.
    pub config: Arc<GatewayConfig>,
    /// One permit per open tunnel.
    pub tunnels: Arc<Semaphore>,
    /// Tunnels open and the rate of new ones, per client address.
    pub peers: Arc<PeerLimits>,
    /// Which browser origins may open a tunnel.
    pub origins: Arc<OriginPolicy>,
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

/// Refuses a request before the upgrade, with a one-line reason.
fn refuse(status: StatusCode, reason: String) -> Response {
    (status, format!("{reason}\n")).into_response()
}

/// Checks the origin and the limits (per address: 429; overall: 503) and
/// opens the TCP connection first, so a browser learns at once, with a 503,
/// that the chat server is down; then upgrades and tunnels.
async fn ws(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.origins.allows(&headers) {
        tracing::warn!(%client, origin = ?headers.get("origin"), "foreign origin refused");
        return (
            StatusCode::FORBIDDEN,
            "this origin may not open the chat tunnel\n",
        )
            .into_response();
    }
    // The permit of the address lives as long as the tunnel.
    let peer = match state.peers.connect(client.ip()) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::warn!(%client, limit = e.limit, "too many tunnels from one address");
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many connections from your address (at most {}); close one and try again",
                    e.limit
                ),
            );
        }
    };
    if !state.peers.allow_sign_in(client.ip()) {
        tracing::warn!(%client, "tunnels opened too fast from one address");
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "connecting too often from your address; try again in a moment".into(),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return r;
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
        send_timeout: state.config.send_timeout(),
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
            drop(peer);
        })
}
