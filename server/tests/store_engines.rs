//! The store's behaviour, the same test bodies run against both engines:
//! SQLite in a temp dir, and a real PostgreSQL started for the test
//! (common/postgres.rs). The PostgreSQL-only tests at the end cover what
//! only a shared database can show: restarts and two writers at once.

mod common;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use common::patience;
use common::postgres::PgServer;
use server::store::{FileRefused, NodeLease, Pending, Store, StoreError, StoreLimits, Stored};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Where an engine's data lives.
enum Db {
    Sqlite(TempDir),
    Postgres(PgServer),
}

/// How the writer ends: SQLite's thread or PostgreSQL's task.
enum Writer {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// A store on a database of its own.
struct Engine {
    store: Option<Store>,
    writer: Option<Writer>,
    db: Db,
    limits: StoreLimits,
}

/// Fails the test if `f` does not finish within the patience.
async fn t<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(patience(), f)
        .await
        .expect("the store answered in time")
}

fn limits() -> StoreLimits {
    StoreLimits::default()
}

async fn open_on(db: &Db, limits: StoreLimits) -> (Store, Writer) {
    match db {
        Db::Sqlite(dir) => {
            let (store, _, thread) = Store::open(dir.path(), false, 0, limits).expect("opens");
            (store, Writer::Thread(thread))
        }
        Db::Postgres(pg) => {
            let (store, _, task) = t(Store::open_postgres(&pg.url(), false, 0, limits))
                .await
                .expect("opens");
            (store, Writer::Task(task))
        }
    }
}

impl Engine {
    async fn open(kind: Kind, limits: StoreLimits) -> Self {
        let db = match kind {
            Kind::Sqlite => Db::Sqlite(tempfile::tempdir().expect("a temp dir")),
            Kind::Postgres => Db::Postgres(PgServer::start().await),
        };
        let (store, writer) = open_on(&db, limits).await;
        Self {
            store: Some(store),
            writer: Some(writer),
            db,
            limits,
        }
    }

    fn kind(&self) -> Kind {
        match self.db {
            Db::Sqlite(_) => Kind::Sqlite,
            Db::Postgres(_) => Kind::Postgres,
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    /// Closes the store (waiting for its writer to finish) and opens it
    /// again on the same database.
    async fn reopen(&mut self) {
        drop(self.store.take());
        match self.writer.take() {
            Some(Writer::Thread(h)) => t(tokio::task::spawn_blocking(move || h.join()))
                .await
                .expect("joined")
                .expect("the writer thread ended cleanly"),
            Some(Writer::Task(h)) => t(h).await.expect("the writer task ended cleanly"),
            None => {}
        }
        let (store, writer) = open_on(&self.db, self.limits).await;
        self.store = Some(store);
        self.writer = Some(writer);
    }

    /// Runs SQL on the engine's database from a connection of the test's
    /// own (setting up a failure, ageing rows).
    async fn sql(&self, sqlite: &str, postgres: &str) {
        match &self.db {
            Db::Sqlite(dir) => {
                let path = dir.path().join("chat.sqlite3");
                let sql = sqlite.to_owned();
                t(tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(path).expect("opens");
                    c.busy_timeout(Duration::from_secs(5))
                        .expect("busy timeout");
                    c.execute_batch(&sql).expect("the SQL runs");
                }))
                .await
                .expect("ran");
            }
            Db::Postgres(pg) => t(pg.client().await.batch_execute(postgres))
                .await
                .expect("the SQL runs"),
        }
    }

    /// Holds the database's write lock from another connection until the
    /// returned guard's `release`: the writer's next batch waits for it,
    /// and requests queued meanwhile pile up for the batch after.
    async fn block_writes(&self) -> Blocker {
        match &self.db {
            Db::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).expect("opens");
                c.execute_batch("BEGIN EXCLUSIVE").expect("the write lock");
                Blocker::Sqlite(c)
            }
            Db::Postgres(pg) => {
                let c = pg.client().await;
                t(c.batch_execute("BEGIN; LOCK TABLE queued IN EXCLUSIVE MODE"))
                    .await
                    .expect("the lock");
                Blocker::Postgres(c)
            }
        }
    }

    /// Every message queued for `user`, as (sender, body), oldest first.
    async fn mailbox(&self, user: u64) -> Vec<(u64, Vec<u8>)> {
        let page = t(self.store().queued_page(user, 0, 100_000))
            .await
            .expect("read");
        page.into_iter()
            .map(|q| (q.from, q.body.to_vec()))
            .collect()
    }
}

enum Blocker {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Blocker {
    async fn release(self) {
        match self {
            Blocker::Sqlite(c) => c.execute_batch("COMMIT").expect("released"),
            Blocker::Postgres(c) => t(c.batch_execute("COMMIT")).await.expect("released"),
        }
    }
}

async fn sign_in(e: &Engine, name: &str) -> u64 {
    t(e.store().sign_in(name)).await.expect("signed in")
}

async fn direct(
    store: &Store,
    from: u64,
    number: u64,
    to: u64,
    body: &[u8],
) -> Result<Stored, StoreError> {
    let pending = t(store.store_direct(from, number, to, Bytes::copy_from_slice(body))).await;
    t(pending.wait()).await
}

async fn queue_direct(
    store: &Store,
    from: u64,
    number: u64,
    to: u64,
    body: &[u8],
) -> Pending<Stored> {
    t(store.store_direct(from, number, to, Bytes::copy_from_slice(body))).await
}

fn new_number(s: Result<Stored, StoreError>) -> u64 {
    match s {
        Ok(Stored::New(n)) => n,
        other => panic!("expected a new message, got {other:?}"),
    }
}

/// One test body, two engines.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await
            }
        }
    )*};
}

