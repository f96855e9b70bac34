//! Live sessions and live delivery.
//!
//! The hub knows which sessions exist, which connection each one is on,
//! and pushes messages to them. It is in memory and local to one server
//! process: a multi-server deployment replaces it with one that publishes
//! deliveries on a message bus; its callers see only these methods.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::pending::PendingBroadcasts;
use crate::rate::TokenBucket;

/// An upload in progress, owned by its session.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) file: u64,
    pub(crate) size: u32,
    pub(crate) part: Arc<File>,
    /// One bit per chunk received.
    pub(crate) received: Vec<u64>,
    pub(crate) remaining: u32,
}

/// A download in progress, owned by its session.
#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) size: u32,
    pub(crate) body: File,
    /// A read-ahead window of the body: (offset, bytes).
    pub(crate) cache: (u64, Bytes),
}

/// The mutable part of a session.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// The connection the session is on; `None` while the client is away.
    pub(crate) conn: Option<Outbox>,
    pub(crate) last_seen: Instant,
    pub(crate) uploads: HashMap<u64, Upload>,
    pub(crate) downloads: HashMap<u64, Download>,
    /// Broadcast deliveries not yet acknowledged, as encoded packets.
    pub(crate) pending_broadcasts: PendingBroadcasts,
    pub(crate) rate: TokenBucket,
    pub(crate) ended: bool,
}

/// A signed-in session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) user: u64,
    pub(crate) name: String,
    state: Mutex<SessionState>,
}

impl Session {
    pub(crate) fn new(id: u64, user: u64, name: String, conn: Outbox, rate: TokenBucket) -> Self {
        Self {
            id,
            user,
            name,
            state: Mutex::new(SessionState {
                conn: Some(conn),
                last_seen: Instant::now(),
                uploads: HashMap::new(),
                downloads: HashMap::new(),
                pending_broadcasts: PendingBroadcasts::default(),
                rate,
                ended: false,
            }),
        }
    }

    /// Locks the session's state. A panic while it was held cannot leave it
    /// inconsistent in a way worth refusing service for, so poisoning is ignored.
    pub(crate) fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the session as active now.
    pub(crate) fn touch(&self) {
        self.state().last_seen = Instant::now();
    }

    /// Queues bytes on the session's connection, if it has one.
    pub(crate) fn push(&self, bytes: Bytes) {
        if let Some(conn) = &self.state().conn {
            conn.send(bytes);
        }
    }
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<u64, Arc<Session>>,
    by_user: HashMap<u64, Arc<Session>>,
}

/// Every live session of this server.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    sessions: Mutex<Sessions>,
}

/// Why a session could not be opened.
#[derive(Debug)]
pub(crate) struct NameInUse;

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `user` has a session on a connection now.
    pub(crate) fn is_attached(&self, user: u64) -> bool {
        self.lock()
            .by_user
            .get(&user)
            .is_some_and(|s| s.state().conn.is_some())
    }

    /// Registers a new session. A session of the same user that is on a
    /// connection refuses it; one whose client is away is replaced and
    /// returned, for the caller to end.
    pub(crate) fn insert(&self, session: Arc<Session>) -> Result<Option<Arc<Session>>, NameInUse> {
        let mut s = self.lock();
        let replaced = match s.by_user.get(&session.user) {
            Some(old) if old.state().conn.is_some() => return Err(NameInUse),
            Some(old) => Some(old.clone()),
            None => None,
        };
        if let Some(old) = &replaced {
            s.by_id.remove(&old.id);
        }
        s.by_user.insert(session.user, session.clone());
        s.by_id.insert(session.id, session);
        Ok(replaced)
    }

    /// The live session with this number.
    pub(crate) fn get(&self, session: u64) -> Option<Arc<Session>> {
        self.lock().by_id.get(&session).cloned()
    }

    /// Users whose session is on a connection now.
    pub(crate) fn online_users(&self) -> Vec<u64> {
        let s = self.lock();
        let mut users: Vec<u64> = s
            .by_user
            .values()
            .filter(|session| session.state().conn.is_some())
            .map(|session| session.user)
            .collect();
        users.sort_unstable();
        users
    }

    /// Pushes an encoded packet to `user`'s connection, if there is one.
    pub(crate) fn deliver(&self, user: u64, bytes: Bytes) {
        let session = self.lock().by_user.get(&user).cloned();
        if let Some(session) = session {
            session.push(bytes);
        }
    }

    /// Hands broadcasts, as (delivery number, encoded packet) in order, to
    /// every live session but the sender's, keeping them for redelivery
    /// until acknowledged (at most `keep` per session). Several at once
    /// reach each connection in one write.
    pub(crate) fn broadcast(&self, except: u64, batch: &[(u64, Bytes)], keep: usize) {
        let sessions: Vec<Arc<Session>> = self.lock().by_id.values().cloned().collect();
        let frames: Vec<Bytes> = batch.iter().map(|(_, b)| b.clone()).collect();
        for session in sessions.iter().filter(|s| s.id != except) {
            let mut st = session.state();
            for (delivery, bytes) in batch {
                st.pending_broadcasts.insert(*delivery, bytes.clone(), keep);
            }
            if let Some(conn) = &st.conn {
                conn.send_all(&frames);
            }
        }
    }

    /// Removes and returns the sessions silent for `timeout` or longer.
    pub(crate) fn take_expired(
        &self,
        now: Instant,
        timeout: std::time::Duration,
    ) -> Vec<Arc<Session>> {
        let mut s = self.lock();
        let expired: Vec<Arc<Session>> = s
            .by_id
            .values()
            .filter(|session| now.duration_since(session.state().last_seen) >= timeout)
            .cloned()
            .collect();
        for session in &expired {
            s.by_id.remove(&session.id);
            if s.by_user
                .get(&session.user)
                .is_some_and(|x| x.id == session.id)
            {
                s.by_user.remove(&session.user);
            }
        }
        expired
    }

    /// Removes and returns every session (at shutdown).
    pub(crate) fn drain(&self) -> Vec<Arc<Session>> {
        let mut s = self.lock();
        s.by_user.clear();
        s.by_id.drain().map(|(_, v)| v).collect()
    }
}
