//! What an operator sees: Prometheus metrics and the log format, for both
//! binaries (`chat-server` and `chat-gateway`, whose embedded server
//! records into the same registry).
//!
//! The code records through the `metrics` facade; without an installed
//! recorder (tests, `--metrics-listen` not given) a record costs a load and
//! a branch. Metrics are served on a listener of their own, never on the
//! public port, so they are not published to the internet by accident.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

/// Metric names, one place for all of them (PROTOCOL-like: a name is an
/// interface dashboards depend on).
pub mod names {
    /// Gauge: client connections open (TCP, TLS and in-process).
    pub const CONNECTIONS: &str = "chat_connections";
    /// Counter: connections refused before being served, by `reason`.
    pub const CONNECTIONS_REFUSED: &str = "chat_connections_refused_total";
    /// Gauge: sessions the server knows (attached or waiting for a resume).
    pub const SESSIONS: &str = "chat_sessions";
    /// Gauge: sessions with a connection.
    pub const SESSIONS_ATTACHED: &str = "chat_sessions_attached";
    /// Counter: direct messages received, by `result` (stored, duplicate, refused).
    pub const MESSAGES_IN: &str = "chat_messages_received_total";
    /// Counter: broadcasts received, by `result`.
    pub const BROADCASTS_IN: &str = "chat_broadcasts_received_total";
    /// Counter: messages sent to clients, by `path`: `live_direct`,
    /// `live_broadcast`, or `redelivery` (a stored mailbox, owed or held
    /// messages sent after a sign-in or resume).
    pub const DELIVERIES: &str = "chat_deliveries_total";
    /// Histogram: requests committed in one store transaction.
    pub const STORE_BATCH: &str = "chat_store_batch_size";
    /// Histogram: seconds one store batch took, commit included.
    pub const STORE_COMMIT: &str = "chat_store_commit_seconds";
    /// Counter: store batches that failed (nothing of them was kept).
    pub const STORE_FAILED: &str = "chat_store_batches_failed_total";
    /// Gauge: direct messages stored and not yet acknowledged, all mailboxes.
    pub const MAILBOX_MESSAGES: &str = "chat_mailbox_messages";
    /// Counter: publications queued for the NATS bus, by `kind`: `direct`
    /// (a direct message for a user attached to another server),
    /// `broadcast` (one NATS message per batch), `catch_up` (a request that
    /// the other servers read their mailboxes again).
    pub const BUS_PUBLISHED: &str = "chat_bus_published_total";
    /// Counter: publications dropped because NATS was away and the queue
    /// full, by `kind` (the other servers are then asked to catch up).
    pub const BUS_DROPPED: &str = "chat_bus_dropped_total";
    /// Counter: catch-ups: passes reading the mailboxes of attached users
    /// again, after a NATS reconnection, an overflow, or a peer's request.
    pub const BUS_CATCH_UPS: &str = "chat_bus_catch_ups_total";
    /// Counter: broadcasts a catch-up found in PostgreSQL that had not
    /// reached this node (NATS lost them, or their node died first).
    pub const BUS_CAUGHT_UP_BROADCASTS: &str = "chat_bus_caught_up_broadcasts_total";
    /// Counter: rows of the cluster's `owners` table corrected by this
    /// node, by `kind`: `moved` (a session taken over elsewhere without
    /// this node being told, ended here), `freed` (a row left by a session
    /// that ended here), `away` (a row left "on a connection"),
    /// `given_back` (a row naming another session of the user here).
    pub const OWNER_REPAIRS: &str = "chat_owner_repairs_total";
    /// Gauge: uploads and downloads open.
    pub const TRANSFERS: &str = "chat_transfers";
    /// Counter: file bytes moved, by `direction` (up, down).
    pub const FILE_BYTES: &str = "chat_file_bytes_total";
    /// Gauge: 1 while this node holds its lease in the cluster, 0 once it
    /// has lost it and stops serving (PostgreSQL only).
    pub const LEASE_HELD: &str = "chat_lease_held";
    /// Counter: lease renewals, by `result` (renewed, failed, lost).
    pub const LEASE_RENEWALS: &str = "chat_lease_renewals_total";
    /// Gauge: this node's number in the cluster (PostgreSQL only).
    pub const NODE: &str = "chat_node";
    /// Gauge: WebSocket tunnels open (gateway).
    pub const TUNNELS: &str = "chat_gateway_tunnels";
    /// Counter: tunnels refused, by `reason` (gateway).
    pub const TUNNELS_REFUSED: &str = "chat_gateway_tunnels_refused_total";
    /// Counter: bytes carried by tunnels, by `direction` (gateway).
    pub const TUNNEL_BYTES: &str = "chat_gateway_bytes_total";
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Observability flags, shared by both binaries.
#[derive(Debug, Clone, Args)]
pub struct ObserveArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (keep it private,
    /// e.g. 127.0.0.1:9100).
    #[arg(long, env = "CHAT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log lines as `text` or `json` (one object per line); RUST_LOG sets
    /// the detail.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ObserveArgs {
    /// Sets up logging. Call once, first.
    pub fn init_logging(&self) {
        init_logging(self.log_format);
    }

    /// Starts the metrics listener, if asked for. Call once, inside the
    /// runtime.
    pub fn serve_metrics(&self) -> Result<(), BuildError> {
        if let Some(addr) = self.metrics_listen {
            serve_metrics(addr)?;
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
        }
        Ok(())
    }
}

/// Logs to standard error at RUST_LOG's detail (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Span fields (the connection's peer, the session) go with each
        // event, so a shipper can filter on them.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Installs the Prometheus recorder with its HTTP listener on `addr`.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(names::STORE_COMMIT.into()),
            &[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::STORE_BATCH.into()),
            &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ],
        )?
        .install()?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_gauge!(CONNECTIONS, "client connections open");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "connections refused before being served"
    );
    describe_gauge!(
        SESSIONS,
        "sessions the server knows, attached or awaiting a resume"
    );
    describe_gauge!(SESSIONS_ATTACHED, "sessions with a connection");
    describe_counter!(MESSAGES_IN, "direct messages received, by result");
    describe_counter!(BROADCASTS_IN, "broadcasts received, by result");
    describe_counter!(DELIVERIES, "messages sent to clients, by path");
    describe_histogram!(STORE_BATCH, "requests committed in one store transaction");
    describe_histogram!(
        STORE_COMMIT,
        Unit::Seconds,
        "time of one store batch, commit included"
    );
    describe_counter!(STORE_FAILED, "store batches that failed as a whole");
    describe_gauge!(
        MAILBOX_MESSAGES,
        "direct messages stored and not yet acknowledged"
    );
    describe_counter!(BUS_PUBLISHED, "publications queued for NATS, by kind");
    describe_counter!(
        BUS_DROPPED,
        "publications dropped while NATS was away, by kind"
    );
    describe_counter!(
        BUS_CATCH_UPS,
        "mailbox catch-ups after the bus may have lost messages"
    );
    describe_counter!(
        BUS_CAUGHT_UP_BROADCASTS,
        "broadcasts found by catch-ups that the bus had not brought"
    );
    describe_counter!(
        OWNER_REPAIRS,
        "names' rows corrected to match this node's sessions, by kind"
    );
    describe_gauge!(TRANSFERS, "uploads and downloads open");
    describe_counter!(FILE_BYTES, Unit::Bytes, "file bytes moved, by direction");
    describe_gauge!(TUNNELS, "WebSocket tunnels open");
    describe_counter!(TUNNELS_REFUSED, "tunnels refused, by reason");
    describe_counter!(
        TUNNEL_BYTES,
        Unit::Bytes,
        "bytes carried by tunnels, by direction"
    );
}
