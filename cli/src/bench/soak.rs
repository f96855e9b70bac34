//! Soak: every kind of client at once, continuously, for minutes or hours,
//! with a line of the server's resource use every `--report-every`
//! seconds. The figures should stay flat; the checks at the end (no
//! acknowledged message lost, every download byte for byte) must hold.
//!
//! The mix, each in its own task and each bounded in count and time:
//! pairs exchanging direct messages; messages to offline users, picked up
//! when they sign in; broadcasts to receivers that acknowledge; short
//! sign-in sessions; uploads and verified downloads; silent TCP
//! connections the server must close; slow readers it must cut off; and
//! clients that vanish in the middle of a transfer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use proto::{ErrorCode, Event, Packet};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::stats::{ProcessStats, Table};
use super::Bench;
use crate::session::{Session, SessionError};
use crate::transport::Target;

/// The soak's settings.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Minutes to run for, at most a week (default 1 when --seconds is not
    /// given either).
    #[arg(long, env = "CHAT_SOAK_MINUTES", value_parser = minutes, conflicts_with = "seconds")]
    pub minutes: Option<f64>,
    /// Seconds to run for, for short runs.
    #[arg(long, env = "CHAT_SOAK_SECONDS", value_parser = crate::parse_seconds)]
    pub seconds: Option<f64>,
    /// Seconds between two lines of the table.
    #[arg(long, env = "CHAT_SOAK_REPORT_EVERY", default_value_t = 60.0, value_parser = crate::parse_seconds)]
    pub report_every: f64,
    /// The server's data directory, for the size of its database and files.
    #[arg(long, env = "CHAT_SOAK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Pairs of online users exchanging direct messages.
    #[arg(long, env = "CHAT_SOAK_PAIRS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub pairs: u32,
    /// Direct messages per second each pair's sender sends.
    #[arg(long, env = "CHAT_SOAK_DM_RATE", default_value_t = 50.0, value_parser = positive)]
    pub dm_rate: f64,
    /// Receivers of the acknowledged broadcasts.
    #[arg(long, env = "CHAT_SOAK_RECEIVERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub receivers: u32,
    /// Broadcasts per second to the receivers.
    #[arg(long, env = "CHAT_SOAK_BROADCAST_RATE", default_value_t = 10.0, value_parser = positive)]
    pub broadcast_rate: f64,
    /// Silent connections opened every two seconds.
    #[arg(long, env = "CHAT_SOAK_SILENT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub silent: u32,
    /// Seconds after which a silent connection the server has not closed
    /// counts as a failure (the server's sign-in deadline is 10 s by default).
    #[arg(long, env = "CHAT_SOAK_SILENT_DEADLINE", default_value_t = 15.0, value_parser = crate::parse_seconds)]
    pub silent_deadline: f64,
}

/// A positive number of minutes, at most a week.
fn minutes(s: &str) -> Result<f64, String> {
    let v =
        crate::parse_seconds(s).map_err(|_| format!("`{s}` is not a number of minutes above 0"))?;
    if v <= crate::MAX_SECONDS / 60.0 {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is out of range: give at most 10080 minutes (one week)"
        ))
    }
}

/// A positive, finite number up to a million.
fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 1e6 {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is out of range: give a number above 0 and at most 1000000"
        ))
    }
}

/// Unacknowledged messages a sender keeps in flight.
const WINDOW: usize = 64;
/// Body size of direct messages and acknowledged broadcasts.
const BODY: usize = 64;
/// Mailboxes of offline users, and messages queued for each per round.
const MAILBOXES: usize = 3;
const MAIL_PER_ROUND: usize = 20;
/// Body of the broadcasts that flood a slow reader, and how many go out
/// per second; how much is sent before a slow reader that is still online
/// counts as a failure (the server's limit is 8 MiB queued by default).
const FLOOD_BODY: usize = 60 * 1024;
const FLOOD_RATE: f64 = 128.0;
const FLOOD_CAP: usize = 96 << 20;
/// File sizes uploaded in turn: a few KiB to 1 MiB.
const FILE_SIZES: [usize; 5] = [4 << 10, 20 << 10, 100 << 10, 300 << 10, 1 << 20];
/// A new upload every this many file rounds (of half a second); a
/// download every round.
const UPLOAD_EVERY: u64 = 16;
/// Uploaded files remembered for downloads.
const FILES_KEPT: usize = 64;

