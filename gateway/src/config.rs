//! The gateway's settings, with flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;
use server::peers::PeerLimitConfig;

pub use proto::limits::{parse_seconds, MAX_SECONDS};

/// Parses a per-second rate flag: finite, 0 (no limit) or more, at most a million.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && (0.0..=1e6).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is out of range: give a number from 0 to 1000000"
        ))
    }
}

/// Parses `--base-path`: absolute, made of URL-safe path characters, no
/// empty, `.` or `..` segment; a trailing `/` is added.
pub fn parse_base_path(s: &str) -> Result<String, String> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!("`{s}` must start with /, as in /chat/"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok("/".into());
    }
    for segment in rest.split('/') {
        let safe = segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
        if segment.is_empty() || segment == "." || segment == ".." || !safe {
            return Err(format!(
                "`{s}` is not a plain path: use letters, digits and - . _ ~ between single slashes"
            ));
        }
    }
    Ok(format!("/{rest}/"))
}

/// How the gateway listens, where it tunnels to and its limits. The
/// embedded chat server's own settings are flattened in as [`server::Config`].
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address for HTTP and WebSocket clients (browsers).
    #[arg(long, env = "CHAT_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Chat servers running elsewhere (HOST:PORT, comma-separated: the
    /// nodes of a cluster). Each tunnel goes to the next node in turn, and
    /// to the one after it if that node is down. Without it, the gateway
    /// runs an embedded chat server with the settings below.
    #[arg(long, env = "CHAT_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,

    /// TCP address of the embedded chat server, for native clients (`chat`).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:7878")]
    pub chat_listen: SocketAddr,

    /// A directory of the built web app (trunk's output) to serve instead
    /// of the copy built into the gateway: for development.
    #[arg(long, env = "CHAT_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// The path everything is served under: the app, `ws` and `healthz`.
    /// For a proxy that forwards `https://example.org/chat/`, give `/chat/`.
    #[arg(long, env = "CHAT_BASE_PATH", default_value = "/", value_parser = parse_base_path)]
    pub base_path: String,

    /// Messages each browser keeps per conversation in its history
    /// (IndexedDB, on the user's device); past it the oldest go first.
    /// The app reads it from the page it is served in.
    #[arg(long, env = "CHAT_HISTORY_MESSAGES", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_messages: u32,

    /// Reverse proxies (CIDR, e.g. `127.0.0.1/32` for nginx on the same
    /// machine) whose `Forwarded` or `X-Forwarded-For` header names the
    /// browser's address, for the per-address limits, the logs and the
    /// chat server. Other peers' headers are ignored.
    #[arg(long, env = "CHAT_GATEWAY_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<IpNet>,

    /// Start every connection to --server with a PROXY protocol v2 header
    /// naming the browser's address; the server must list this gateway on
    /// its --trusted-proxy. (An embedded server is told in process.)
    #[arg(long, env = "CHAT_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// Origins allowed to open the WebSocket besides the gateway's own
    /// (for example `https://other.example.org`); `*` allows any.
    #[arg(long, env = "CHAT_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// The gateway's own public origins (for example
    /// `https://chat.example.org`). When given, a browser's `Origin` must be
    /// one of these or on --allow-origin, and the `Host` header is not
    /// consulted (DNS rebinding defeats it). Set it in production.
    #[arg(long, env = "CHAT_PUBLIC_ORIGIN", value_delimiter = ',')]
    pub public_origin: Vec<String>,

    /// Most WebSocket tunnels open at once; more are refused with 503.
    #[arg(long, env = "CHAT_MAX_TUNNELS", default_value_t = 10_000)]
    pub max_tunnels: usize,

    /// Most tunnels one client address (IPv6: one /64) may have open at
    /// once; more are refused with 429 (0: no limit).
    #[arg(long, env = "CHAT_MAX_TUNNELS_PER_IP", default_value_t = 64)]
    pub max_tunnels_per_ip: usize,

    /// New tunnels per second one client address may open, on average;
    /// faster ones are refused with 429 (0: no limit).
    #[arg(long, env = "CHAT_TUNNEL_RATE", default_value_t = 10.0, value_parser = parse_rate)]
    pub tunnel_rate: f64,

    /// New tunnels one client address may open at once above --tunnel-rate.
    #[arg(long, env = "CHAT_TUNNEL_BURST", default_value_t = 100.0, value_parser = parse_rate)]
    pub tunnel_burst: f64,

    /// Client networks (CIDRs, e.g. `10.0.0.0/8`) that the per-address
    /// tunnel limits do not apply to.
    #[arg(long, env = "CHAT_TUNNEL_LIMITS_EXEMPT", value_delimiter = ',')]
    pub tunnel_limits_exempt: Vec<IpNet>,

    /// Largest WebSocket message accepted from a browser, in bytes.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub max_message_size: usize,

    /// Seconds between WebSocket pings; a browser silent for two intervals is dropped.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 20.0, value_parser = parse_seconds)]
    pub ping_interval: f64,

    /// Seconds to wait for the chat server to accept a tunnel's connection.
    #[arg(long, env = "CHAT_CONNECT_TIMEOUT", default_value_t = 5.0, value_parser = parse_seconds)]
    pub connect_timeout: f64,

    /// Seconds one WebSocket send (or the closing handshake) may take; a
    /// browser that stops reading for longer loses its tunnel.
    #[arg(long, env = "CHAT_SEND_TIMEOUT", default_value_t = 10.0, value_parser = parse_seconds)]
    pub send_timeout: f64,

    /// Seconds an HTTP client has to send its request headers (and, with
    /// TLS, to finish the handshake); idle connections are closed after it.
    #[arg(long, env = "CHAT_HEADER_READ_TIMEOUT", default_value_t = 10.0, value_parser = parse_seconds)]
    pub header_read_timeout: f64,

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
            server: Vec::new(),
            chat_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            web_dir: Some(web_dir.into()),
            base_path: "/".into(),
            history_messages: 500,
            trusted_proxy: Vec::new(),
            proxy_protocol: false,
            allow_origin: Vec::new(),
            public_origin: Vec::new(),
            max_tunnels: 10_000,
            max_tunnels_per_ip: 64,
            tunnel_rate: 10.0,
            tunnel_burst: 100.0,
            tunnel_limits_exempt: Vec::new(),
            max_message_size: 1 << 20,
            ping_interval: 20.0,
            connect_timeout: 5.0,
            send_timeout: 10.0,
            header_read_timeout: 10.0,
            tls_cert: None,
            tls_key: None,
            chat: server::Config::for_data_dir(data_dir),
        }
    }

    /// The ping interval as a duration.
    pub fn ping_interval(&self) -> Duration {
        seconds(self.ping_interval)
    }

    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        seconds(self.connect_timeout)
    }

    /// The WebSocket send timeout as a duration.
    pub fn send_timeout(&self) -> Duration {
        seconds(self.send_timeout)
    }

    /// The HTTP header read timeout as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        seconds(self.header_read_timeout)
    }

    /// The per-address tunnel limits.
    pub fn peer_limits(&self) -> PeerLimitConfig {
        PeerLimitConfig {
            max_connections: self.max_tunnels_per_ip,
            sign_in_rate: self.tunnel_rate,
            sign_in_burst: self.tunnel_burst,
            exempt: self.tunnel_limits_exempt.clone(),
        }
    }
}