both_engines!(
    sign_in_gives_one_number_per_name,
    accounts_protect_names,
    session_numbers_are_never_zero_or_repeated,
    a_resent_message_is_stored_once,
    a_message_to_nobody_is_refused,
    a_full_mailbox_refuses_until_read,
    the_mailbox_is_read_in_order_and_forgotten_when_acknowledged,
    delivery_and_broadcast_numbers_increase,
    files_are_listed_once_complete_and_capped_per_user,
    old_mail_and_session_records_are_pruned,
    a_failed_statement_fails_the_whole_batch_and_the_resend_is_stored,
    reopening_keeps_everything_and_numbers_go_on,
);

async fn sign_in_gives_one_number_per_name(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let alice = sign_in(&e, "alice").await;
    let bob = sign_in(&e, "bob").await;
    assert_ne!(alice, bob);
    assert_eq!(sign_in(&e, "alice").await, alice);
    let s = e.store();
    assert_eq!(
        t(s.user_name(alice)).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(t(s.user_name(bob + alice + 1000)).await.unwrap(), None);
    // Many at once (one batch, likely) still one number per name.
    let names: Vec<String> = (0..50).map(|i| format!("u{}", i % 10)).collect();
    let numbers = futures_util::future::join_all(names.iter().map(|n| s.sign_in(n))).await;
    for (name, n) in names.iter().zip(&numbers) {
        assert_eq!(*n.as_ref().unwrap(), sign_in(&e, name).await);
    }
}

async fn accounts_protect_names(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let s = e.store();
    let claimed = t(s.claim("alice", "hash-1".into())).await.unwrap();
    let alice = claimed.expect("a free name can be claimed");
    assert_eq!(t(s.claim("alice", "hash-2".into())).await.unwrap(), None);
    assert_eq!(t(s.sign_in_unprotected("alice")).await.unwrap(), None);
    let bob = t(s.sign_in_unprotected("bob"))
        .await
        .unwrap()
        .expect("unprotected");
    assert_eq!(sign_in(&e, "bob").await, bob);
    let account = t(s.account("alice")).await.unwrap().expect("an account");
    assert_eq!((account.user, account.hash.as_str()), (alice, "hash-1"));
    assert_eq!(t(s.account("bob")).await.unwrap(), None);
    t(s.set_password(alice, "hash-3".into())).await.unwrap();
    assert_eq!(
        t(s.account_of(alice)).await.unwrap().as_deref(),
        Some("hash-3")
    );
    assert_eq!(t(s.account_of(bob)).await.unwrap(), None);
    // Claiming an existing unprotected name keeps its number.
    assert_eq!(t(s.claim("bob", "h".into())).await.unwrap(), Some(bob));
}

async fn session_numbers_are_never_zero_or_repeated(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let alice = sign_in(&e, "alice").await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let n = t(e.store().new_session(alice)).await.unwrap();
        assert_ne!(n, 0);
        assert!(seen.insert(n), "session {n} issued twice");
    }
}

async fn a_resent_message_is_stored_once(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let s = e.store();
    new_number(direct(s, alice, 7, bob, b"first").await);
    assert_eq!(
        direct(s, alice, 7, bob, b"again").await.unwrap(),
        Stored::Duplicate
    );
    // Twice in one pipelined batch: once stored.
    let p1 = queue_direct(s, alice, 8, bob, b"eight").await;
    let p2 = queue_direct(s, alice, 8, bob, b"eight").await;
    let (r1, r2) = (t(p1.wait()).await.unwrap(), t(p2.wait()).await.unwrap());
    assert!(matches!(r1, Stored::New(_)), "{r1:?}");
    assert_eq!(r2, Stored::Duplicate);
    // The same number from another sender is another message.
    let carol = sign_in(&e, "carol").await;
    new_number(direct(s, carol, 7, bob, b"carol's").await);
    // Broadcasts share the sender's numbering.
    assert_eq!(
        t(t(s.store_broadcast(alice, 7, Bytes::from_static(b"hi")))
            .await
            .wait())
        .await
        .unwrap(),
        Stored::Duplicate
    );
    assert!(matches!(
        t(t(s.store_broadcast(alice, 9, Bytes::from_static(b"hi")))
            .await
            .wait())
        .await
        .unwrap(),
        Stored::New(_)
    ));
    assert_eq!(
        t(t(s.store_broadcast(alice, 9, Bytes::from_static(b"hi")))
            .await
            .wait())
        .await
        .unwrap(),
        Stored::Duplicate
    );
    let bodies: Vec<Vec<u8>> = e.mailbox(bob).await.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        bodies,
        [b"first".to_vec(), b"eight".to_vec(), b"carol's".to_vec()]
    );
}