/// What is counted, in the order of the table's columns.
#[derive(Debug, Clone, Copy)]
enum Op {
    Messages,
    Queued,
    Broadcasts,
    SignIns,
    Uploads,
    Downloads,
    SilentClosed,
    SlowCut,
    Vanished,
    Expected,
}

/// The column headers of the counts.
const OPS: [&str; 9] = [
    "messages",
    "queued",
    "broadcasts",
    "sign-ins",
    "uploads",
    "downloads",
    "silent closed",
    "slow cut off",
    "vanished",
];
const COUNTS: usize = 10;

/// A file uploaded and how to make its bytes again.
#[derive(Debug, Clone, Copy)]
struct Stored {
    file: u64,
    seed: u64,
    size: usize,
}

/// What every task shares.
struct Ctx {
    bench: Bench,
    until: Instant,
    counts: [AtomicU64; COUNTS],
    /// Direct messages acknowledged to a pair's sender and never received.
    lost: AtomicU64,
    /// Queued messages not handed over when their user signed in.
    undelivered: AtomicU64,
    /// Acknowledged broadcasts a receiver never got.
    missed: AtomicU64,
    failures: AtomicU64,
    files: Mutex<Vec<Stored>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Errors the server's limits are designed to give.
fn expected(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RateLimited | ErrorCode::SlowReader | ErrorCode::SignInTimeout
    )
}

impl Ctx {
    fn count(&self, op: Op) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; COUNTS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// Records a failed check; the first 50 are printed.
    fn fail(&self, what: impl std::fmt::Display) {
        if self.failures.fetch_add(1, Ordering::Relaxed) < 50 {
            eprintln!("soak: FAILED: {what}");
        }
    }

    /// A refused message: counted if the server's limits are meant to
    /// refuse it in this scenario, an error otherwise.
    fn refused(&self, code: ErrorCode, text: String) -> Result<(), SessionError> {
        if expected(code) {
            self.count(Op::Expected);
            Ok(())
        } else {
            Err(SessionError::Server { code, text })
        }
    }

    /// An error from a task: counted if the server's limits explain it,
    /// a failure otherwise.
    fn error(&self, who: &str, e: SessionError) {
        match e {
            SessionError::Server { code, .. } if expected(code) => self.count(Op::Expected),
            e => self.fail(format_args!("{who}: {e}")),
        }
    }

    /// Sleeps `d`, or until the end of the run if that comes first.
    async fn pause(&self, d: Duration) {
        tokio::time::sleep_until((Instant::now() + d).min(self.until)).await;
    }
}

/// The set of sequence numbers seen: everything below `below`, and the
/// ones above it, so memory stays small while numbers arrive in order.
#[derive(Debug, Default)]
struct SeqSet {
    below: u64,
    above: BTreeSet<u64>,
}

impl SeqSet {
    fn insert(&mut self, n: u64) {
        if n >= self.below {
            self.above.insert(n);
            while self.above.remove(&self.below) {
                self.below += 1;
            }
        }
    }

    fn contains(&self, n: u64) -> bool {
        n < self.below || self.above.contains(&n)
    }

    fn len(&self) -> u64 {
        self.below + self.above.len() as u64
    }

    /// How many of these are not in `other`.
    fn missing_from(&self, other: &SeqSet) -> u64 {
        let run = if self.below > other.below {
            let present = other.above.range(other.below..self.below).count() as u64;
            self.below - other.below - present
        } else {
            0
        };
        run + self.above.iter().filter(|&&n| !other.contains(n)).count() as u64
    }
}

/// A body carrying sequence number `seq`.
fn body(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(seq);
    b.resize(size.max(8), b's');
    b.freeze()
}

/// The sequence number a body carries.
fn seq_of(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
}

