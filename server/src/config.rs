//! The server's settings: every limit is here, with its flag, its
//! environment variable and its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::accounts::AccountMode;

/// A TLS certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// The chat server's settings. The gateway flattens these into its own
/// flags to run an embedded server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on for chat clients (TCP). Set by the binary's
    /// `--listen` flag, or by the gateway when it embeds the server.
    #[arg(skip = SocketAddr::from(([127, 0, 0, 1], 7878)))]
    pub listen: SocketAddr,

    /// TLS for the TCP port. Set by the binary's `--tls-cert` and
    /// `--tls-key` flags (the gateway's flags of those names are its own).
    #[arg(skip)]
    pub tls: Option<TlsFiles>,

    /// Directory for the SQLite database and the file bodies.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// PostgreSQL database holding the server's state instead of SQLite in
    /// --data-dir, as a URL (`postgres://USER@HOST:PORT/DB`) or a
    /// `key=value` string; needs --files-dir and --nats. The schema is
    /// created on start. Several servers may share the database (and
    /// NATS): direct messages and broadcasts reach users on any of them.
    /// One session per name across servers, resuming a session on another
    /// server, and leases are not written yet.
    #[arg(long, env = "CHAT_POSTGRES")]
    pub postgres: Option<String>,

    /// NATS server that carries live deliveries between the servers on
    /// one PostgreSQL database (`nats://HOST:PORT`); needed with
    /// --postgres, refused without it. Core publish/subscribe only, no
    /// JetStream: NATS wakes a server up, the database holds the messages,
    /// and what NATS loses while it is away is read again from there.
    #[arg(long, env = "CHAT_NATS")]
    pub nats: Option<String>,

    /// Directory of file bodies when the state is in PostgreSQL (needed
    /// with --postgres), shared by every server on that database. Nothing
    /// in it is removed at start: an unfinished upload may be another
    /// server's.
    #[arg(long, env = "CHAT_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// With --postgres: seconds of a node's lease in the cluster, renewed
    /// every third of it by PostgreSQL's clock. A server that cannot renew
    /// it in time stops serving and exits with an error (its supervisor
    /// starts it again as a new node); other nodes treat it as gone once
    /// it has ended.
    #[arg(long, env = "CHAT_LEASE", default_value_t = 6.0, value_parser = seconds)]
    pub lease: f64,

    /// Seconds of silence after which a session ends.
    #[arg(long, env = "CHAT_SESSION_TIMEOUT", default_value_t = 30.0, value_parser = seconds)]
    pub session_timeout: f64,

    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Largest file accepted, in bytes (the format's ceiling is 4 GiB - 1).
    #[arg(long, env = "CHAT_MAX_FILE_SIZE", default_value_t = 1 << 30)]
    pub max_file_size: u64,

    /// Total bytes of files stored, complete and in progress.
    #[arg(long, env = "CHAT_STORAGE_QUOTA", default_value_t = 20 << 30)]
    pub storage_quota: u64,

    /// Messages and broadcasts a session may send per second, on average (0: no limit).
    #[arg(long, env = "CHAT_MESSAGE_RATE", default_value_t = 1000)]
    pub message_rate: u32,

    /// Messages a session may send in one burst above the rate.
    #[arg(long, env = "CHAT_MESSAGE_BURST", default_value_t = 2000)]
    pub message_burst: u32,

    /// Bytes queued for a client that does not read before it is disconnected.
    #[arg(long, env = "CHAT_MAX_QUEUED_BYTES", default_value_t = 8 << 20)]
    pub max_queued_bytes: usize,

    /// Most recent broadcasts kept for redelivery to sessions that resume
    /// (once for the server, not per session); older ones are not redelivered.
    /// With PostgreSQL, also the broadcasts whose bodies the database keeps
    /// for catch-ups.
    #[arg(long, env = "CHAT_MAX_PENDING_BROADCASTS", default_value_t = 1000)]
    pub max_pending_broadcasts: usize,

    /// Seconds a closing connection gets to flush what is queued for it.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 5.0, value_parser = seconds)]
    pub write_timeout: f64,

    /// Durability: `full` syncs every commit to disk before it is answered
    /// (survives power loss); `normal` survives a crash or kill of the
    /// server but not of the machine. With --postgres, `full` is
    /// `synchronous_commit = on` and `normal` is `off`.
    #[arg(long, env = "CHAT_SYNC", default_value = "full", value_parser = ["full", "normal"])]
    pub sync: String,

    /// Seconds a new connection has to send SESSION REQUEST or SESSION
    /// PRESERVE before it gets SIGN_IN_TIMEOUT and is closed.
    #[arg(long, env = "CHAT_SIGN_IN_TIMEOUT", default_value_t = 10.0, value_parser = seconds)]
    pub sign_in_timeout: f64,

    /// Connections one client address may have open at once (IPv6: per /64;
    /// 0: no limit). More get TOO_MANY_CONNECTIONS and are closed.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: usize,

    /// Sign-ins (SESSION REQUEST, or SESSION PRESERVE on a new connection)
    /// per second one client address may make on average (0: no limit).
    #[arg(long, env = "CHAT_SIGN_IN_RATE", default_value_t = 10.0, value_parser = rate)]
    pub sign_in_rate: f64,

    /// Sign-ins one client address may make at once above the rate.
    #[arg(long, env = "CHAT_SIGN_IN_BURST", default_value_t = 100)]
    pub sign_in_burst: u32,

    /// Client addresses (CIDR) free of the per-address limits: a gateway on
    /// the same machine connects from loopback for all of its browsers.
    #[arg(
        long,
        env = "CHAT_IP_LIMITS_EXEMPT",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub ip_limits_exempt: Vec<ipnet::IpNet>,

    /// Proxies whose connections start with a PROXY protocol v2 header
    /// naming the real client (`chat-server --trusted-proxy`; an embedding
    /// gateway passes its browsers' addresses in process instead).
    #[arg(skip)]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// Bytes queued for all connections together; past it, a connection
    /// that already has unread bytes waiting is cut off as a slow reader.
    #[arg(long, env = "CHAT_MAX_TOTAL_QUEUED_BYTES", default_value_t = 1 << 30)]
    pub max_total_queued_bytes: usize,

    /// Uploads one session may have open at once.
    #[arg(long, env = "CHAT_MAX_UPLOADS", default_value_t = 8)]
    pub max_uploads: usize,

    /// Downloads one session may have open at once.
    #[arg(long, env = "CHAT_MAX_DOWNLOADS", default_value_t = 32)]
    pub max_downloads: usize,

    /// Uploads and downloads open in the whole server (each holds a file
    /// open). More get BUSY.
    #[arg(long, env = "CHAT_MAX_OPEN_TRANSFERS", default_value_t = 4096)]
    pub max_open_transfers: usize,

    /// Seconds a transfer may go without a chunk before it is closed (an
    /// upload's partial body is then discarded and its quota returned).
    #[arg(long, env = "CHAT_TRANSFER_IDLE_TIMEOUT", default_value_t = 120.0, value_parser = seconds)]
    pub transfer_idle_timeout: f64,

    /// Unread direct messages kept for one user; more get MAILBOX_FULL.
    #[arg(long, env = "CHAT_MAX_MAILBOX_MESSAGES", default_value_t = 10_000)]
    pub max_mailbox_messages: u64,

    /// Bytes of unread direct messages kept for one user; more get MAILBOX_FULL.
    #[arg(long, env = "CHAT_MAX_MAILBOX_BYTES", default_value_t = 64 << 20)]
    pub max_mailbox_bytes: u64,

    /// Days an unread direct message is kept before it is deleted (0: forever).
    #[arg(long, env = "CHAT_MAIL_EXPIRY_DAYS", default_value_t = 365.0, value_parser = days)]
    pub mail_expiry_days: f64,

    /// Queued messages sent ahead of the client's acknowledgements when a
    /// mailbox is redelivered.
    #[arg(long, env = "CHAT_REDELIVERY_WINDOW", default_value_t = 256)]
    pub redelivery_window: usize,

    /// Bytes one user may have reserved by uploads not yet finished.
    #[arg(long, env = "CHAT_MAX_USER_RESERVED", default_value_t = 4 << 30)]
    pub max_user_reserved: u64,

    /// Files one user may have stored or uploading.
    #[arg(long, env = "CHAT_MAX_USER_FILES", default_value_t = 10_000)]
    pub max_user_files: u64,

    /// Bytes every file is charged against the quotas at least (a small
    /// file still takes a disk block and a database row).
    #[arg(long, env = "CHAT_MIN_FILE_CHARGE", default_value_t = 4096)]
    pub min_file_charge: u64,

    /// Free bytes the data directory's disk must keep; below it, messages
    /// and uploads get INSUFFICIENT_STORAGE and nothing is written.
    #[arg(long, env = "CHAT_MIN_FREE_DISK", default_value_t = 512 << 20)]
    pub min_free_disk: u64,

    /// Days a record of an issued session number is kept.
    #[arg(long, env = "CHAT_SESSION_RECORD_DAYS", default_value_t = 7.0, value_parser = days)]
    pub session_record_days: f64,

    /// Requests waiting for the database at most; a client sending faster
    /// than the disk commits waits instead of growing the queue.
    #[arg(long, env = "CHAT_STORE_QUEUE", default_value_t = 4096)]
    pub store_queue: usize,

    /// Password-protected names: `open` (names may be claimed; unclaimed
    /// names work without a password), `required` (only accounts the
    /// operator made may sign in), `off` (no accounts).
    #[arg(long, env = "CHAT_ACCOUNTS", value_enum, default_value = "open")]
    pub accounts: AccountMode,

    /// Argon2id memory per password hash, KiB.
    #[arg(long, env = "CHAT_ARGON2_MEMORY_KIB", default_value_t = ARGON2_MEMORY_KIB)]
    pub argon2_memory_kib: u32,

    /// Argon2id passes over that memory.
    #[arg(long, env = "CHAT_ARGON2_ITERATIONS", default_value_t = ARGON2_ITERATIONS)]
    pub argon2_iterations: u32,

    /// Password hashes computed at once, at most (each takes a core for
    /// tens of milliseconds); more sign-ins wait their turn.
    #[arg(long, env = "CHAT_MAX_HASHING", default_value_t = 1)]
    pub max_hashing: usize,

    /// Wrong passwords a name may have before each further attempt must
    /// wait (1 s, doubling, up to --max-guess-delay).
    #[arg(long, env = "CHAT_FREE_GUESSES_PER_NAME", default_value_t = 5)]
    pub free_guesses_per_name: u32,

    /// Wrong passwords one client address may give, over all names, before
    /// its attempts must wait.
    #[arg(long, env = "CHAT_FREE_GUESSES_PER_IP", default_value_t = 20)]
    pub free_guesses_per_ip: u32,

    /// The longest wait imposed after wrong passwords, seconds: how long
    /// someone guessing can keep a name's owner out.
    #[arg(long, env = "CHAT_MAX_GUESS_DELAY", default_value_t = 30.0, value_parser = seconds)]
    pub max_guess_delay: f64,
}