async fn a_message_to_nobody_is_refused(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let alice = sign_in(&e, "alice").await;
    let nobody = alice + 1_000_000;
    assert_eq!(
        direct(e.store(), alice, 1, nobody, b"x").await.unwrap(),
        Stored::UnknownRecipient
    );
    // Not accepted: the number is free for a message to someone real.
    let bob = sign_in(&e, "bob").await;
    new_number(direct(e.store(), alice, 1, bob, b"x").await);
}

async fn a_full_mailbox_refuses_until_read(kind: Kind) {
    let limits = StoreLimits {
        mailbox_messages: 3,
        mailbox_bytes: 1000,
        ..StoreLimits::default()
    };
    let e = Engine::open(kind, limits).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let s = e.store();
    let mut outcomes = Vec::new();
    for n in 1..=4 {
        outcomes.push(direct(s, alice, n, bob, b"x").await.unwrap());
    }
    assert_eq!(outcomes[3], Stored::MailboxFull);
    let Stored::New(first) = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    t(s.forget(bob, first)).await;
    // The refused number was not accepted: sent again, it is stored now.
    new_number(direct(s, alice, 4, bob, b"x").await);
    assert_eq!(
        direct(s, alice, 5, bob, b"x").await.unwrap(),
        Stored::MailboxFull
    );
    // Bytes count too.
    let carol = sign_in(&e, "carol").await;
    new_number(direct(s, alice, 6, carol, &[1; 600]).await);
    assert_eq!(
        direct(s, alice, 7, carol, &[1; 600]).await.unwrap(),
        Stored::MailboxFull
    );
    new_number(direct(s, alice, 8, carol, &[1; 400]).await);
}

async fn the_mailbox_is_read_in_order_and_forgotten_when_acknowledged(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let s = e.store();
    let mut numbers = Vec::new();
    for n in 1..=10u64 {
        numbers.push(new_number(
            direct(s, alice, n, bob, format!("m{n}").as_bytes()).await,
        ));
    }
    assert!(s.last_delivery() >= numbers[9]);
    let page = t(s.queued_page(bob, 0, 4)).await.unwrap();
    assert_eq!(
        page.iter().map(|q| q.delivery).collect::<Vec<_>>(),
        numbers[..4]
    );
    assert!(page.iter().all(|q| q.from == alice));
    let rest = t(s.queued_page(bob, numbers[3], 100)).await.unwrap();
    assert_eq!(
        rest.iter().map(|q| q.delivery).collect::<Vec<_>>(),
        numbers[4..]
    );
    assert_eq!(rest[0].body, Bytes::from_static(b"m5"));
    for n in &numbers[..5] {
        t(s.forget(bob, *n)).await;
    }
    // An acknowledgement of someone else's message, or of nothing, is ignored.
    t(s.forget(alice, numbers[6])).await;
    t(s.forget(bob, u64::MAX >> 1)).await;
    t(s.barrier()).await.unwrap();
    let left = t(s.queued_page(bob, 0, 100)).await.unwrap();
    assert_eq!(
        left.iter().map(|q| q.delivery).collect::<Vec<_>>(),
        numbers[5..]
    );
    assert!(t(s.queued_page(alice, 0, 100)).await.unwrap().is_empty());
}

async fn delivery_and_broadcast_numbers_increase(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let s = e.store();
    let mut pending = Vec::new();
    for n in 1..=300 {
        pending.push(queue_direct(s, alice, n, bob, b"x").await);
    }
    let mut last = 0;
    for p in pending {
        let n = new_number(t(p.wait()).await);
        assert!(n > last && n < 1 << 63, "{n} after {last}");
        last = n;
    }
    let mut last_broadcast = 0;
    for n in 1000..1010 {
        let Stored::New(b) = t(t(s.store_broadcast(bob, n, Bytes::from_static(b"hi")))
            .await
            .wait())
        .await
        .unwrap() else {
            panic!("a new broadcast")
        };
        assert!(b > last_broadcast && b < 1 << 63);
        last_broadcast = b;
    }
}

async fn files_are_listed_once_complete_and_capped_per_user(kind: Kind) {
    let limits = StoreLimits {
        user_files: 2,
        ..StoreLimits::default()
    };
    let e = Engine::open(kind, limits).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let s = e.store();
    let a = t(s.create_file("a.txt", 10, alice, 0))
        .await
        .unwrap()
        .unwrap();
    let meta = t(s.file(a)).await.unwrap().expect("its row");
    assert_eq!(
        (meta.name.as_str(), meta.size, meta.complete),
        ("a.txt", 10, false)
    );
    assert!(
        t(s.files()).await.unwrap().is_empty(),
        "listed only once complete"
    );
    t(s.complete_file(a)).await.unwrap();
    assert!(t(s.file(a)).await.unwrap().unwrap().complete);
    assert_eq!(t(s.files()).await.unwrap(), [a]);
    let b = t(s.create_file("b", u32::MAX, alice, 0))
        .await
        .unwrap()
        .unwrap();
    assert!(b > a);
    assert_eq!(t(s.file(b)).await.unwrap().unwrap().size, u32::MAX);
    assert_eq!(
        t(s.create_file("c", 1, alice, 0)).await.unwrap(),
        Err(FileRefused::TooManyFiles(2))
    );
    // Another user has a limit of their own.
    let c = t(s.create_file("c", 1, bob, 0)).await.unwrap().unwrap();
    // Discarding forgets an unfinished upload only.
    t(s.discard_file(b)).await.unwrap();
    t(s.discard_file(a)).await.unwrap();
    assert_eq!(t(s.file(b)).await.unwrap(), None);
    assert!(t(s.file(a)).await.unwrap().is_some());
    t(s.complete_file(c)).await.unwrap();
    assert_eq!(t(s.files()).await.unwrap(), [a, c]);
    assert!(t(s.create_file("d", 1, alice, 0)).await.unwrap().is_ok());
}

