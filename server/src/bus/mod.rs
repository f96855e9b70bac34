//! Live delivery between server processes: the bus.
//!
//! The handlers hand every live delivery to the bus, and do not know which
//! one is in use:
//! - [`Bus::Local`], one process (SQLite, or a single PostgreSQL node
//!   in tests): a delivery goes straight to the [`Hub`], as it always did.
//!   Nothing is allocated and nothing runs beside it.
//! - [`Bus::Nats`], several processes sharing one PostgreSQL: deliveries
//!   for users attached elsewhere are published on NATS, one connection per
//!   process ([`nats`]).
//!
//! The bus is only a wake-up, never the record: a direct message is
//! committed to the store before it is published, and whatever the bus
//! loses is read again from the store ([`crate::redelivery::catch_up`]).

pub(crate) mod nats;

use std::sync::Arc;

use bytes::Bytes;

use crate::hub::{Hub, Session};

/// The live-delivery path of this process.
#[derive(Debug)]
pub(crate) enum Bus {
    /// One process: deliveries go to the hub directly.
    Local(Arc<Hub>),
    /// Several processes: NATS carries deliveries between them.
    Nats(Arc<nats::NatsBus>),
}

impl Bus {
    /// Direct message `delivery` (committed) for `user`, encoded: pushed to
    /// the user's connection wherever it is.
    pub(crate) fn deliver(&self, user: u64, delivery: u64, bytes: Bytes) {
        match self {
            Bus::Local(hub) => hub.deliver(user, delivery, bytes),
            Bus::Nats(bus) => bus.deliver(user, delivery, bytes),
        }
    }

    /// Broadcasts of `sender` (numbered by the store): to every session,
    /// in every process, but the sender's.
    pub(crate) fn broadcast(&self, sender: &Session, batch: &[(u64, Bytes)]) {
        match self {
            Bus::Local(hub) => hub.broadcast(sender, batch),
            Bus::Nats(bus) => bus.broadcast(sender, batch),
        }
    }

    /// A session of `user` begins here: from the return on, every
    /// delivery to `user` committed later reaches this process. Called
    /// before the session's mailbox is read, so a message committed in
    /// between is read, or arrives live, or both (the client drops
    /// repeats), and is never missed. Paired with [`Bus::unlisten`].
    pub(crate) async fn listen(&self, user: u64) {
        if let Bus::Nats(bus) = self {
            bus.listen(user).await;
        }
    }

    /// Asks node `node` to end `session`, which this node has taken over;
    /// the broadcasts it was owed there, if the node answered. Alone
    /// there is no other node: `None`.
    pub(crate) async fn release(&self, node: u64, session: u64) -> Option<Vec<(u64, Bytes)>> {
        match self {
            Bus::Local(_) => None,
            Bus::Nats(bus) => bus.release(node, session).await,
        }
    }

    /// Another node's lease has ended: what it committed and never
    /// published is read from the store, for the sessions attached here.
    /// Alone there is nothing to catch up.
    pub(crate) fn peer_ended(&self) {
        if let Bus::Nats(bus) = self {
            bus.catch_up_now();
        }
    }

    /// A session of `user` here has ended.
    pub(crate) fn unlisten(&self, user: u64) {
        if let Bus::Nats(bus) = self {
            bus.unlisten(user);
        }
    }
}
