//! The HTTP routes: `/ws` (the tunnel), `/healthz`, and the web app.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::Request;
use axum::extract::{ConnectInfo, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use server::observe::names;
use server::peers::PeerLimits;
use server::proxy_header;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::forwarded::TrustedProxies;
use crate::origin::OriginPolicy;
use crate::{static_files, tunnel};

/// Bytes the WebSocket reads from the browser at a time, at most.
const READ_BUFFER: usize = 16 * 1024;

/// Where tunnels lead.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Chat servers elsewhere, over TCP.
    Remote(Arc<Nodes>),
    /// The chat server in this process.
    Embedded(server::Connector),
}

/// The chat servers given with `--server`: the nodes of a cluster, or one.
#[derive(Debug)]
pub struct Nodes {
    addrs: Vec<String>,
    /// Where the next tunnel starts looking: tunnels are spread over the
    /// nodes in turn.
    next: AtomicUsize,
    /// Whether each connection starts with a PROXY v2 header.
    proxy_protocol: bool,
}

impl Nodes {
    /// The nodes at these HOST:PORT addresses.
    pub fn new(addrs: Vec<String>, proxy_protocol: bool) -> Self {
        Self {
            addrs,
            next: AtomicUsize::new(0),
            proxy_protocol,
        }
    }

    /// The nodes in the order this tunnel tries them.
    fn in_turn(&self) -> impl Iterator<Item = &String> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.addrs.len();
        (0..n).map(move |i| &self.addrs[(start + i) % n])
    }
}

/// One direction of a tunnel's connection to the chat server.
type ServerRead = Box<dyn AsyncRead + Send + Unpin>;
/// The other direction.
type ServerWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where tunnels lead.
    pub upstream: Upstream,
    /// Which peers' forwarding headers name the browser.
    pub proxies: Arc<TrustedProxies>,
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

/// The gateway's routes, under `--base-path`.
pub fn router(state: AppState) -> Router {
    let base = state.config.base_path.clone();
    let web = static_files::router(state.config.web_dir.as_deref(), &base);
    let routes = Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .with_state(state)
        .merge(web);
    if base == "/" {
        return routes;
    }
    // The outer router has nothing but a fallback, so its middleware runs
    // before the inner one routes: on the path with the base taken off.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn_with_state(
            Arc::<str>::from(base),
            below_base,
        ))
}