async fn old_mail_and_session_records_are_pruned(kind: Kind) {
    let limits = StoreLimits {
        mailbox_messages: 2,
        ..StoreLimits::default()
    };
    let e = Engine::open(kind, limits).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let s = e.store();
    new_number(direct(s, alice, 1, bob, b"old").await);
    new_number(direct(s, alice, 2, bob, b"old too").await);
    t(s.new_session(bob)).await.unwrap();
    let day = Duration::from_secs(86_400);
    let nothing = t(s.prune(day, Some(day))).await.unwrap();
    assert_eq!((nothing.sessions, nothing.messages), (0, 0));
    e.sql(
        "UPDATE queued SET created_at = created_at - 200000;
         UPDATE sessions SET created_at = created_at - 200000;",
        "UPDATE queued SET created_at = created_at - 200000;
         UPDATE sessions SET created_at = created_at - 200000;",
    )
    .await;
    assert_eq!(
        direct(s, alice, 3, bob, b"new").await.unwrap(),
        Stored::MailboxFull
    );
    let kept = t(s.prune(day, None)).await.unwrap();
    assert_eq!(
        (kept.sessions, kept.messages),
        (1, 0),
        "mail kept without an expiry"
    );
    let pruned = t(s.prune(day, Some(day))).await.unwrap();
    assert_eq!((pruned.sessions, pruned.messages), (0, 2));
    assert!(e.mailbox(bob).await.is_empty());
    // The mailbox has room again.
    new_number(direct(s, alice, 3, bob, b"new").await);
    new_number(direct(s, alice, 4, bob, b"new").await);
    assert_eq!(
        direct(s, alice, 5, bob, b"new").await.unwrap(),
        Stored::MailboxFull
    );
}

async fn a_failed_statement_fails_the_whole_batch_and_the_resend_is_stored(kind: Kind) {
    let e = Engine::open(kind, limits()).await;
    let (alice, bob, carol) = (
        sign_in(&e, "alice").await,
        sign_in(&e, "bob").await,
        sign_in(&e, "carol").await,
    );
    // A trigger of the test's own refuses one body: a statement of the
    // batch fails in the database, as a full disk would make it fail.
    e.sql(
        "CREATE TRIGGER poison BEFORE INSERT ON queued WHEN NEW.body = X'706f69736f6e'
         BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.body = '\\x706f69736f6e'::bytea THEN RAISE EXCEPTION 'poisoned'; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER poison BEFORE INSERT ON queued FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .await;
    let s = e.store();
    let blocker = e.block_writes().await;
    // The first request's batch waits for the lock; the poisoned message
    // is queued behind it with at least one other, in the same batch.
    let sent: [(u64, u64, &[u8]); 4] = [
        (carol, 1, b"sentinel"),
        (alice, 1, b"before"),
        (alice, 2, b"poison"),
        (alice, 3, b"after"),
    ];
    let mut pending = Vec::new();
    for (from, number, body) in sent {
        pending.push(queue_direct(s, from, number, bob, body).await);
    }
    blocker.release().await;
    let mut results = Vec::new();
    for p in pending {
        results.push(t(p.wait()).await);
    }
    assert!(
        results[2].is_err(),
        "the poisoned message fails: {results:?}"
    );
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert!(failed >= 2, "its whole batch fails with it: {results:?}");
    // Exactly the answered messages are stored.
    let stored: Vec<Vec<u8>> = e.mailbox(bob).await.into_iter().map(|(_, b)| b).collect();
    let answered: Vec<Vec<u8>> = sent
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|((_, _, b), _)| b.to_vec())
        .collect();
    assert_eq!(stored, answered);
    e.sql("DROP TRIGGER poison;", "DROP TRIGGER poison ON queued;")
        .await;
    // Sent again: what failed is stored now, what was answered is a duplicate.
    for ((from, number, body), first) in sent.iter().zip(&results) {
        let again = direct(s, *from, *number, bob, body).await.unwrap();
        match first {
            Ok(_) => assert_eq!(again, Stored::Duplicate),
            Err(_) => assert!(matches!(again, Stored::New(_)), "{again:?}"),
        }
    }
    let mut stored: Vec<Vec<u8>> = e.mailbox(bob).await.into_iter().map(|(_, b)| b).collect();
    stored.sort();
    let mut all: Vec<Vec<u8>> = sent.iter().map(|(_, _, b)| b.to_vec()).collect();
    all.sort();
    assert_eq!(stored, all, "each message once");
}

