//! Broadcast fan-out: one sender, many online receivers.

use bytes::{BufMut, BytesMut};
use proto::Event;
use tokio::time::Instant;

use super::stats::{histogram, latencies, Table};
use super::Bench;
use crate::session::{Session, SessionError};

async fn receive(
    mut s: Session,
    expected: usize,
    origin: Instant,
) -> Result<(hdrhistogram::Histogram<u64>, f64), SessionError> {
    let mut h = histogram();
    let mut got = 0;
    let mut last = 0.0;
    while got < expected {
        if let Event::Incoming {
            body,
            broadcast: true,
            ..
        } = s.expect_event().await?
        {
            let sent = u64::from_be_bytes(
                body.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default(),
            );
            let now = origin.elapsed().as_micros() as u64;
            let _ = h.record(now.saturating_sub(sent).max(1));
            got += 1;
            last = origin.elapsed().as_secs_f64();
        }
    }
    Ok((h, last))
}

/// Runs the scenario.
pub async fn run(
    bench: &Bench,
    receivers: usize,
    messages: usize,
    window: usize,
) -> Result<Table, SessionError> {
    let mut sessions = Vec::new();
    for i in 0..receivers {
        sessions.push(bench.session("bc-r", i, 64).await?);
    }
    let mut sender = bench.session("bc-s", 0, 64).await?;
    let origin = Instant::now();
    let sinks: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(receive(s, messages, origin)))
        .collect();
    let (mut sent, mut in_flight) = (0, 0);
    while sent < messages || in_flight > 0 {
        while in_flight < window && sent < messages {
            let mut b = BytesMut::with_capacity(32);
            b.put_u64(origin.elapsed().as_micros() as u64);
            b.resize(32, b'b');
            sender.core.broadcast(b.freeze())?;
            sent += 1;
            in_flight += 1;
        }
        match sender.expect_event().await? {
            Event::MessageSent { .. } => in_flight -= 1,
            Event::MessageFailed { code, text, .. } => {
                return Err(SessionError::Server { code, text })
            }
            _ => {}
        }
    }
    let mut all = histogram();
    let mut last = 0.0f64;
    for t in sinks {
        let (h, l) = t
            .await
            .map_err(|e| SessionError::Io(std::io::Error::other(e)))??;
        let _ = all.add(&h);
        last = last.max(l);
    }
    let deliveries = (receivers * messages) as f64;
    let mut table = Table::new(format!(
        "broadcast: 1 sender, {receivers} receivers, {messages} messages, window {window}"
    ));
    table.row("deliveries", format!("{deliveries:.0}"));
    table.row(
        "deliveries/s",
        format!("{:.0}", deliveries / last.max(1e-9)),
    );
    table.row(
        "time until the last receiver had the last message",
        format!("{:.1} ms", last * 1000.0),
    );
    table.row("delivery latency", latencies(&all));
    Ok(table)
}
