//! Direct messages: N pairs, each sender keeping a window of messages in
//! flight. Measures acknowledged messages per second and end-to-end
//! delivery latency (send to INCOMING at the recipient).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proto::Event;
use tokio::time::Instant;

use super::stats::{histogram, latencies, Table};
use super::Bench;
use crate::session::{Session, SessionError};

fn stamp(origin: Instant, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(origin.elapsed().as_micros() as u64);
    b.resize(size, b'x');
    b.freeze()
}

/// What a pair's sender tells its receiver.
#[derive(Debug, Default)]
struct Progress {
    acked: AtomicU64,
    done: AtomicBool,
}

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
struct Load {
    window: usize,
    size: usize,
    origin: Instant,
    until: Instant,
}

async fn sender(
    mut s: Session,
    to: u64,
    load: Load,
    progress: Arc<Progress>,
) -> Result<(), SessionError> {
    let Load {
        window,
        size,
        origin,
        until,
    } = load;
    let mut in_flight = 0usize;
    loop {
        while in_flight < window && Instant::now() < until {
            s.core.send_message(to, stamp(origin, size))?;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        match s.expect_event().await? {
            Event::MessageSent { .. } => {
                in_flight -= 1;
                progress.acked.fetch_add(1, Ordering::Relaxed);
            }
            Event::MessageFailed { code, text, .. } => {
                return Err(SessionError::Server { code, text })
            }
            _ => {}
        }
    }
    progress.done.store(true, Ordering::Release);
    Ok(())
}

async fn receiver(
    mut s: Session,
    origin: Instant,
    progress: Arc<Progress>,
) -> Result<hdrhistogram::Histogram<u64>, SessionError> {
    let mut h = histogram();
    let mut received = 0u64;
    loop {
        if progress.done.load(Ordering::Acquire)
            && received >= progress.acked.load(Ordering::Relaxed)
        {
            return Ok(h);
        }
        let event = match tokio::time::timeout(Duration::from_millis(100), s.next_event()).await {
            Ok(e) => e?,
            Err(_) => continue,
        };
        if let Event::Incoming { body, .. } = event {
            if body.len() >= 8 {
                let sent = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
                let now = origin.elapsed().as_micros() as u64;
                let _ = h.record(now.saturating_sub(sent).max(1));
            }
            received += 1;
        }
    }
}

/// Runs the scenario.
pub async fn run(
    bench: &Bench,
    pairs: usize,
    window: usize,
    seconds: f64,
    size: usize,
) -> Result<Table, SessionError> {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..pairs {
        let s = bench.session("dm-s", i, 64).await?;
        let r = bench.session("dm-r", i, 64).await?;
        senders.push(s);
        receivers.push(r);
    }
    let origin = Instant::now();
    let until = origin + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    let mut sinks = Vec::new();
    let total = Arc::new(AtomicU64::new(0));
    for (s, r) in senders.into_iter().zip(receivers) {
        let to = r.core.user().unwrap_or(0);
        let progress = Arc::new(Progress::default());
        sinks.push(tokio::spawn(receiver(r, origin, progress.clone())));
        let total = total.clone();
        let load = Load {
            window,
            size,
            origin,
            until,
        };
        tasks.push(tokio::spawn(async move {
            let r = sender(s, to, load, progress.clone()).await;
            total.fetch_add(progress.acked.load(Ordering::Relaxed), Ordering::Relaxed);
            r
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| SessionError::Io(std::io::Error::other(e)))??;
    }
    let sent_elapsed = origin.elapsed().as_secs_f64();
    let mut all = histogram();
    for t in sinks {
        let h = t
            .await
            .map_err(|e| SessionError::Io(std::io::Error::other(e)))??;
        let _ = all.add(&h);
    }
    let acked = total.load(Ordering::Relaxed);
    let mut table = Table::new(format!(
        "direct messages: {pairs} pairs, window {window}, {size}-byte bodies, {seconds} s"
    ));
    table.row("acknowledged messages", acked.to_string());
    table.row(
        "acknowledged messages/s",
        format!("{:.0}", acked as f64 / sent_elapsed),
    );
    table.row("delivery latency", latencies(&all));
    table.row("delivered", all.len().to_string());
    Ok(table)
}
