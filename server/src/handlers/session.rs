//! SESSION REQUEST and SESSION PRESERVE: signing in, keeping a session
//! alive, and resuming it on a new connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use proto::limits::validate_user_name;
use proto::{kind, ErrorCode, Packet};

use crate::accounts::AccountMode;
use crate::bus::nats::MOVED;
use crate::connection::Connection;
use crate::hub::Session;
use crate::rate::TokenBucket;
use crate::redelivery;
use crate::store::Claim;

/// The checks every sign-in (SESSION REQUEST, ACCOUNT SIGN IN) starts
/// with: not signed in yet, not too fast, a valid name. False when one
/// failed (and was answered).
pub(super) fn may_sign_in(conn: &Connection, t: u16, name: &str) -> bool {
    if conn.session.is_some() {
        conn.error(
            t,
            ErrorCode::UnexpectedPacket,
            0,
            "this connection is already signed in",
        );
        return false;
    }
    if !conn.ctx.peers.allow_sign_in(conn.peer.ip()) {
        sign_ins_too_fast(conn, t);
        return false;
    }
    if let Err(e) = validate_user_name(name) {
        conn.error(
            t,
            ErrorCode::InvalidName,
            0,
            format!("invalid user name: {e}"),
        );
        return false;
    }
    true
}

/// SESSION REQUEST: opens a session under a name that has no password.
pub(super) async fn sign_in(conn: &mut Connection, name: String) {
    const T: u16 = kind::SESSION_REQUEST;
    if !may_sign_in(conn, T, &name) {
        return;
    }
    let ctx = conn.ctx.clone();
    let user = match ctx.accounts.mode {
        AccountMode::Off => ctx.store.sign_in(&name).await.map(Some),
        AccountMode::Open => ctx.store.sign_in_unprotected(&name).await,
        AccountMode::Required => Ok(None),
    };
    match user {
        Ok(Some(user)) => open_session(conn, T, name, user).await,
        Ok(None) => {
            let text = match ctx.accounts.mode {
                AccountMode::Required => {
                    "this server signs in with a password only (ACCOUNT SIGN IN)".to_string()
                }
                _ => format!("{name} is protected by a password; sign in with it"),
            };
            conn.error(T, ErrorCode::NameProtected, 0, text);
        }
        Err(e) => server_error(conn, T, 0, &e),
    }
}

/// Opens a session for `user` (signed in under `name` by request type
/// `t`) on this connection, unless the user is signed in on another, here
/// or (in a cluster) on another live node.
pub(super) async fn open_session(conn: &mut Connection, t: u16, name: String, user: u64) {
    let ctx = conn.ctx.clone();
    let in_use = |conn: &Connection| {
        conn.error(
            t,
            ErrorCode::NameInUse,
            0,
            format!("{name} is signed in on another connection"),
        )
    };
    if ctx.hub.is_attached(user) {
        return in_use(conn);
    }
    let id = match ctx.store.new_session(user).await {
        Ok(id) => id,
        Err(e) => return server_error(conn, t, 0, &e),
    };
    let taken = match ctx.store.claim_name(user, id, ctx.node()).await {
        Ok(Claim::Taken(taken)) => taken,
        Ok(Claim::InUse) => return in_use(conn),
        Err(e) => return server_error(conn, t, 0, &e),
    };
    let rate = TokenBucket::new(ctx.config.message_rate, ctx.config.message_burst);
    let owed = ctx.hub.new_owed();
    let session = Arc::new(Session::new(id, user, name.clone(), rate, owed));
    session.epoch.store(taken.epoch, Ordering::Release);
    match ctx.hub.insert(session.clone()) {
        // Another connection here signed the name in meanwhile.
        Err(_) => {
            crate::owners::give_back(&ctx, user).await;
            return in_use(conn);
        }
        Ok(Some(replaced)) => {
            ctx.bus.listen(user).await;
            ctx.end_session(&replaced, ErrorCode::SessionMoved, "signed in anew".into());
        }
        Ok(None) => ctx.bus.listen(user).await,
    }
    if let Some((node, old)) = taken.replaced {
        // A live node kept a session of the name whose client was away.
        ctx.bus.release(node, old).await;
    }
    tracing::info!(user, %name, "signed in");
    // Looked at before the cookie goes out, so that the client, once it has
    // the cookie, finds the connection reading again (a new session holds
    // what arrives live from its start, so nothing is missed meanwhile).
    let stored = Some(!redelivery::nothing_stored(&ctx, &session).await);
    conn.reply(Packet::SessionCookie { user, session: id });
    conn.flush();
    // None: replaced or expired in the meantime.
    if let Some((_, owed)) = ctx.hub.attach(&session, conn.out.clone()) {
        attached(conn, session, owed, stored).await;
    }
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
            if !conn.ctx.peers.allow_sign_in(conn.peer.ip()) {
                return sign_ins_too_fast(conn, T);
            }
            if conn.ctx.store.is_shared() {
                return resume_in_cluster(conn, quoted).await;
            }
            let Some(session) = conn.ctx.hub.get(quoted) else {
                conn.error(
                    T,
                    ErrorCode::BadSession,
                    0,
                    "no live session has that number; sign in again",
                );
                return;
            };
            let Some((previous, owed)) = conn.ctx.hub.attach(&session, conn.out.clone()) else {
                conn.error(
                    T,
                    ErrorCode::BadSession,
                    0,
                    "the session has ended; sign in again",
                );
                return;
            };
            session.touch();
            if let Some(previous) = previous {
                previous.close(ErrorCode::SessionMoved, MOVED.into());
            }
            tracing::info!(user = session.user, name = %session.name, "session resumed");
            conn.reply(Packet::SessionCookie {
                user: session.user,
                session: session.id,
            });
            attached(conn, session, owed, None).await;
        }
    }
}

