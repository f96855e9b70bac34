//! MESSAGE REQUEST, BROADCAST REQUEST and INCOMING MESSAGE RESPONSE.

use bytes::{Bytes, BytesMut};
use proto::limits::BROADCAST_BIT;
use proto::{kind, ErrorCode, Packet};

use crate::connection::Connection;
use crate::hub::Session;
use crate::store::Stored;

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

fn encode(packet: &Packet) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(packet.encoded_len());
    packet.encode(&mut buf).ok().map(|()| buf.freeze())
}

/// MESSAGE REQUEST: store durably, acknowledge, then push to the recipient.
pub(super) async fn direct(
    conn: &Connection,
    session: &Session,
    to: u64,
    message: u64,
    body: Bytes,
) {
    const T: u16 = kind::MESSAGE_REQUEST;
    if rate_limited(conn, session, T, message) {
        return;
    }
    let ctx = &conn.ctx;
    match ctx
        .store
        .store_direct(session.user, message, to, body.clone())
        .await
    {
        Ok(Stored::New(delivery)) => {
            conn.reply(Packet::MessageResponse { message });
            let incoming = Packet::IncomingMessage {
                from: session.user,
                message: delivery,
                body,
            };
            if let Some(bytes) = encode(&incoming) {
                ctx.hub.deliver(to, bytes);
            }
        }
        Ok(Stored::Duplicate) => conn.reply(Packet::MessageResponse { message }),
        Ok(Stored::UnknownRecipient) => conn.error(
            T,
            ErrorCode::UnknownUser,
            message,
            format!("no user has number {to}"),
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
    const T: u16 = kind::BROADCAST_REQUEST;
    if rate_limited(conn, session, T, message) {
        return;
    }
    let ctx = &conn.ctx;
    match ctx
        .store
        .store_broadcast(session.user, message, body.clone())
        .await
    {
        Ok(Stored::New(id)) => {
            conn.reply(Packet::BroadcastResponse { message });
            let delivery = id | BROADCAST_BIT;
            let incoming = Packet::IncomingMessage {
                from: session.user,
                message: delivery,
                body,
            };
            if let Some(bytes) = encode(&incoming) {
                ctx.hub.broadcast(
                    session.id,
                    delivery,
                    &bytes,
                    ctx.config.max_pending_broadcasts,
                );
            }
        }
        Ok(_) => conn.reply(Packet::BroadcastResponse { message }),
        Err(e) => {
            tracing::error!(error = %e, "could not record a broadcast");
            conn.error(
                T,
                ErrorCode::ServerError,
                message,
                "the broadcast could not be stored; try again",
            );
        }
    }
}

/// INCOMING MESSAGE RESPONSE: the client has the message; forget it.
/// Acknowledging an unknown or already acknowledged number is harmless.
pub(super) fn ack(conn: &Connection, session: &Session, message: u64) {
    if message & BROADCAST_BIT != 0 {
        session.state().pending_broadcasts.remove(&message);
    } else {
        conn.ctx.store.forget(session.user, message);
    }
}