/// The bytes of file `seed`.
fn pattern(seed: u64, size: usize) -> Bytes {
    (0..size as u64)
        .map(|i| ((i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The next event within `d`, if one comes. What the session sends
/// meanwhile is a few bytes of acknowledgement, which a timeout does not
/// cut in half in practice.
async fn poll_for(s: &mut Session, d: Duration) -> Result<Option<Event>, SessionError> {
    match tokio::time::timeout(d, s.next_event()).await {
        Ok(Ok(Event::Disconnected { code, text })) => Err(SessionError::Server { code, text }),
        Ok(r) => r.map(Some),
        Err(_) => Ok(None),
    }
}

/// Reads (and drops) events until `t`.
async fn read_until(s: &mut Session, t: Instant) -> Result<(), SessionError> {
    while Instant::now() < t {
        poll_for(s, t - Instant::now()).await?;
    }
    Ok(())
}

/// One sender's paced stream of messages (direct, or broadcast when `to`
/// is `None`), each carrying its sequence number; what the server
/// acknowledges goes into `acked`.
async fn paced_sender(
    ctx: &Ctx,
    s: &mut Session,
    to: Option<u64>,
    rate: f64,
    acked: &Mutex<SeqSet>,
) -> Result<(), SessionError> {
    let start = Instant::now();
    let (mut sent, mut seq) = (0u64, 0u64);
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    loop {
        if ctx.running() {
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            while sent < due && in_flight.len() < WINDOW {
                let n = match to {
                    Some(to) => s.core.send_message(to, body(seq, BODY))?,
                    None => s.core.broadcast(body(seq, BODY))?,
                };
                in_flight.insert(n, seq);
                seq += 1;
                sent += 1;
            }
        }
        let event = if in_flight.is_empty() {
            if !ctx.running() {
                return Ok(());
            }
            let next = start + Duration::from_secs_f64((sent + 1) as f64 / rate);
            let wait = next
                .min(ctx.until)
                .saturating_duration_since(Instant::now());
            match poll_for(s, wait.min(Duration::from_millis(100))).await? {
                Some(e) => e,
                None => continue,
            }
        } else {
            s.expect_event().await?
        };
        match event {
            Event::MessageSent { message } => {
                if let Some(q) = in_flight.remove(&message) {
                    lock(acked).insert(q);
                    if to.is_some() {
                        ctx.count(Op::Messages);
                    }
                }
            }
            Event::MessageFailed {
                message,
                code,
                text,
            } => {
                in_flight.remove(&message);
                ctx.refused(code, text)?;
            }
            Event::Disconnected { code, text } => return Err(SessionError::Server { code, text }),
            _ => {}
        }
    }
}

/// What a sender and its receivers share.
#[derive(Debug, Default)]
struct Stream {
    acked: Mutex<SeqSet>,
    done: AtomicBool,
}

/// Receives `from`'s messages (broadcasts or direct) into `got` until the
/// sender is done and everything it had acknowledged arrived, or for at
/// most the session's patience after that.
async fn receiver(
    ctx: &Ctx,
    r: &mut Session,
    from: u64,
    broadcasts: bool,
    stream: &Stream,
    got: &mut SeqSet,
) -> Result<(), SessionError> {
    let mut give_up = None;
    loop {
        if stream.done.load(Ordering::Acquire) {
            let deadline = *give_up.get_or_insert(Instant::now() + r.patience);
            if got.len() >= lock(&stream.acked).len() || Instant::now() >= deadline {
                return Ok(());
            }
        }
        if let Some(Event::Incoming {
            from: f,
            broadcast,
            body,
            ..
        }) = poll_for(r, Duration::from_millis(200)).await?
        {
            if f == from && broadcast == broadcasts {
                if let Some(q) = seq_of(&body) {
                    got.insert(q);
                    if broadcasts {
                        ctx.count(Op::Broadcasts);
                    }
                }
            }
        }
    }
}

/// One pair: a sender and an online receiver; adds what was lost.
async fn pair(ctx: Arc<Ctx>, i: usize, rate: f64) {
    let who = format!("pair {i}");
    let (mut s, mut r) = match (
        ctx.bench.session("soak-dm-s", i, 16).await,
        ctx.bench.session("soak-dm-r", i, 16).await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(e), _) | (_, Err(e)) => return ctx.error(&who, e),
    };
    let from = s.core.user().unwrap_or(0);
    let to = r.core.user().unwrap_or(0);
    let stream = Arc::new(Stream::default());
    let rx = {
        let (ctx, stream) = (ctx.clone(), stream.clone());
        tokio::spawn(async move {
            let mut got = SeqSet::default();
            let r = receiver(&ctx, &mut r, from, false, &stream, &mut got).await;
            (r, got)
        })
    };
    if let Err(e) = paced_sender(&ctx, &mut s, Some(to), rate, &stream.acked).await {
        ctx.error(&who, e);
    }
    stream.done.store(true, Ordering::Release);
    match rx.await {
        Ok((r, got)) => {
            if let Err(e) = r {
                ctx.error(&format!("{who} receiver"), e);
            }
            let lost = lock(&stream.acked).missing_from(&got);
            ctx.lost.fetch_add(lost, Ordering::Relaxed);
        }
        Err(e) => ctx.fail(format_args!("{who} receiver: {e}")),
    }
}

/// One sender, `receivers` receivers; adds what they missed.
async fn broadcasts(ctx: Arc<Ctx>, receivers: usize, rate: f64) {
    let mut s = match ctx.bench.session("soak-bc-s", 0, 16).await {
        Ok(s) => s,
        Err(e) => return ctx.error("broadcaster", e),
    };
    let from = s.core.user().unwrap_or(0);
    let stream = Arc::new(Stream::default());
    let mut rxs = Vec::new();
    for i in 0..receivers {
        let mut r = match ctx.bench.session("soak-bc-r", i, 16).await {
            Ok(r) => r,
            Err(e) => {
                ctx.error("broadcast receiver", e);
                continue;
            }
        };
        let (ctx, stream) = (ctx.clone(), stream.clone());
        rxs.push(tokio::spawn(async move {
            let mut got = SeqSet::default();
            let r = receiver(&ctx, &mut r, from, true, &stream, &mut got).await;
            (r, got)
        }));
    }
    if let Err(e) = paced_sender(&ctx, &mut s, None, rate, &stream.acked).await {
        ctx.error("broadcaster", e);
    }
    stream.done.store(true, Ordering::Release);
    for rx in rxs {
        match rx.await {
            Ok((r, got)) => {
                if let Err(e) = r {
                    ctx.error("broadcast receiver", e);
                }
                let missed = lock(&stream.acked).missing_from(&got);
                ctx.missed.fetch_add(missed, Ordering::Relaxed);
            }
            Err(e) => ctx.fail(format_args!("broadcast receiver: {e}")),
        }
    }
}

/// Messages to offline users, picked up when each signs in and listens.
async fn mail(ctx: Arc<Ctx>) {
    let mut users = Vec::new();
    for j in 0..MAILBOXES {
        match ctx.bench.session("soak-mbox", j, 16).await {
            Ok(s) => users.push(s.core.user().unwrap_or(0)),
            Err(e) => return ctx.error("mailbox", e),
        }
    }
    let mut seq = 0u64;
    while ctx.running() {
        if let Err(e) = mail_round(&ctx, &users, &mut seq).await {
            ctx.error("offline messages", e);
        }
        ctx.pause(Duration::from_secs(1)).await;
    }
}

async fn mail_round(ctx: &Ctx, users: &[u64], seq: &mut u64) -> Result<(), SessionError> {
    let mut s = ctx.bench.session("soak-mail-s", 0, 16).await?;
    let from = s.core.user().unwrap_or(0);
    let mut pending = HashMap::new();
    for (j, &to) in users.iter().enumerate() {
        for _ in 0..MAIL_PER_ROUND {
            let n = s.core.send_message(to, body(*seq, BODY))?;
            pending.insert(n, (j, *seq));
            *seq += 1;
        }
    }
    let mut want: Vec<HashSet<u64>> = vec![HashSet::new(); users.len()];
    while !pending.is_empty() {
        match s.expect_event().await? {
            Event::MessageSent { message } => {
                if let Some((j, q)) = pending.remove(&message) {
                    want[j].insert(q);
                    ctx.count(Op::Messages);
                }
            }
            Event::MessageFailed {
                message,
                code,
                text,
            } => {
                pending.remove(&message);
                ctx.refused(code, text)?;
            }
            Event::Disconnected { code, text } => return Err(SessionError::Server { code, text }),
            _ => {}
        }
    }
    drop(s);
    for (j, mut want) in want.into_iter().enumerate() {
        if want.is_empty() {
            continue;
        }
        let mut r = ctx.bench.session("soak-mbox", j, 16).await?;
        let deadline = Instant::now() + r.patience;
        while !want.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                ctx.undelivered
                    .fetch_add(want.len() as u64, Ordering::Relaxed);
                ctx.fail(format_args!(
                    "{} queued messages were not delivered to mailbox {j} within {:?}",
                    want.len(),
                    r.patience
                ));
                break;
            }
            // Messages from earlier rounds may come again (their
            // acknowledgement was in flight when the user left): ignored.
            if let Some(Event::Incoming {
                from: f,
                broadcast: false,
                body,
                ..
            }) = poll_for(&mut r, left).await?
            {
                if f == from && seq_of(&body).is_some_and(|q| want.remove(&q)) {
                    ctx.count(Op::Queued);
                }
            }
        }
        // A round trip, so the acknowledgements are in before leaving.
        r.core.request_users()?;
        r.wait_for(|_, e| matches!(e, Event::Users(_)).then_some(Ok(())))
            .await?;
    }
    Ok(())
}

/// Short sessions: sign in (a fresh name one time in four), ask for the
/// users online, leave.
async fn churn(ctx: Arc<Ctx>) {
    let mut n = 0usize;
    while ctx.running() {
        let (role, i) = if n % 4 == 0 {
            ("soak-new", n)
        } else {
            ("soak-again", n % 8)
        };
        let once = async {
            let mut s = ctx.bench.session(role, i, 1).await?;
            s.core.request_users()?;
            s.wait_for(|_, e| matches!(e, Event::Users(_)).then_some(Ok(())))
                .await
        };
        match once.await {
            Ok(()) => ctx.count(Op::SignIns),
            Err(e) => ctx.error("sign-in", e),
        }
        n += 1;
        ctx.pause(Duration::from_millis(200)).await;
    }
}

async fn until_complete(s: &mut Session, id: u64) -> Result<u64, SessionError> {
    s.wait_for(|_, e| match e {
        Event::TransferComplete { transfer, file } if transfer == id => Some(Ok(file)),
        Event::TransferFailed {
            transfer,
            code,
            text,
        } if transfer == id => Some(Err(SessionError::Server { code, text })),
        _ => None,
    })
    .await
}

/// Uploads now and then, downloads every half second, byte for byte.
async fn files(ctx: Arc<Ctx>) {
    let mut slot = None;
    let mut round = 0u64;
    while ctx.running() {
        if let Err(e) = files_round(&ctx, &mut slot, round).await {
            ctx.error("files", e);
            slot = None;
        }
        round += 1;
        ctx.pause(Duration::from_millis(500)).await;
    }
}

async fn files_round(
    ctx: &Ctx,
    slot: &mut Option<Session>,
    round: u64,
) -> Result<(), SessionError> {
    let s = match slot {
        Some(s) => s,
        None => slot.insert(ctx.bench.session("soak-files", 0, 64).await?),
    };
    let known = lock(&ctx.files).len();
    if round % UPLOAD_EVERY == 0 || known == 0 {
        let size = FILE_SIZES[(round / UPLOAD_EVERY) as usize % FILE_SIZES.len()];
        let seed = round;
        let id = s
            .core
            .upload(&format!("soak-{seed}.bin"), pattern(seed, size))?;
        let file = until_complete(s, id).await?;
        let mut files = lock(&ctx.files);
        if files.len() >= FILES_KEPT {
            files.remove(0);
        }
        files.push(Stored { file, seed, size });
        ctx.count(Op::Uploads);
    }
    let pick = {
        let files = lock(&ctx.files);
        files.get(round as usize % files.len().max(1)).copied()
    };
    let Some(pick) = pick else { return Ok(()) };
    let id = s.core.download(pick.file);
    let mut got = Vec::with_capacity(pick.size);
    s.wait_for(|_, e| match e {
        Event::DownloadData { transfer, data, .. } if transfer == id => {
            if got.len() + data.len() <= pick.size {
                got.extend_from_slice(&data);
            }
            None
        }
        Event::TransferComplete { transfer, .. } if transfer == id => Some(Ok(())),
        Event::TransferFailed {
            transfer,
            code,
            text,
        } if transfer == id => Some(Err(SessionError::Server { code, text })),
        _ => None,
    })
    .await?;
    if got[..] == pattern(pick.seed, pick.size)[..] {
        ctx.count(Op::Downloads);
    } else {
        ctx.fail(format_args!(
            "download of file {} ({} bytes) differs from what was uploaded ({} bytes received)",
            pick.file,
            pick.size,
            got.len()
        ));
    }
    Ok(())
}

/// Clients that leave in the middle of an upload or a download.
async fn vanish(ctx: Arc<Ctx>) {
    let mut n = 0usize;
    while ctx.running() {
        let once = async {
            let mut s = ctx.bench.session("soak-vanish", n % 4, 8).await?;
            let big = lock(&ctx.files)
                .iter()
                .rev()
                .find(|f| f.size >= 100 << 10)
                .copied();
            let id = match big {
                Some(f) if n % 2 == 1 => s.core.download(f.file),
                _ => s
                    .core
                    .upload(&format!("vanish-{n}.bin"), pattern(n as u64, 256 << 10))?,
            };
            // Some bytes moved, and not all: then gone without a word.
            s.wait_for(|_, e| match e {
                Event::TransferProgress { transfer, done, .. } if transfer == id && done > 0 => {
                    Some(Ok(true))
                }
                Event::TransferComplete { transfer, .. } if transfer == id => Some(Ok(false)),
                Event::TransferFailed {
                    transfer,
                    code,
                    text,
                } if transfer == id => Some(Err(SessionError::Server { code, text })),
                _ => None,
            })
            .await
        };
        match once.await {
            Ok(true) => ctx.count(Op::Vanished),
            Ok(false) => {}
            Err(e) => ctx.error("vanishing client", e),
        }
        n += 1;
        ctx.pause(Duration::from_secs(1)).await;
    }
}

/// A slow reader per cycle: signed in, kept alive, never reading, while
/// big broadcasts go out until the server lists it offline.
async fn slow_readers(ctx: Arc<Ctx>) {
    let mut cycle = 0usize;
    while ctx.running() {
        match slow_cycle(&ctx, cycle).await {
            Ok(true) => ctx.count(Op::SlowCut),
            Ok(false) => ctx.fail(format_args!(
                "a slow reader was still online after {} MiB of broadcasts",
                FLOOD_CAP >> 20
            )),
            Err(e) => ctx.error("slow reader", e),
        }
        cycle += 1;
        ctx.pause(Duration::from_secs(5)).await;
    }
}

async fn slow_cycle(ctx: &Ctx, cycle: usize) -> Result<bool, SessionError> {
    let mut slow = ctx.bench.session("soak-slow", cycle % 4, 1).await?;
    let slow_user = slow.core.user().unwrap_or(0);
    let keep = tokio::spawn(async move {
        let _ = slow
            .keep_alive_unread(Instant::now() + Duration::from_secs(600))
            .await;
    });
    let result = flood(ctx, slow_user).await;
    keep.abort();
    result
}

/// Broadcasts big bodies, paced, until `slow_user` is no longer online.
async fn flood(ctx: &Ctx, slow_user: u64) -> Result<bool, SessionError> {
    let mut s = ctx.bench.session("soak-flood", 0, 1).await?;
    let payload = Bytes::from(vec![b'f'; FLOOD_BODY]);
    let start = Instant::now();
    let mut sent = 0usize;
    while sent * FLOOD_BODY < FLOOD_CAP {
        let mut in_flight = 0;
        for _ in 0..32 {
            s.core.broadcast(payload.clone())?;
            in_flight += 1;
            sent += 1;
        }
        while in_flight > 0 {
            match s.expect_event().await? {
                Event::MessageSent { .. } => in_flight -= 1,
                Event::MessageFailed { code, text, .. } => {
                    in_flight -= 1;
                    ctx.refused(code, text)?;
                }
                Event::Disconnected { code, text } => {
                    return Err(SessionError::Server { code, text })
                }
                _ => {}
            }
        }
        s.core.request_users()?;
        let online = s
            .wait_for(|_, e| match e {
                Event::Users(u) => Some(Ok(u)),
                _ => None,
            })
            .await?;
        if !online.contains(&slow_user) {
            return Ok(true);
        }
        read_until(
            &mut s,
            start + Duration::from_secs_f64(sent as f64 / FLOOD_RATE),
        )
        .await?;
    }
    Ok(false)
}

/// How a silent connection ended.
enum Silent {
    /// Closed by the server, with the code of its last ERROR if it sent one.
    Closed(Option<ErrorCode>),
    /// Still open at the deadline.
    Open,
    /// Could not connect, or the server sent something odd.
    Broken(String),
}

/// Raw TCP connections that send nothing, a few every two seconds; the
/// server must close each within `deadline`.
async fn silent(ctx: Arc<Ctx>, per_round: usize, deadline: Duration) {
    let Target::Tcp(addr) = &ctx.bench.target else {
        return;
    };
    let mut open = JoinSet::new();
    let settle = |r: Result<Silent, tokio::task::JoinError>| match r {
        Ok(Silent::Closed(None)) => ctx.count(Op::SilentClosed),
        Ok(Silent::Closed(Some(code))) if expected(code) => ctx.count(Op::SilentClosed),
        Ok(Silent::Closed(Some(code))) => {
            ctx.fail(format_args!("a silent connection was closed with {code:?}"))
        }
        Ok(Silent::Open) => ctx.fail(format_args!(
            "a silent connection was still open after {deadline:?}"
        )),
        Ok(Silent::Broken(why)) => ctx.fail(format_args!("silent connection: {why}")),
        Err(e) => ctx.fail(format_args!("silent connection: {e}")),
    };
    while ctx.running() {
        for _ in 0..per_round {
            open.spawn(silent_one(addr.clone(), deadline));
        }
        let next = (Instant::now() + Duration::from_secs(2)).min(ctx.until);
        while let Ok(Some(r)) = tokio::time::timeout_at(next, open.join_next()).await {
            settle(r);
        }
    }
    // Each ends by its own deadline.
    while let Some(r) = open.join_next().await {
        settle(r);
    }
}

async fn silent_one(addr: String, deadline: Duration) -> Silent {
    let until = Instant::now() + deadline;
    let mut stream = match tokio::time::timeout_at(until, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Silent::Broken(format!("cannot connect: {e}")),
        Err(_) => return Silent::Broken("connecting took too long".into()),
    };
    let mut buf = BytesMut::new();
    let mut code = None;
    loop {
        match tokio::time::timeout_at(until, stream.read_buf(&mut buf)).await {
            Err(_) => return Silent::Open,
            Ok(Ok(0)) | Ok(Err(_)) => return Silent::Closed(code),
            Ok(Ok(_)) => loop {
                match proto::decode_from(&mut buf) {
                    Ok(Some(Packet::Error { code: c, .. })) => code = Some(c),
                    Ok(Some(p)) => return Silent::Broken(format!("unasked-for {p:?}")),
                    Ok(None) if buf.len() > 64 << 10 => {
                        return Silent::Broken("over 64 KiB without a whole packet".into())
                    }
                    Ok(None) => break,
                    Err(e) => return Silent::Broken(e.to_string()),
                }
            },
        }
    }
}

/// The server's figures for one line of the table.
fn server_figures(pid: Option<u32>, data_dir: Option<&Path>) -> [String; 4] {
    let dash = || "-".to_string();
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let rss = pid
        .and_then(ProcessStats::read)
        .map(|p| format!("{:.1}", p.rss_kib as f64 / 1024.0))
        .unwrap_or_else(dash);
    let fds = pid
        .and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(|d| d.count().to_string())
        .unwrap_or_else(dash);
    let (db, files) = match data_dir {
        Some(dir) => {
            let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
            (
                mib(size("chat.sqlite3") + size("chat.sqlite3-wal")),
                mib(dir_size(&dir.join("files"))),
            )
        }
        None => (dash(), dash()),
    };
    [rss, fds, db, files]
}

/// Bytes of the regular files under `dir`, at most 16 levels down.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() && depth < 16 => stack.push((e.path(), depth + 1)),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Runs the soak, printing a line every `report_every` seconds and a
/// summary; fails if a check failed.
pub async fn run(bench: &Bench, opts: Options) -> Result<(), SessionError> {
    let secs = match (opts.minutes, opts.seconds) {
        (_, Some(s)) => s,
        (Some(m), None) => m * 60.0,
        (None, None) => 60.0,
    };
    let duration = Duration::from_secs_f64(secs.clamp(0.1, crate::MAX_SECONDS));
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        bench: bench.clone(),
        until: start + duration,
        counts: std::array::from_fn(|_| AtomicU64::new(0)),
        lost: AtomicU64::new(0),
        undelivered: AtomicU64::new(0),
        missed: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        files: Mutex::new(Vec::new()),
    });
    let silent_deadline = Duration::from_secs_f64(opts.silent_deadline);
    let mut tasks = JoinSet::new();
    for i in 0..opts.pairs as usize {
        tasks.spawn(pair(ctx.clone(), i, opts.dm_rate));
    }
    tasks.spawn(broadcasts(
        ctx.clone(),
        opts.receivers as usize,
        opts.broadcast_rate,
    ));
    tasks.spawn(mail(ctx.clone()));
    tasks.spawn(churn(ctx.clone()));
    tasks.spawn(files(ctx.clone()));
    tasks.spawn(vanish(ctx.clone()));
    tasks.spawn(slow_readers(ctx.clone()));
    tasks.spawn(silent(ctx.clone(), opts.silent as usize, silent_deadline));
    if !matches!(bench.target, Target::Tcp(_)) {
        eprintln!("soak: no silent connections through a gateway");
    }

    println!(
        "soak: {secs} s, {} pairs at {}/s, {} broadcast receivers at {}/s, {} silent connections every 2 s",
        opts.pairs, opts.dm_rate, opts.receivers, opts.broadcast_rate, opts.silent
    );
    println!();
    let header = ["elapsed", "RSS MiB", "fds", "db MiB", "files MiB"]
        .iter()
        .chain(OPS.iter())
        .copied()
        .collect::<Vec<_>>();
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let data_dir = opts.data_dir.as_deref();
    let mut last = ctx.snapshot();
    let mut line = |now: Duration| {
        let counts = ctx.snapshot();
        let mut cells = vec![elapsed(now)];
        cells.extend(server_figures(bench.server_pid, data_dir));
        cells.extend((0..OPS.len()).map(|i| (counts[i] - last[i]).to_string()));
        last = counts;
        println!("| {} |", cells.join(" | "));
    };
    let every = Duration::from_secs_f64(opts.report_every);
    let mut next = start + every;
    while next < ctx.until {
        tokio::time::sleep_until(next).await;
        line(next - start);
        next += every;
    }
    tokio::time::sleep_until(ctx.until).await;

    // Every task winds down within the patience it gives the server, the
    // silent connections within their deadline.
    let wind_down = bench.patience * 2 + silent_deadline + Duration::from_secs(10);
    let stop_by = Instant::now() + wind_down;
    loop {
        match tokio::time::timeout_at(stop_by, tasks.join_next()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => ctx.fail(format_args!("a task failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                ctx.fail(format_args!(
                    "{} tasks had not stopped {wind_down:?} after the end",
                    tasks.len()
                ));
                tasks.abort_all();
                break;
            }
        }
    }
    line(start.elapsed());

    let totals = ctx.snapshot();
    let lost = ctx.lost.load(Ordering::Relaxed);
    let undelivered = ctx.undelivered.load(Ordering::Relaxed);
    let missed = ctx.missed.load(Ordering::Relaxed);
    let failures = ctx.failures.load(Ordering::Relaxed);
    let mut table = Table::new(format!("soak summary, {secs} s"));
    let names = [
        "direct messages acknowledged",
        "queued messages picked up",
        "broadcasts delivered",
        "sign-ins",
        "uploads",
        "downloads verified",
        "silent connections closed",
        "slow readers cut off",
        "clients vanished mid-transfer",
        "expected refusals (rate limit, slow reader, sign-in deadline)",
    ];
    for (name, n) in names.iter().zip(totals) {
        table.row(name, n.to_string());
    }
    table.row("queued messages not delivered", undelivered.to_string());
    table.row("broadcasts missed", missed.to_string());
    table.row("failed checks", failures.to_string());
    println!();
    table.print();
    println!();
    println!("lost: {lost}");
    if lost > 0 || undelivered > 0 || missed > 0 || failures > 0 {
        return Err(SessionError::Check(format!(
            "soak failed: {lost} lost, {undelivered} queued not delivered, {missed} broadcasts missed, {failures} failed checks"
        )));
    }
    Ok(())
}