/// SESSION PRESERVE in a cluster: the session's row moves to this node
/// (compare-and-set); the node that had it, if alive, ends it there and
/// hands over the broadcasts it was owed; a dead node's is taken without
/// asking. The direct messages not acknowledged are read from the store.
async fn resume_in_cluster(conn: &mut Connection, quoted: u64) {
    const T: u16 = kind::SESSION_PRESERVE;
    let ctx = conn.ctx.clone();
    let gone = |conn: &Connection| {
        conn.error(
            T,
            ErrorCode::BadSession,
            0,
            "no live session has that number; sign in again",
        )
    };
    let timeout = ctx.config.session_timeout();
    let (user, taken) = match ctx.store.resume_session(quoted, ctx.node(), timeout).await {
        Ok(Some(moved)) => moved,
        Ok(None) => {
            // Ended, or replaced by a sign-in elsewhere: a copy left here
            // ends too.
            if let Some(stale) = ctx.hub.remove(quoted) {
                ctx.end_session(
                    &stale,
                    ErrorCode::BadSession,
                    "the session has ended".into(),
                );
            }
            return gone(conn);
        }
        Err(e) => return server_error(conn, T, 0, &e),
    };
    let mut handed = None;
    if let Some((node, old)) = taken.replaced {
        handed = ctx.bus.release(node, old).await;
        tracing::info!(
            user,
            session = quoted,
            from = node,
            "session moved to this node"
        );
    }
    if handed.is_none() && taken.from != ctx.node() {
        // The node that had it is dead, or did not answer: which
        // broadcasts it owed is unknown, so every broadcast kept since the
        // session began comes again (the client drops what it has shown).
        let limit = ctx.config.max_pending_broadcasts;
        match ctx.store.broadcasts_for_session(quoted, user, limit).await {
            Ok(kept) => {
                handed = Some(
                    kept.iter()
                        .filter_map(crate::outbox::kept_broadcast)
                        .collect(),
                )
            }
            Err(e) => tracing::warn!(error = %e, user, "cannot read the broadcasts kept"),
        }
    }
    let handed = handed.unwrap_or_default();
    let session = match ctx.hub.get(quoted) {
        Some(session) => session,
        None if taken.from == ctx.node() => {
            // It ended here; its row had not gone yet.
            if let Err(e) = ctx.store.session_ended(user, quoted, ctx.node()).await {
                tracing::warn!(error = %e, user, "the name's row was not freed");
            }
            return gone(conn);
        }
        None => {
            let name = match ctx.store.user_name(user).await {
                Ok(Some(name)) => name,
                Ok(None) => return gone(conn),
                Err(e) => return server_error(conn, T, 0, &e),
            };
            let rate = TokenBucket::new(ctx.config.message_rate, ctx.config.message_burst);
            let session = Arc::new(Session::new(quoted, user, name, rate, ctx.hub.new_owed()));
            match ctx.hub.insert(session.clone()) {
                Err(_) => {
                    crate::owners::give_back(&ctx, user).await;
                    return conn.error(
                        T,
                        ErrorCode::NameInUse,
                        0,
                        format!("{} is signed in on another connection", session.name),
                    );
                }
                Ok(Some(replaced)) => {
                    ctx.bus.listen(user).await;
                    ctx.end_session(&replaced, ErrorCode::SessionMoved, "signed in anew".into());
                }
                Ok(None) => ctx.bus.listen(user).await,
            }
            session
        }
    };
    session.epoch.store(taken.epoch, Ordering::Release);
    let Some((previous, owed)) = ctx.hub.attach(&session, conn.out.clone()) else {
        return gone(conn);
    };
    session.touch();
    if let Some(previous) = previous {
        previous.close(ErrorCode::SessionMoved, MOVED.into());
    }
    // What the old node owed first, then what arrived here since.
    let later: Vec<(u64, Bytes)> = owed
        .into_iter()
        .filter(|(n, _)| !all_has(&handed, *n))
        .collect();
    let mut all = handed;
    all.extend(later);
    tracing::info!(user, name = %session.name, "session resumed");
    conn.reply(Packet::SessionCookie {
        user,
        session: quoted,
    });
    attached(conn, session, all, None).await;
}

fn all_has(list: &[(u64, Bytes)], n: u64) -> bool {
    list.iter().any(|(m, _)| *m == n)
}

/// The connection has `session` now: the cookie goes out, then the
/// redelivery, beside the reader, unless there is nothing to redeliver.
/// `stored`: whether messages are stored for the user, if known already.
async fn attached(
    conn: &mut Connection,
    session: Arc<Session>,
    owed: Vec<(u64, Bytes)>,
    stored: Option<bool>,
) {
    conn.flush();
    conn.session = Some(session.clone());
    redelivery::begin(&conn.ctx, session, &conn.out, owed, stored).await;
}

fn sign_ins_too_fast(conn: &Connection, t: u16) {
    conn.error(
        t,
        ErrorCode::RateLimited,
        0,
        format!(
            "too many sign-ins from your address (more than {} a second); wait a moment",
            conn.ctx.config.sign_in_rate
        ),
    );
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
