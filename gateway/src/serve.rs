//! Binding, optional TLS, the embedded chat server, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;
use futures_util::future::BoxFuture;
use hyper_util::rt::TokioTimer;
use server::peers::PeerLimits;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState, Nodes, Upstream};
use crate::config::GatewayConfig;
use crate::forwarded::TrustedProxies;
use crate::origin::OriginPolicy;

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The embedded chat server failed to start.
    #[error("embedded chat server: {0}")]
    Server(#[from] server::StartError),
    /// Binding the listener or reading the TLS files failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    server_addr: String,
    embedded: Option<server::RunningServer>,
    shutdown: CancellationToken,
    handle: Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    /// The HTTP/WebSocket address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The chat server's TCP address (the embedded one), or the `--server`
    /// nodes, comma-separated.
    pub fn server_addr(&self) -> &str {
        &self.server_addr
    }

    /// A token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Closes every tunnel with "going away", stops serving, then stops the
    /// embedded chat server.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        match self.task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        if let Some(server) = self.embedded {
            server.shutdown().await;
        }
        tracing::info!("gateway stopped");
    }
}

/// Closes a connection that sends nothing within the timeout. hyper's
/// header read timeout starts only once it knows the HTTP version, which it
/// learns from the first bytes, so a client that never sends one would
/// otherwise hold its connection open forever.
#[derive(Debug, Clone, Copy)]
struct FirstByteAcceptor {
    timeout: Duration,
}

impl<S: Send + 'static> Accept<TcpStream, S> for FirstByteAcceptor {
    type Stream = TcpStream;
    type Service = S;
    type Future = BoxFuture<'static, std::io::Result<(TcpStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(timeout, stream.peek(&mut byte)).await {
                Ok(Ok(n)) if n > 0 => Ok((stream, service)),
                Ok(Ok(_)) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            }
        })
    }
}

/// Closes HTTP/1 connections that do not send a whole request head in time.
fn limit_header_reads<A>(server: &mut axum_server::Server<A>, timeout: Duration) {
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GatewayError {
    let what = what.into();
    move |source| GatewayError::Io { what, source }
}

/// Starts the embedded chat server (unless `--server` names one), binds
/// the listener and serves in the background.
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    let (server_addr, upstream, embedded) = if config.server.is_empty() {
        let mut chat = config.chat.clone();
        chat.listen = config.chat_listen;
        let running = server::start(chat).await?;
        let upstream = Upstream::Embedded(running.connector());
        (running.local_addr().to_string(), upstream, Some(running))
    } else {
        let nodes = Nodes::new(config.server.clone(), config.proxy_protocol);
        (
            config.server.join(","),
            Upstream::Remote(Arc::new(nodes)),
            None,
        )
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(io(format!("cannot listen on {}", config.listen)))?;
    listener
        .set_nonblocking(true)
        .map_err(io("cannot configure the listener"))?;
    let addr = listener
        .local_addr()
        .map_err(io("cannot read the bound address"))?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            // Several crypto providers may be compiled in; pick ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(io("cannot load the TLS certificate and key"))?,
            )
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, chat_server = %server_addr, "gateway listening on {scheme}://{addr}");
    if config.public_origin.is_empty() {
        tracing::warn!(
            "no --public-origin (CHAT_PUBLIC_ORIGIN): browsers are checked against the Host \
             header, which DNS rebinding defeats; in production set it to the gateway's public \
             https origin, e.g. https://chat.example.org"
        );
    }
    let shutdown = CancellationToken::new();
    let header_read_timeout = config.header_read_timeout();
    let state = AppState {
        upstream,
        proxies: Arc::new(TrustedProxies::new(config.trusted_proxy.clone())),
        tunnels: Arc::new(Semaphore::new(config.max_tunnels.max(1))),
        peers: PeerLimits::new(config.peer_limits()),
        origins: Arc::new(OriginPolicy {
            public: config.public_origin.clone(),
            allow: config.allow_origin.clone(),
        }),
        config: Arc::new(config),
        shutdown: shutdown.clone(),
    };
    let service = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = Handle::new();
    let h = handle.clone();
    let first_byte = FirstByteAcceptor {
        timeout: header_read_timeout,
    };
    let task = tokio::spawn(async move {
        match tls {
            Some(tls) => {
                let acceptor = RustlsAcceptor::new(tls)
                    .handshake_timeout(header_read_timeout)
                    .acceptor(first_byte);
                let mut server = axum_server::from_tcp(listener).acceptor(acceptor).handle(h);
                limit_header_reads(&mut server, header_read_timeout);
                server.serve(service).await
            }
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .acceptor(first_byte)
                    .handle(h);
                limit_header_reads(&mut server, header_read_timeout);
                server.serve(service).await
            }
        }
    });
    Ok(RunningGateway {
        addr,
        server_addr,
        embedded,
        shutdown,
        handle,
        task,
    })
}
