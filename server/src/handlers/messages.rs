//! MESSAGE REQUEST, BROADCAST REQUEST and INCOMING MESSAGE RESPONSE.

use bytes::Bytes;
use proto::limits::BROADCAST_BIT;
use proto::{kind, ErrorCode, Packet};

use crate::connection::Connection;
use crate::hub::Session;
use crate::observe::names;
use crate::outbox::encode;
use crate::store::{Pending, StoreError, Stored};

fn rate_limited(conn: &Connection, session: &Session, t: u16, message: u64) -> bool {
    let allowed = session.state().rate.allow(tokio::time::Instant::now());
    if !allowed {
        conn.error(
            t,
            ErrorCode::RateLimited,
            message,
            format!(
                "more than {} messages a second; slow down and retry",
                conn.ctx.config.message_rate
            ),
        );
    }
    !allowed
}

/// A message or broadcast whose store request is queued; its answer and
/// delivery follow the commit.
#[derive(Debug)]
pub(crate) struct Started {
    message: u64,
    to: Option<u64>,
    body: Bytes,
    pending: Pending<Stored>,
}

/// Messages queued to the store in the order they arrived. Answering them
/// in that order keeps the connection's replies in request order, while
/// one commit serves all of them.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    started: Vec<Started>,
}

impl Pipeline {
    /// Queues `packet` to the store if it is a message that passes the
    /// session and rate checks; otherwise hands it back for [`super::handle`],
    /// which reports what is wrong.
    pub(crate) async fn try_start(&mut self, conn: &Connection, packet: Packet) -> Option<Packet> {
        let (to, message, body) = match &packet {
            Packet::MessageRequest {
                to, message, body, ..
            } => (Some(*to), *message, body.clone()),
            Packet::BroadcastRequest { message, body, .. } => (None, *message, body.clone()),
            _ => return Some(packet),
        };
        let Some(session) = &conn.session else {
            return Some(packet);
        };
        if packet.session() != Some(session.id)
            || (to.is_some() && conn.ctx.disk.refuse(body.len() as u64).is_some())
            || !session.state().rate.allow(tokio::time::Instant::now())
        {
            return Some(packet);
        }
        session.touch();
        let store = &conn.ctx.store;
        let pending = match to {
            Some(to) => {
                store
                    .store_direct(session.user, message, to, body.clone())
                    .await
            }
            None => {
                store
                    .store_broadcast(session.user, message, body.clone())
                    .await
            }
        };
        self.started.push(Started {
            message,
            to,
            body,
            pending,
        });
        None
    }

    /// Answers and delivers every queued message, in order. Consecutive
    /// broadcasts are fanned out together, so each receiver's connection
    /// gets them in one write.
    pub(crate) async fn finish(&mut self, conn: &Connection) {
        let Some(session) = conn.session.clone() else {
            self.started.clear();
            return;
        };
        let mut fan_out = Vec::new();
        for s in self.started.drain(..) {
            let outcome = s.pending.wait().await;
            match s.to {
                Some(to) => {
                    // Earlier broadcasts reach everyone before this message.
                    fan_out_broadcasts(conn, &session, &mut fan_out);
                    finish_direct(conn, &session, to, s.message, s.body, outcome)
                }
                None => {
                    fan_out.extend(finish_broadcast(conn, &session, s.message, s.body, outcome))
                }
            }
        }
        fan_out_broadcasts(conn, &session, &mut fan_out);
    }
}

/// Hands stored broadcasts to every other session, and empties `batch`.
fn fan_out_broadcasts(conn: &Connection, session: &Session, batch: &mut Vec<(u64, Bytes)>) {
    if !batch.is_empty() {
        let ctx = &conn.ctx;
        ctx.bus.broadcast(session, batch);
        batch.clear();
    }
}

/// MESSAGE REQUEST: store durably, acknowledge, then push to the recipient.
pub(super) async fn direct(
    conn: &Connection,
    session: &Session,
    to: u64,
    message: u64,
    body: Bytes,
) {
    if let Some(why) = conn.ctx.disk.refuse(body.len() as u64) {
        conn.error(
            kind::MESSAGE_REQUEST,
            ErrorCode::InsufficientStorage,
            message,
            why,
        );
        return;
    }
    if rate_limited(conn, session, kind::MESSAGE_REQUEST, message) {
        return;
    }
    let outcome = conn
        .ctx
        .store
        .store_direct(session.user, message, to, body.clone())
        .await
        .wait()
        .await;
    finish_direct(conn, session, to, message, body, outcome);
}

