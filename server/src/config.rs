//! The server's settings: every limit is here, with its flag, its
//! environment variable and its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// The chat server's settings. The gateway flattens these into its own
/// flags to run an embedded server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on for chat clients (TCP). Set by the binary's
    /// `--listen` flag, or by the gateway when it embeds the server.
    #[arg(skip = SocketAddr::from(([127, 0, 0, 1], 7878)))]
    pub listen: SocketAddr,

    /// Directory for the SQLite database and the file bodies.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Seconds of silence after which a session ends.
    #[arg(long, env = "CHAT_SESSION_TIMEOUT", default_value_t = 30.0)]
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

    /// Unacknowledged broadcasts kept per session for redelivery; older ones are dropped.
    #[arg(long, env = "CHAT_MAX_PENDING_BROADCASTS", default_value_t = 1000)]
    pub max_pending_broadcasts: usize,

    /// Seconds a closing connection gets to flush what is queued for it.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 5.0)]
    pub write_timeout: f64,

    /// SQLite durability: `full` syncs every commit to disk (survives power
    /// loss); `normal` survives a crash or kill of the server but not of the machine.
    #[arg(long, env = "CHAT_SYNC", default_value = "full", value_parser = ["full", "normal"])]
    pub sync: String,
}

impl Config {
    /// Settings for tests and embedding: port 0 on loopback, defaults otherwise.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
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
        }
    }

    /// The session timeout as a duration.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.session_timeout.max(0.001))
    }

    /// The write timeout as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.write_timeout.max(0.0))
    }

    /// The effective file size limit, never above the format's ceiling.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size.min(proto::limits::MAX_FILE_SIZE)
    }
}