async fn reopening_keeps_everything_and_numbers_go_on(kind: Kind) {
    let mut e = Engine::open(kind, limits()).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let last = new_number(direct(e.store(), alice, 1, bob, b"kept").await);
    let Stored::New(broadcast) =
        t(t(e
            .store()
            .store_broadcast(alice, 2, Bytes::from_static(b"hi")))
        .await
        .wait())
        .await
        .unwrap()
    else {
        panic!("a new broadcast")
    };
    let done = t(e.store().create_file("done", 1, alice, 0))
        .await
        .unwrap()
        .unwrap();
    t(e.store().complete_file(done)).await.unwrap();
    let unfinished = t(e.store().create_file("part", 1, alice, 0))
        .await
        .unwrap()
        .unwrap();
    e.reopen().await;
    let s = e.store();
    assert_eq!(sign_in(&e, "alice").await, alice);
    assert!(s.last_delivery() >= last);
    assert_eq!(e.mailbox(bob).await, [(alice, b"kept".to_vec())]);
    assert_eq!(
        direct(s, alice, 1, bob, b"kept").await.unwrap(),
        Stored::Duplicate
    );
    assert!(new_number(direct(s, alice, 3, bob, b"next").await) > last);
    let Stored::New(b) = t(t(s.store_broadcast(alice, 4, Bytes::from_static(b"hi")))
        .await
        .wait())
    .await
    .unwrap() else {
        panic!("a new broadcast")
    };
    assert!(b > broadcast);
    assert_eq!(t(s.files()).await.unwrap(), [done]);
    // SQLite owns its directory and drops an unfinished upload at start;
    // PostgreSQL may be shared, so the upload may be another process's:
    // it is left to a janitor.
    let left = t(s.file(unfinished)).await.unwrap();
    match e.kind() {
        Kind::Sqlite => assert_eq!(left, None),
        Kind::Postgres => assert!(left.is_some_and(|m| !m.complete)),
    }
}