fn finish_direct(
    conn: &Connection,
    session: &Session,
    to: u64,
    message: u64,
    body: Bytes,
    outcome: Result<Stored, StoreError>,
) {
    const T: u16 = kind::MESSAGE_REQUEST;
    let result = match &outcome {
        Ok(Stored::New(_)) => "stored",
        Ok(Stored::Duplicate) => "duplicate",
        Ok(Stored::UnknownRecipient) => "unknown_recipient",
        Ok(Stored::MailboxFull) => "mailbox_full",
        Err(_) => "error",
    };
    metrics::counter!(names::MESSAGES_IN, "result" => result).increment(1);
    match outcome {
        Ok(Stored::New(delivery)) => {
            conn.reply(Packet::MessageResponse { message });
            let incoming = Packet::IncomingMessage {
                from: session.user,
                message: delivery,
                body,
            };
            if to == session.user {
                // A note to oneself arrives after its acknowledgement.
                conn.flush();
            }
            if let Some(bytes) = encode(&incoming) {
                conn.ctx.bus.deliver(to, delivery, bytes);
            }
        }
        Ok(Stored::Duplicate) => conn.reply(Packet::MessageResponse { message }),
        Ok(Stored::UnknownRecipient) => conn.error(
            T,
            ErrorCode::UnknownUser,
            message,
            format!("no user has number {to}"),
        ),
        Ok(Stored::MailboxFull) => conn.error(
            T,
            ErrorCode::MailboxFull,
            message,
            format!(
                "user {to} has as many unread messages as the server keeps (at most {} messages or {} bytes); try again once they have read some",
                conn.ctx.config.max_mailbox_messages, conn.ctx.config.max_mailbox_bytes
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not store a message");
            conn.error(
                T,
                ErrorCode::ServerError,
                message,
                "the message could not be stored; try again",
            );
        }
    }
}

/// BROADCAST REQUEST: record once, acknowledge, push to every other session.
pub(super) async fn broadcast(conn: &Connection, session: &Session, message: u64, body: Bytes) {
    if rate_limited(conn, session, kind::BROADCAST_REQUEST, message) {
        return;
    }
    let outcome = conn
        .ctx
        .store
        .store_broadcast(session.user, message, body.clone())
        .await
        .wait()
        .await;
    let stored = finish_broadcast(conn, session, message, body, outcome);
    fan_out_broadcasts(conn, session, &mut stored.into_iter().collect());
}

/// Answers a broadcast request; returns the delivery number and packet to
/// fan out if it is new.
fn finish_broadcast(
    conn: &Connection,
    session: &Session,
    message: u64,
    body: Bytes,
    outcome: Result<Stored, StoreError>,
) -> Option<(u64, Bytes)> {
    let result = match &outcome {
        Ok(Stored::New(_)) => "stored",
        Ok(_) => "duplicate",
        Err(_) => "error",
    };
    metrics::counter!(names::BROADCASTS_IN, "result" => result).increment(1);
    match outcome {
        Ok(Stored::New(id)) => {
            conn.reply(Packet::BroadcastResponse { message });
            let delivery = id | BROADCAST_BIT;
            let incoming = Packet::IncomingMessage {
                from: session.user,
                message: delivery,
                body,
            };
            encode(&incoming).map(|bytes| (delivery, bytes))
        }
        Ok(_) => {
            conn.reply(Packet::BroadcastResponse { message });
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record a broadcast");
            conn.error(
                kind::BROADCAST_REQUEST,
                ErrorCode::ServerError,
                message,
                "the broadcast could not be stored; try again",
            );
            None
        }
    }
}

/// INCOMING MESSAGE RESPONSE: the client has the message; forget it.
/// Acknowledging an unknown or already acknowledged number is harmless.
pub(super) async fn ack(conn: &Connection, session: &Session, message: u64) {
    if message & BROADCAST_BIT != 0 {
        conn.ctx.hub.ack_broadcast(session, message);
    } else {
        session.acknowledged(message);
        conn.ctx.store.forget(session.user, message).await;
    }
}