/// Serves what is below the base path as if it were at the root; `/chat`
/// is sent to `/chat/`, and anything else is not found.
async fn below_base(State(base): State<Arc<str>>, mut req: Request, next: Next) -> Response {
    let prefix = base.trim_end_matches('/');
    let path = req.uri().path();
    if path == prefix {
        return Redirect::permanent(&base).into_response();
    }
    let Some(rest) = path.strip_prefix(prefix).filter(|r| r.starts_with('/')) else {
        return (
            StatusCode::NOT_FOUND,
            format!("not found: the chat is at {base}\n"),
        )
            .into_response();
    };
    let rest = match req.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = rest.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

/// Opens a tunnel's connection to the chat server on behalf of `client`.
async fn connect(
    state: &AppState,
    client: SocketAddr,
) -> Result<(ServerRead, ServerWrite), String> {
    match &state.upstream {
        Upstream::Embedded(connector) => {
            let stream = connector.connect(client).map_err(|e| e.to_string())?;
            let (r, w) = tokio::io::split(stream);
            Ok((Box::new(r), Box::new(w)))
        }
        Upstream::Remote(nodes) => {
            let header = nodes.proxy_protocol.then_some(Some(client));
            let mut failures = Vec::new();
            // A node that is down or refuses costs this tunnel one attempt;
            // the next node takes it.
            for addr in nodes.in_turn() {
                match open_tcp(state, addr, header).await {
                    Ok(tcp) => {
                        let (r, w) = tcp.into_split();
                        return Ok((Box::new(r), Box::new(w)));
                    }
                    Err(e) => {
                        tracing::warn!(node = %addr, error = %e, "chat server node unreachable; trying the next");
                        failures.push(format!("{addr}: {e}"));
                    }
                }
            }
            Err(failures.join("; "))
        }
    }
}

/// Connects to a remote chat server and, when `header` is given, sends the
/// PROXY header first: naming `Some(client)`, or LOCAL for the gateway's
/// own connections (health checks).
async fn open_tcp(
    state: &AppState,
    addr: &str,
    header: Option<Option<SocketAddr>>,
) -> Result<TcpStream, String> {
    let open = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        if let Some(client) = header {
            let bytes = match client {
                Some(client) => proxy_header::encode(client, tcp.peer_addr()?),
                None => proxy_header::local(),
            };
            tcp.write_all(&bytes).await?;
        }
        Ok::<_, std::io::Error>(tcp)
    };
    match tokio::time::timeout(state.config.connect_timeout(), open).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// 200 when the chat server takes connections (with several nodes: when
/// any does), 503 when it does not. The first line is the verdict; with
/// `--server`, one line per node follows.
async fn healthz(State(state): State<AppState>) -> Response {
    let nodes = match &state.upstream {
        Upstream::Embedded(connector) if connector.is_running() => {
            return (StatusCode::OK, "ok\n").into_response();
        }
        Upstream::Embedded(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "chat server unreachable: the embedded chat server has stopped\n",
            )
                .into_response();
        }
        Upstream::Remote(nodes) => nodes.clone(),
    };
    let header = nodes.proxy_protocol.then_some(None);
    let checks = nodes.addrs.iter().map(|addr| {
        let state = &state;
        async move { (addr, open_tcp(state, addr, header).await.map(drop)) }
    });
    let results = futures_util::future::join_all(checks).await;
    let up = results.iter().filter(|(_, r)| r.is_ok()).count();
    let (status, verdict) = match up {
        0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "chat server unreachable".to_owned(),
        ),
        n if n == results.len() => (StatusCode::OK, "ok".to_owned()),
        n => (
            StatusCode::OK,
            format!("degraded: {n} of {} nodes up", results.len()),
        ),
    };
    let mut body = format!("{verdict}\n");
    for (addr, result) in results {
        match result {
            Ok(()) => body.push_str(&format!("node {addr}: ok\n")),
            Err(e) => body.push_str(&format!("node {addr}: unreachable: {e}\n")),
        }
    }
    (status, body).into_response()
}

/// Counts a tunnel refused before the upgrade.
fn refused(reason: &'static str) {
    metrics::counter!(names::TUNNELS_REFUSED, "reason" => reason).increment(1);
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client = state.proxies.client(peer, &headers);
    if !state.origins.allows(&headers) {
        refused("origin");
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
            refused("per_address");
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
        refused("rate");
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
        refused("full");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try again later\n",
        )
            .into_response();
    };
    let (read, write) = match connect(&state, client).await {
        Ok(halves) => halves,
        Err(e) => {
            refused("server_unreachable");
            tracing::warn!(%client, error = %e, "chat server unreachable");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("chat server unreachable: {e}\n"),
            )
                .into_response();
        }
    };
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
            metrics::gauge!(names::TUNNELS).increment(1.0);
            let report = tunnel::run(socket, read, write, opts, shutdown).await;
            tracing::info!(
                %client,
                to_server = report.to_server,
                to_browser = report.to_browser,
                seconds = started.elapsed().as_secs_f64(),
                end = ?report.end,
                "tunnel closed"
            );
            metrics::gauge!(names::TUNNELS).decrement(1.0);
            metrics::counter!(names::TUNNEL_BYTES, "direction" => "to_server")
                .increment(report.to_server);
            metrics::counter!(names::TUNNEL_BYTES, "direction" => "to_browser")
                .increment(report.to_browser);
            drop(permit);
            drop(peer);
        })
}
