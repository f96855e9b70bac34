//! A data directory written by an earlier version opens in this one with
//! its queued messages, their numbers and its deduplication intact.

mod common;

use bytes::Bytes;
use common::TestServer;
use proto::Packet;

/// The schema of the first release: queued messages in a rowid table with
/// an index, and a row per message number ever accepted.
const FIRST_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
-- Every session number ever issued, so none is issued twice.
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
-- Direct messages not yet acknowledged by their recipient. The id is the
-- delivery number; AUTOINCREMENT keeps ids of deleted rows from returning.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages(recipient, id);
CREATE TABLE IF NOT EXISTS broadcasts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
-- (sender, message number) pairs already accepted, for deduplication.
CREATE TABLE IF NOT EXISTS sent (
    sender INTEGER NOT NULL,
    number INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sender, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploader INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
";

#[tokio::test]
async fn a_first_release_database_keeps_its_queue_numbers_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).unwrap();
        db.execute_batch(FIRST_SCHEMA).unwrap();
        db.execute_batch(
            "INSERT INTO users (id, name, created_at) VALUES (1, 'alice', 0), (2, 'bob', 0);
             INSERT INTO messages (id, recipient, sender, body, created_at) VALUES (7, 2, 1, CAST('queued before' AS BLOB), CAST(strftime('%s', 'now') AS INTEGER));
             -- Messages 8 and 9 were delivered and deleted; their numbers stay used.
             UPDATE sqlite_sequence SET seq = 9 WHERE name = 'messages';
             INSERT INTO sent (sender, number, created_at) VALUES (1, 100, 0), (1, 101, 0), (1, 103, 0);
             INSERT INTO broadcasts (id, sender, body, created_at) VALUES (41, 1, CAST('old' AS BLOB), 0);",
        )
        .unwrap();
    }
    let srv = TestServer::start_in(dir).await;
    let mut bob = srv.signed_in("bob").await;
    assert_eq!(bob.user, 2);
    let (from, number, body) = bob.incoming().await;
    assert_eq!((from, number, &body[..]), (1, 7, &b"queued before"[..]));
    bob.ack(number).await;
    let mut alice = srv.signed_in("alice").await;
    // 101 and 103 were accepted before the upgrade: acknowledged, not stored.
    // 102 never was: stored, under a delivery number never used before.
    for n in [101, 103, 102] {
        alice.message(2, n, &format!("number {n}")).await;
    }
    let (_, number, body) = bob.incoming().await;
    assert_eq!(&body[..], b"number 102");
    assert!(number > 9, "delivery number {number} was used before");
    // Nothing else is queued for Bob.
    let session = alice.session;
    alice
        .send(Packet::MessageRequest {
            session,
            to: 2,
            message: 104,
            body: Bytes::from_static(b"last"),
        })
        .await;
    assert_eq!(alice.recv().await, Packet::MessageResponse { message: 104 });
    let (_, _, body) = bob.incoming().await;
    assert_eq!(&body[..], b"last");
    // Broadcast bodies are gone; their numbers go on from the old table's.
    alice
        .send(Packet::BroadcastRequest {
            session,
            message: 105,
            body: Bytes::from_static(b"to all"),
        })
        .await;
    assert_eq!(
        alice.recv().await,
        Packet::BroadcastResponse { message: 105 }
    );
    let (_, number, _) = bob.incoming().await;
    assert!(
        number > (41 | proto::limits::BROADCAST_BIT),
        "broadcast number {number:x} was used before"
    );
}
