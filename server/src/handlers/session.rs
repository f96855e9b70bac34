//! SESSION REQUEST and SESSION PRESERVE: signing in, keeping a session
//! alive, and resuming it on a new connection.

use std::sync::Arc;

use proto::limits::validate_user_name;
use proto::{kind, ErrorCode, Packet};

use crate::connection::Connection;
use crate::hub::Session;
use crate::rate::TokenBucket;

/// SESSION REQUEST: opens a session under a name.
pub(super) async fn sign_in(conn: &mut Connection, name: String) {
    const T: u16 = kind::SESSION_REQUEST;
    if conn.session.is_some() {
        conn.error(
            T,
            ErrorCode::UnexpectedPacket,
            0,
            "this connection is already signed in",
        );
        return;
    }
    if let Err(e) = validate_user_name(&name) {
        conn.error(
            T,
            ErrorCode::InvalidName,
            0,
            format!("invalid user name: {e}"),
        );
        return;
    }
    let ctx = conn.ctx.clone();
    let user = match ctx.store.sign_in(&name).await {
        Ok(user) => user,
        Err(e) => return server_error(conn, T, 0, &e),
    };
    if ctx.hub.is_attached(user) {
        conn.error(
            T,
            ErrorCode::NameInUse,
            0,
            format!("{name} is signed in on another connection"),
        );
        return;
    }
    let id = match ctx.store.new_session(user).await {
        Ok(id) => id,
        Err(e) => return server_error(conn, T, 0, &e),
    };
    let rate = TokenBucket::new(ctx.config.message_rate, ctx.config.message_burst);
    let session = Arc::new(Session::new(id, user, name.clone(), conn.out.clone(), rate));
    match ctx.hub.insert(session.clone()) {
        Err(_) => {
            conn.error(
                T,
                ErrorCode::NameInUse,
                0,
                format!("{name} is signed in on another connection"),
            );
            return;
        }
        Ok(Some(replaced)) => {
            ctx.end_session(&replaced, ErrorCode::SessionMoved, "signed in anew".into())
                .await;
        }
        Ok(None) => {}
    }
    tracing::info!(user, %name, "signed in");
    conn.session = Some(session.clone());
    conn.reply(Packet::SessionCookie { user, session: id });
    redeliver(conn, &session).await;
}

/// SESSION PRESERVE: refreshes this connection's session, or moves a live
/// session from another (possibly dead) connection to this one.
pub(super) async fn preserve(conn: &mut Connection, quoted: u64) {
    const T: u16 = kind::SESSION_PRESERVE;
    match &conn.session {
        Some(own) if own.id == quoted => {
            own.touch();
            conn.reply(Packet::SessionCookie {
                user: own.user,
                session: own.id,
            });
        }
        Some(_) => conn.error(
            T,
            ErrorCode::BadSession,
            0,
            "that is not this connection's session",
        ),
        None => {
            let Some(session) = conn.ctx.hub.get(quoted) else {
                conn.error(
                    T,
                    ErrorCode::BadSession,
                    0,
                    "no live session has that number; sign in again",
                );
                return;
            };
            let previous = {
                let mut st = session.state();
                if st.ended {
                    drop(st);
                    conn.error(
                        T,
                        ErrorCode::BadSession,
                        0,
                        "the session has ended; sign in again",
                    );
                    return;
                }
                st.last_seen = tokio::time::Instant::now();
                st.conn.replace(conn.out.clone())
            };
            if let Some(previous) = previous {
                previous.close(
                    ErrorCode::SessionMoved,
                    "the session was resumed on another connection".into(),
                );
            }
            tracing::info!(user = session.user, name = %session.name, "session resumed");
            conn.session = Some(session.clone());
            conn.reply(Packet::SessionCookie {
                user: session.user,
                session: session.id,
            });
            redeliver(conn, &session).await;
        }
    }
}

/// Sends every message the user has not acknowledged: queued direct
/// messages from the store, then pending broadcasts, each in order.
async fn redeliver(conn: &Connection, session: &Session) {
    // The cookie goes out before the store is asked, as it did before live
    // deliveries could reach this connection.
    conn.flush();
    match conn.ctx.store.queued_for(session.user).await {
        Ok(queued) => {
            for q in queued {
                conn.reply(Packet::IncomingMessage {
                    from: q.from,
                    message: q.delivery,
                    body: q.body,
                });
                conn.flush_paced().await;
            }
        }
        Err(e) => tracing::error!(error = %e, "could not load queued messages"),
    }
    let pending = session.state().pending_broadcasts.packets();
    for bytes in pending {
        conn.reply_bytes(&bytes);
        conn.flush_paced().await;
    }
}

pub(super) fn server_error(
    conn: &Connection,
    request_type: u16,
    subject: u64,
    e: &dyn std::fmt::Display,
) {
    tracing::error!(error = %e, request_type, "store failure");
    conn.error(
        request_type,
        ErrorCode::ServerError,
        subject,
        "the server could not complete the request; try again",
    );
}
