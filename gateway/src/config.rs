//! The gateway's settings, with flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// How the gateway listens, where it tunnels to and its limits. The
/// embedded chat server's own settings are flattened in as [`server::Config`].
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address for HTTP and WebSocket clients (browsers).
    #[arg(long, env = "CHAT_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A chat server running elsewhere (HOST:PORT). Without it, the gateway
    /// runs an embedded chat server with the settings below.
    #[arg(long, env = "CHAT_SERVER")]
    pub server: Option<String>,

    /// TCP address of the embedded chat server, for native clients (`chat`).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:7878")]
    pub chat_listen: SocketAddr,

    /// Directory of the built web app (trunk's output), served at `/`.
    #[arg(long, env = "CHAT_WEB_DIR", default_value = "dist")]
    pub web_dir: PathBuf,

    /// Origins allowed to open the WebSocket besides the gateway's own host
    /// (for example `https://chat.example.org`); `*` allows any.
    #[arg(long, env = "CHAT_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// Most WebSocket tunnels open at once; more are refused with 503.
    #[arg(long, env = "CHAT_MAX_TUNNELS", default_value_t = 10_000)]
    pub max_tunnels: usize,

    /// Largest WebSocket message accepted from a browser, in bytes.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub max_message_size: usize,

    /// Seconds between WebSocket pings; a browser silent for two intervals is dropped.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 20.0)]
    pub ping_interval: f64,

    /// Seconds to wait for the chat server to accept a tunnel's connection.
    #[arg(long, env = "CHAT_CONNECT_TIMEOUT", default_value_t = 5.0)]
    pub connect_timeout: f64,

    /// PEM certificate chain: serve HTTPS and wss:// (needs --tls-key).
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The embedded chat server's settings (ignored with --server).
    #[command(flatten)]
    pub chat: server::Config,
}

impl GatewayConfig {
    /// Settings for tests: loopback port 0 for both listeners, an embedded
    /// server on `data_dir`, and the web app in `web_dir`.
    pub fn for_tests(data_dir: impl Into<PathBuf>, web_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            server: None,
            chat_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            web_dir: web_dir.into(),
            allow_origin: Vec::new(),
            max_tunnels: 10_000,
            max_message_size: 1 << 20,
            ping_interval: 20.0,
            connect_timeout: 5.0,
            tls_cert: None,
            tls_key: None,
            chat: server::Config::for_data_dir(data_dir),
        }
    }

    /// The ping interval as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs_f64(self.ping_interval.max(0.01))
    }

    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout.max(0.01))
    }
}