/// A duration from seconds that cannot panic, whatever the field holds
/// (code may set the fields directly, bypassing [`parse_seconds`]).
fn seconds(s: f64) -> Duration {
    let s = if s.is_nan() {
        0.01
    } else {
        s.clamp(0.01, MAX_SECONDS)
    };
    Duration::from_secs_f64(s)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: GatewayConfig,
    }

    fn parse(args: &[&str]) -> Result<GatewayConfig, clap::Error> {
        let mut argv = vec!["chat-gateway"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| c.config)
    }

    #[test]
    fn infinite_or_huge_durations_are_refused() {
        for bad in [
            ["--ping-interval", "inf"],
            ["--connect-timeout", "1e30"],
            ["--send-timeout", "NaN"],
            ["--header-read-timeout=-1", "--ping-interval=20"],
            ["--send-timeout", "0"],
            ["--ping-interval", "soon"],
        ] {
            let e = parse(&bad).expect_err(&format!("{bad:?} accepted"));
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
        }
    }

    #[test]
    fn sane_durations_and_limits_are_accepted() {
        let c = parse(&[
            "--ping-interval",
            "0.5",
            "--send-timeout",
            "604800",
            "--tunnel-limits-exempt",
            "10.0.0.0/8,2001:db8::/32",
            "--public-origin",
            "https://a.example,https://b.example",
        ])
        .unwrap();
        assert_eq!(c.ping_interval(), Duration::from_millis(500));
        assert_eq!(c.send_timeout(), Duration::from_secs(604_800));
        assert_eq!(c.tunnel_limits_exempt.len(), 2);
        assert_eq!(c.public_origin.len(), 2);
        assert!(parse(&["--tunnel-rate", "inf"]).is_err());
        assert!(parse(&["--tunnel-limits-exempt", "not-a-net"]).is_err());
    }

    #[test]
    fn fields_set_in_code_never_panic() {
        assert_eq!(seconds(f64::INFINITY), Duration::from_secs_f64(MAX_SECONDS));
        assert_eq!(seconds(f64::NAN), Duration::from_millis(10));
        assert_eq!(seconds(-3.0), Duration::from_millis(10));
    }

    #[test]
    fn base_paths_are_normalised_and_unsafe_ones_refused() {
        assert_eq!(parse_base_path("/").unwrap(), "/");
        assert_eq!(parse_base_path("/chat").unwrap(), "/chat/");
        assert_eq!(parse_base_path("/chat/").unwrap(), "/chat/");
        assert_eq!(parse_base_path("/team/chat-1/").unwrap(), "/team/chat-1/");
        for bad in [
            "chat", "/a//b/", "/../x", "/a/./b", "/a b/", "/\"x\"/", "/<x>/",
        ] {
            assert!(parse_base_path(bad).is_err(), "{bad} accepted");
        }
        let c = parse(&["--base-path", "/chat", "--trusted-proxy", "127.0.0.1/32"]).unwrap();
        assert_eq!(c.base_path, "/chat/");
        assert_eq!(c.trusted_proxy.len(), 1);
    }
}