/// Argon2id's memory cost by default: about 50 ms a hash on the
/// development machine (README, "Passwords").
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id's passes by default.
pub const ARGON2_ITERATIONS: u32 = 9;

/// A positive, finite number of seconds, at most a week (one rule for
/// every crate: [`proto::limits::parse_seconds`]).
pub use proto::limits::parse_seconds as seconds;

/// A finite number of days from 0 to 100 years; 0 means "never".
fn days(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=36_500.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("expected days between 0 and 36500, got {s}"))
    }
}

/// A finite, non-negative rate per second.
fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=1e9).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "expected a rate between 0 and 1e9 per second, got {s}"
        ))
    }
}

/// A duration from seconds that the flag parsers bounded; never panics,
/// whatever a struct built by hand holds.
fn duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.clamp(0.001, 100.0 * 365.0 * 86_400.0))
        .unwrap_or(Duration::from_secs(1))
}

impl Config {
    /// Settings for tests and embedding: port 0 on loopback, defaults otherwise.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            data_dir: data_dir.into(),
            postgres: None,
            nats: None,
            files_dir: None,
            lease: 6.0,
            session_timeout: 30.0,
            max_connections: 10_000,
            max_file_size: 1 << 30,
            storage_quota: 20 << 30,
            message_rate: 1000,
            message_burst: 2000,
            max_queued_bytes: 8 << 20,
            max_pending_broadcasts: 1000,
            write_timeout: 5.0,
            sync: "full".into(),
            sign_in_timeout: 10.0,
            max_connections_per_ip: 64,
            sign_in_rate: 10.0,
            sign_in_burst: 100,
            ip_limits_exempt: vec![
                ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            trusted_proxy: Vec::new(),
            max_total_queued_bytes: 1 << 30,
            max_uploads: 8,
            max_downloads: 32,
            max_open_transfers: 4096,
            transfer_idle_timeout: 120.0,
            max_mailbox_messages: 10_000,
            max_mailbox_bytes: 64 << 20,
            mail_expiry_days: 365.0,
            redelivery_window: 256,
            max_user_reserved: 4 << 30,
            max_user_files: 10_000,
            min_file_charge: 4096,
            min_free_disk: 512 << 20,
            session_record_days: 7.0,
            store_queue: 4096,
            accounts: AccountMode::Open,
            argon2_memory_kib: ARGON2_MEMORY_KIB,
            argon2_iterations: ARGON2_ITERATIONS,
            max_hashing: 1,
            free_guesses_per_name: 5,
            free_guesses_per_ip: 20,
            max_guess_delay: 30.0,
        }
    }

    /// The session timeout as a duration.
    pub fn session_timeout(&self) -> Duration {
        duration(self.session_timeout)
    }

    /// The node lease as a duration (at least 300 ms: a third of it is the
    /// renewal interval).
    pub fn lease(&self) -> Duration {
        duration(self.lease).max(Duration::from_millis(300))
    }

    /// The write timeout as a duration.
    pub fn write_timeout(&self) -> Duration {
        duration(self.write_timeout)
    }

    /// The sign-in deadline as a duration.
    pub fn sign_in_timeout(&self) -> Duration {
        duration(self.sign_in_timeout)
    }

    /// The transfer idle timeout as a duration.
    pub fn transfer_idle_timeout(&self) -> Duration {
        duration(self.transfer_idle_timeout)
    }

    /// How long unread mail is kept; `None` for ever.
    pub fn mail_expiry(&self) -> Option<Duration> {
        (self.mail_expiry_days > 0.0).then(|| duration(self.mail_expiry_days * 86_400.0))
    }

    /// How long records of issued session numbers are kept.
    pub fn session_record_age(&self) -> Duration {
        duration(self.session_record_days * 86_400.0)
    }

    /// The longest wait after wrong passwords.
    pub fn max_guess_delay(&self) -> Duration {
        duration(self.max_guess_delay)
    }

    /// The password hash's cost.
    pub fn hash_params(&self) -> crate::accounts::hasher::HashParams {
        crate::accounts::hasher::HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
        }
    }

    /// Whether a connection from `ip` must start with a PROXY header.
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxy.iter().any(|net| net.contains(&ip))
    }

    /// The per-address limits.
    pub fn peer_limits(&self) -> crate::peers::PeerLimitConfig {
        crate::peers::PeerLimitConfig {
            max_connections: self.max_connections_per_ip,
            sign_in_rate: self.sign_in_rate,
            sign_in_burst: f64::from(self.sign_in_burst.max(1)),
            exempt: self.ip_limits_exempt.clone(),
        }
    }

    /// The effective file size limit, never above the format's ceiling.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size.min(proto::limits::MAX_FILE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_finite_and_bounded() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        for bad in ["inf", "NaN", "-1", "0", "1e30", "x"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert!(days("0").is_ok());
        assert!(days("inf").is_err());
        assert!(rate("1e300").is_err());
        // A hand-built config with absurd values still gives durations.
        let mut c = Config::for_data_dir("x");
        c.session_timeout = f64::INFINITY;
        c.write_timeout = f64::NAN;
        c.mail_expiry_days = 1e300;
        let _ = (c.session_timeout(), c.write_timeout(), c.mail_expiry());
    }
}
