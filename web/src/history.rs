//! History that stays: each conversation is kept in IndexedDB, per server
//! and signed-in name, so it survives closing every tab and restarting the
//! browser. One record per conversation, rewritten when it changes; its
//! length is bounded by [`crate::state::HISTORY`] (the reducer drops the
//! oldest first), so a record never grows without end.
//!
//! Records are keyed `ACCOUNT \u{1f} PEER`, where ACCOUNT is the server's
//! WebSocket URL and the name, so one account's records are one key range
//! (loaded and cleared together) and two servers under one origin (two
//! sub-paths) keep separate histories.

use std::cell::RefCell;
use std::rc::Rc;

use rexie::{KeyRange, ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

use crate::browser;
use crate::connection::socket_url;
use crate::record;
use crate::state::{Peer, Stored};

const DATABASE: &str = "chat-history";
const STORE: &str = "conversations";
/// Separates the parts of a key; no URL or valid name contains it.
const SEPARATOR: char = '\u{1f}';

/// The account whose history this page keeps: the server (its WebSocket
/// URL) and the name.
pub fn account(name: &str) -> String {
    let server = browser::base_uri()
        .as_deref()
        .and_then(socket_url)
        .unwrap_or_default();
    format!("{server}{SEPARATOR}{name}")
}

fn key(account: &str, peer: Peer) -> String {
    match peer {
        Peer::Everyone => format!("{account}{SEPARATOR}everyone"),
        Peer::User(u) => format!("{account}{SEPARATOR}user {u}"),
    }
}

thread_local! {
    static DB: RefCell<Option<Rc<Rexie>>> = const { RefCell::new(None) };
}

fn error(e: impl std::fmt::Display) -> String {
    format!("history storage: {e}")
}

async fn database() -> Result<Rc<Rexie>, String> {
    if let Some(db) = DB.with(|d| d.borrow().clone()) {
        return Ok(db);
    }
    let db = Rc::new(
        Rexie::builder(DATABASE)
            .version(1)
            .add_object_store(ObjectStore::new(STORE))
            .build()
            .await
            .map_err(error)?,
    );
    DB.with(|d| *d.borrow_mut() = Some(db.clone()));
    Ok(db)
}

fn range(account: &str) -> Result<KeyRange, String> {
    // Every key of the account, and no other: ACCOUNT SEP ... sorts between
    // these two (keys compare by UTF-16 code unit).
    KeyRange::bound(
        &JsValue::from_str(&format!("{account}{SEPARATOR}")),
        &JsValue::from_str(&format!("{account}{SEPARATOR}\u{ffff}")),
        None,
        None,
    )
    .map_err(error)
}

/// Every stored conversation of `account`. A record that no longer reads
/// (written by a future version, or damaged) is skipped, not fatal.
pub async fn load(account: &str) -> Result<Vec<Stored>, String> {
    let db = database().await?;
    let tx = db
        .transaction(&[STORE], TransactionMode::ReadOnly)
        .map_err(error)?;
    let store = tx.store(STORE).map_err(error)?;
    let values = store
        .get_all(Some(range(account)?), None)
        .await
        .map_err(error)?;
    Ok(values
        .into_iter()
        .filter_map(|v| v.as_string())
        .filter_map(|json| record::stored_from_json(&json))
        .collect())
}

/// Writes one conversation of `account`.
pub async fn save(account: &str, stored: &Stored) -> Result<(), String> {
    let json = record::stored_to_json(stored);
    let db = database().await?;
    let tx = db
        .transaction(&[STORE], TransactionMode::ReadWrite)
        .map_err(error)?;
    let store = tx.store(STORE).map_err(error)?;
    store
        .put(
            &JsValue::from_str(&json),
            Some(&JsValue::from_str(&key(account, stored.peer))),
        )
        .await
        .map_err(error)?;
    tx.done().await.map_err(error)?;
    Ok(())
}

/// Deletes every stored conversation of `account`.
pub async fn clear(account: &str) -> Result<(), String> {
    let db = database().await?;
    let tx = db
        .transaction(&[STORE], TransactionMode::ReadWrite)
        .map_err(error)?;
    let store = tx.store(STORE).map_err(error)?;
    store.delete(range(account)?.into()).await.map_err(error)?;
    tx.done().await.map_err(error)?;
    Ok(())
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use crate::state::{Conversation, Delivery, Message};
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn conversation(texts: &[&str]) -> Conversation {
        Conversation {
            messages: texts
                .iter()
                .enumerate()
                .map(|(i, t)| Message {
                    from: 2,
                    text: (*t).to_owned(),
                    own: (i == 0).then_some((9, Delivery::Sending)),
                    delivery: (i != 0).then_some(i as u64),
                    at_ms: 1_000_000_000_000 + i as u64,
                })
                .collect(),
            unread: 1,
            first_unread: None,
        }
    }

    #[test]
    async fn conversations_are_kept_per_account_and_cleared_together() {
        let (ann, bob) = ("test-a\u{1f}ann", "test-a\u{1f}bob");
        clear(ann).await.unwrap();
        clear(bob).await.unwrap();
        let everyone = Stored {
            peer: Peer::Everyone,
            conversation: conversation(&["one", "two"]),
            names: vec![(2, "cy".into())],
        };
        let direct = Stored {
            peer: Peer::User(2),
            conversation: conversation(&["three"]),
            names: vec![],
        };
        save(ann, &everyone).await.unwrap();
        save(ann, &direct).await.unwrap();
        save(bob, &direct).await.unwrap();
        let mut loaded = load(ann).await.unwrap();
        loaded.sort_by_key(|s| s.peer);
        assert_eq!(loaded, vec![everyone.clone(), direct.clone()]);
        // A rewrite replaces the record.
        let mut changed = direct.clone();
        changed.conversation.unread = 0;
        save(ann, &changed).await.unwrap();
        assert_eq!(load(ann).await.unwrap().len(), 2);
        clear(ann).await.unwrap();
        assert!(load(ann).await.unwrap().is_empty());
        assert_eq!(
            load(bob).await.unwrap(),
            vec![direct],
            "another name's history stays"
        );
        clear(bob).await.unwrap();
    }
}