/// PostgreSQL stops: requests fail meanwhile instead of hanging; once it
/// is back, the engine connects again by itself, and every message that
/// was answered before is still there, once.
#[tokio::test]
async fn postgres_restarted_requests_fail_meanwhile_then_succeed_nothing_acknowledged_lost() {
    let mut e = Engine::open(Kind::Postgres, limits()).await;
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    for n in 1..=20 {
        new_number(direct(e.store(), alice, n, bob, format!("m{n}").as_bytes()).await);
    }
    let Db::Postgres(pg) = &mut e.db else {
        unreachable!()
    };
    pg.stop().await;
    let s = e.store.as_ref().expect("open");
    assert!(
        direct(s, alice, 21, bob, b"m21").await.is_err(),
        "fails while down"
    );
    assert!(t(s.sign_in("carol")).await.is_err());
    assert!(t(s.queued_page(bob, 0, 10)).await.is_err());
    let Db::Postgres(pg) = &mut e.db else {
        unreachable!()
    };
    pg.start_again().await;
    // Back by itself: wait for the first request that succeeds.
    let deadline = tokio::time::Instant::now() + patience();
    let stored = loop {
        match direct(e.store(), alice, 21, bob, b"m21").await {
            Ok(s) => break s,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "not back: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(matches!(stored, Stored::New(_)), "{stored:?}");
    let deadline = tokio::time::Instant::now() + patience();
    let mailbox = loop {
        match t(e.store().queued_page(bob, 0, 100)).await {
            Ok(page) => break page,
            Err(err) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "reads not back: {err}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let bodies: Vec<Bytes> = mailbox.into_iter().map(|q| q.body).collect();
    let want: Vec<Bytes> = (1..=21).map(|n| Bytes::from(format!("m{n}"))).collect();
    assert_eq!(bodies, want);
    for n in 1..=21 {
        let again = direct(e.store(), alice, n, bob, b"again").await.unwrap();
        assert_eq!(again, Stored::Duplicate);
    }
}

/// Two stores on one database, as two processes would be, send the same
/// messages at once: each (sender, number) is stored exactly once, and
/// every delivery number is used once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_writing_at_once_keep_dedup_and_unique_delivery_numbers() {
    let pg = PgServer::start().await;
    let db = Db::Postgres(pg);
    let (one, w1) = open_on(&db, limits()).await;
    let (two, w2) = open_on(&db, limits()).await;
    let mut senders = Vec::new();
    let mut recipients = Vec::new();
    for i in 0..4 {
        senders.push(t(one.sign_in(&format!("s{i}"))).await.unwrap());
        recipients.push(t(two.sign_in(&format!("r{i}"))).await.unwrap());
    }
    const PER_SENDER: u64 = 150;
    let send_all = |store: Store, senders: Vec<u64>, recipients: Vec<u64>, reverse: bool| {
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut order: Vec<(usize, u64)> = (1..=PER_SENDER)
                .flat_map(|n| (0..senders.len()).map(move |i| (i, n)))
                .collect();
            if reverse {
                order.reverse();
            }
            for (i, n) in order {
                let body = Bytes::from(format!("{i}:{n}"));
                let p = store.store_direct(senders[i], n, recipients[i], body).await;
                pending.push(((i, n), p));
            }
            let mut out = Vec::new();
            for (key, p) in pending {
                out.push((key, p.wait().await));
            }
            out
        })
    };
    let a = send_all(one.clone(), senders.clone(), recipients.clone(), false);
    let b = send_all(two.clone(), senders.clone(), recipients.clone(), true);
    let (a, b) = (t(a).await.unwrap(), t(b).await.unwrap());
    let mut outcomes: std::collections::HashMap<(usize, u64), Vec<Stored>> = Default::default();
    let mut deliveries = std::collections::HashSet::new();
    for (key, r) in a.into_iter().chain(b) {
        let stored = r.expect("no batch failed");
        if let Stored::New(d) = stored {
            assert!(deliveries.insert(d), "delivery number {d} used twice");
        }
        outcomes.entry(key).or_default().push(stored);
    }
    assert_eq!(outcomes.len(), 4 * PER_SENDER as usize);
    for (key, o) in &outcomes {
        let new = o.iter().filter(|s| matches!(s, Stored::New(_))).count();
        assert_eq!(new, 1, "{key:?} stored {new} times: {o:?}");
        assert!(o.contains(&Stored::Duplicate), "{key:?}: {o:?}");
    }
    for (i, r) in recipients.iter().enumerate() {
        let page = t(one.queued_page(*r, 0, 10_000)).await.unwrap();
        assert_eq!(page.len(), PER_SENDER as usize);
        let mut bodies: Vec<Bytes> = page.into_iter().map(|q| q.body).collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(
            bodies.len(),
            PER_SENDER as usize,
            "recipient {i}: a message twice"
        );
    }
    drop((one, two));
    for w in [w1, w2] {
        if let Writer::Task(h) = w {
            t(h).await.unwrap();
        }
    }
}

/// Several processes starting at once on an empty database: the schema is
/// made once, and every one of them opens.
#[tokio::test]
async fn several_engines_starting_at_once_all_open() {
    let pg = PgServer::start().await;
    let url = pg.url();
    let opened = t(futures_util::future::join_all(
        (0..4).map(|_| Store::open_postgres(&url, false, 0, limits())),
    ))
    .await;
    let mut stores = Vec::new();
    for o in opened {
        let (store, _, _task) = o.expect("opens");
        stores.push(store);
    }
    let alice = t(stores[0].sign_in("alice")).await.unwrap();
    assert_eq!(t(stores[3].sign_in("alice")).await.unwrap(), alice);
}

/// Ends node `id`'s lease now, by PostgreSQL's clock, as if it had died.
async fn end_lease(pg: &PgServer, id: u64) {
    pg.client()
        .await
        .execute(
            "UPDATE nodes SET lease_until = now() - interval '1 second' WHERE id = $1",
            &[&(id as i64)],
        )
        .await
        .expect("the lease ends");
}

/// The storage quota is kept in the database for every process together:
/// what one reserves, the other cannot; a discarded upload gives it back;
/// the unfinished uploads of a node whose lease ended are pruned (their
/// numbers returned for their bodies to go) and give their bytes back,
/// while a live node's are left alone.
#[tokio::test]
async fn the_storage_quota_is_shared_and_dead_nodes_uploads_are_pruned() {
    let pg = PgServer::start().await;
    let limits = StoreLimits {
        storage_quota: 100,
        min_file_charge: 10,
        ..StoreLimits::default()
    };
    let db = Db::Postgres(pg);
    let (one, _w1) = open_on(&db, limits).await;
    let (two, _w2) = open_on(&db, limits).await;
    let Db::Postgres(pg) = &db else {
        unreachable!()
    };
    let lease = Duration::from_secs(60);
    let (_a, a) = t(NodeLease::join(&pg.url(), "a", lease)).await.unwrap();
    let (_b, b) = t(NodeLease::join(&pg.url(), "b", lease)).await.unwrap();
    let alice = t(one.sign_in("alice")).await.unwrap();
    let bob = t(two.sign_in("bob")).await.unwrap();

    let first = t(one.create_file("first", 60, alice, a))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t(two.create_file("second", 50, bob, b)).await.unwrap(),
        Err(FileRefused::StorageFull),
        "60 of 100 bytes are reserved through the other process"
    );
    // A small file is charged the minimum: 60 + 10 + 30 = 100.
    let small = t(two.create_file("small", 1, bob, b))
        .await
        .unwrap()
        .unwrap();
    let live = t(two.create_file("live", 30, bob, b))
        .await
        .unwrap()
        .unwrap();
    t(two.complete_file(small)).await.unwrap();
    assert_eq!(
        t(two.create_file("more", 1, bob, b)).await.unwrap(),
        Err(FileRefused::StorageFull)
    );
    t(one.discard_file(live)).await.unwrap();
    let again = t(two.create_file("again", 30, bob, b))
        .await
        .unwrap()
        .unwrap();

    // Node a dies with `first` unfinished: pruning (on either process)
    // removes it, not b's unfinished `again`, and its 60 bytes are free.
    let day = Duration::from_secs(86_400);
    let nothing = t(two.prune(day, None)).await.unwrap();
    assert!(nothing.uploads.is_empty(), "a's lease holds: {nothing:?}");
    end_lease(pg, a).await;
    let pruned = t(two.prune(day, None)).await.unwrap();
    assert_eq!(pruned.uploads, vec![first]);
    assert_eq!(t(one.file(first)).await.unwrap(), None);
    assert!(t(one.file(again)).await.unwrap().is_some());
    t(one.create_file("room", 60, alice, b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t(two.prune(day, None)).await.unwrap().uploads,
        Vec::<u64>::new()
    );
}

/// Broadcast bodies are kept, the newest `broadcasts_kept` by number, and
/// read back since a node joined (all of them, oldest first) or since a
/// session began (without its user's own).
#[tokio::test]
async fn broadcasts_are_kept_trimmed_and_read_back() {
    let limits = StoreLimits {
        broadcasts_kept: 4,
        ..StoreLimits::default()
    };
    let e = Engine::open(Kind::Postgres, limits).await;
    let Db::Postgres(pg) = &e.db else {
        unreachable!()
    };
    let s = e.store();
    let (alice, bob) = (sign_in(&e, "alice").await, sign_in(&e, "bob").await);
    let session = t(s.new_session(bob)).await.unwrap();
    let mut numbers = Vec::new();
    for n in 1..=6u64 {
        let from = if n % 2 == 0 { bob } else { alice };
        let body = Bytes::from(format!("b{n}"));
        let Stored::New(id) = t(t(s.store_broadcast(from, n, body)).await.wait())
            .await
            .unwrap()
        else {
            panic!("a new broadcast");
        };
        numbers.push(id | proto::limits::BROADCAST_BIT);
    }
    // A repeat is not kept again.
    assert_eq!(
        t(t(s.store_broadcast(alice, 5, Bytes::from_static(b"x")))
            .await
            .wait())
        .await
        .unwrap(),
        Stored::Duplicate
    );
    // The trim after a batch is done before the next batch (the barrier).
    t(s.barrier()).await.unwrap();
    let (_node, node) = t(NodeLease::join(&pg.url(), "n", Duration::from_secs(60)))
        .await
        .unwrap();
    let kept = t(s.recent_broadcasts(node, 1000)).await.unwrap();
    // The node joined after all six were sent.
    assert!(kept.is_empty(), "{kept:?}");
    pg.client()
        .await
        .execute(
            "UPDATE nodes SET started_at = started_at - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    let kept = t(s.recent_broadcasts(node, 1000)).await.unwrap();
    let got: Vec<(u64, u64, Bytes)> = kept
        .into_iter()
        .map(|k| (k.delivery, k.sender, k.body))
        .collect();
    let want: Vec<(u64, u64, Bytes)> = (3..=6u64)
        .map(|n| {
            let from = if n % 2 == 0 { bob } else { alice };
            (numbers[n as usize - 1], from, Bytes::from(format!("b{n}")))
        })
        .collect();
    assert_eq!(got, want, "the newest four, oldest first");
    let for_bob = t(s.broadcasts_for_session(session, bob, 1000))
        .await
        .unwrap();
    let bodies: Vec<Bytes> = for_bob.into_iter().map(|k| k.body).collect();
    assert_eq!(bodies, vec![Bytes::from("b3"), Bytes::from("b5")]);
}

/// Two processes create files for the same two users at once, in opposite
/// orders, batch after batch: every batch commits (the cluster's storage
/// row is locked before any user's row, so no two batches wait on each
/// other in a circle, which PostgreSQL would end by failing one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_batches_of_two_processes_never_deadlock() {
    let pg = PgServer::start().await;
    let db = Db::Postgres(pg);
    let (one, _w1) = open_on(&db, limits()).await;
    let (two, _w2) = open_on(&db, limits()).await;
    let u1 = t(one.sign_in("u1")).await.unwrap();
    let u2 = t(one.sign_in("u2")).await.unwrap();
    let run = |store: Store, first: u64, second: u64| {
        tokio::spawn(async move {
            for _ in 0..30 {
                let (a, b) = tokio::join!(
                    store.create_file("a", 1, first, 1),
                    store.create_file("b", 1, second, 1)
                );
                for created in [a, b] {
                    let file = created.expect("no batch failed").expect("room");
                    store.discard_file(file).await.expect("no batch failed");
                }
            }
        })
    };
    let (a, b) = (run(one.clone(), u1, u2), run(two.clone(), u2, u1));
    let within = 6 * patience();
    tokio::time::timeout(within, async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await
    .expect("both finished");
}

/// A node's unfinished upload that no reservation of its process holds
/// (its creation committed but the answer was lost) is pruned by that node
/// once old enough, with its quota bytes; one still held, or a new one, is
/// left alone.
#[tokio::test]
async fn a_nodes_orphaned_upload_is_pruned_once_old_and_held_ones_are_kept() {
    let limits = StoreLimits {
        storage_quota: 1000,
        ..StoreLimits::default()
    };
    let e = Engine::open(Kind::Postgres, limits).await;
    let Db::Postgres(pg) = &e.db else {
        unreachable!()
    };
    let s = e.store();
    let alice = sign_in(&e, "alice").await;
    let (_a, a) = t(NodeLease::join(&pg.url(), "a", Duration::from_secs(60)))
        .await
        .unwrap();
    let orphan = t(s.create_file("orphan", 400, alice, a))
        .await
        .unwrap()
        .unwrap();
    let held = t(s.create_file("held", 400, alice, a))
        .await
        .unwrap()
        .unwrap();
    e.sql("", "UPDATE files SET created_at = created_at - 3600")
        .await;
    let fresh = t(s.create_file("fresh", 100, alice, a))
        .await
        .unwrap()
        .unwrap();
    let (day, ten_minutes) = (Duration::from_secs(86_400), Duration::from_secs(600));
    let pruned = t(s.prune_node(day, None, a, vec![held], ten_minutes))
        .await
        .unwrap();
    assert_eq!(pruned.uploads, vec![orphan]);
    assert_eq!(t(s.file(orphan)).await.unwrap(), None);
    assert!(t(s.file(held)).await.unwrap().is_some());
    assert!(t(s.file(fresh)).await.unwrap().is_some());
    // Its 400 bytes are free again: 400 + 100 + 400 fit in 1000.
    t(s.create_file("room", 400, alice, a))
        .await
        .unwrap()
        .unwrap();
}

/// One process prunes expired mail while another stores messages, makes
/// them expired, then acknowledges them and creates files, for the same
/// mailboxes:
/// every batch of both commits (pruning, alone in its transaction, locks
/// the mailboxes, then the storage row, in the order every batch does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_beside_messages_and_files_never_deadlocks() {
    let pg = PgServer::start().await;
    let db = Db::Postgres(pg);
    let (one, _w1) = open_on(&db, limits()).await;
    let (two, _w2) = open_on(&db, limits()).await;
    let alice = t(one.sign_in("alice")).await.unwrap();
    let bobs: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(t(one.sign_in(&format!("bob{i}"))).await.unwrap());
        }
        v
    };
    let Db::Postgres(pg) = &db else {
        unreachable!()
    };
    let sql = pg.client().await;
    let writer = {
        let store = two.clone();
        let bobs = bobs.clone();
        tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..40 {
                let mut pending = Vec::new();
                for bob in bobs.iter().rev() {
                    n += 1;
                    pending.push((
                        *bob,
                        store.store_direct(alice, n, *bob, Bytes::from("x")).await,
                    ));
                }
                let mut stored = Vec::new();
                for (bob, p) in pending {
                    if let Stored::New(d) = p.wait().await.expect("no batch failed") {
                        stored.push((bob, d));
                    }
                }
                sql.batch_execute("UPDATE queued SET created_at = created_at - 100000")
                    .await
                    .expect("made old");
                for (bob, d) in stored {
                    store.forget(bob, d).await;
                }
                let file = store.create_file("f", 1, alice, 1).await;
                let file = file.expect("no batch failed").expect("room");
                store.discard_file(file).await.expect("no batch failed");
            }
        })
    };
    let pruner = {
        let store = one.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                store
                    .prune(Duration::from_secs(86_400), Some(Duration::from_secs(3600)))
                    .await
                    .expect("no prune failed");
            }
        })
    };
    let log = pg.log();
    let done = tokio::time::timeout(6 * patience(), async { (writer.await, pruner.await) })
        .await
        .expect("both finished");
    if done.0.is_err() || done.1.is_err() {
        panic!(
            "a batch failed: {done:?}; PostgreSQL's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    t(two.barrier())
        .await
        .expect("the last acknowledgements committed");
}

/// A renewal tells when another node's lease has ended since the last
/// look, the join included: a peer that dies before this node's first
/// renewal is noticed (its unfinished uploads are then pruned, and the
/// bus catches up), and so is one whose end the count of ended rows
/// would hide, because a long-dead row was removed meanwhile.
#[tokio::test]
async fn a_renewal_tells_of_each_peer_whose_lease_ended_since_the_last_look() {
    // The store makes the schema.
    let e = Engine::open(Kind::Postgres, limits()).await;
    let Db::Postgres(pg) = &e.db else {
        unreachable!()
    };
    let short = Duration::from_millis(300);
    let (_dying, dying) = t(NodeLease::join(&pg.url(), "dying", short)).await.unwrap();
    let (mut me, _) = t(NodeLease::join(&pg.url(), "me", Duration::from_secs(60)))
        .await
        .unwrap();
    pg.lease_ended(Some(dying as i64)).await;
    let first = t(me.renew()).await.unwrap();
    assert!(first.held && first.peer_ended, "{first:?}");
    let next = t(me.renew()).await.unwrap();
    assert!(next.held && !next.peer_ended, "nothing new: {next:?}");

    // One row goes (as a long-dead one is removed when a node joins) while
    // another lease ends: as many ended rows as before, and still noticed.
    let (_second, second) = t(NodeLease::join(&pg.url(), "second", short))
        .await
        .unwrap();
    let db = pg.client().await;
    db.execute("DELETE FROM nodes WHERE id = $1", &[&(dying as i64)])
        .await
        .unwrap();
    pg.lease_ended(Some(second as i64)).await;
    let after = t(me.renew()).await.unwrap();
    assert!(after.held && after.peer_ended, "{after:?}");
    assert!(!t(me.renew()).await.unwrap().peer_ended);
}
