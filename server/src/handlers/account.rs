//! ACCOUNT SIGN IN and PASSWORD CHANGE: names protected by a password.
//!
//! Passwords are checked on the blocking pool (see `accounts::hasher`),
//! never logged, and guesses are slowed per name and per address. A name
//! with no account and a wrong password get the same answer, in the same
//! time, where only accounts may sign in.

use proto::limits::validate_password;
use proto::{kind, ErrorCode, Packet, Password};

use crate::accounts::AccountMode;
use crate::connection::Connection;
use crate::hub::Session;

use super::session::{may_sign_in, open_session, server_error};

const WRONG: &str = "wrong name or password";

/// The address guesses from `conn` are counted under; `None` for exempt
/// addresses (a gateway on the same machine speaks for every browser
/// behind it).
fn counted(conn: &Connection) -> Option<std::net::IpAddr> {
    let ip = conn.peer.ip();
    (!conn.ctx.peers.is_exempt(ip)).then_some(ip)
}

/// Refuses an attempt that must wait; true when it was refused.
fn must_wait(conn: &Connection, t: u16, name: &str) -> bool {
    let ctx = &conn.ctx;
    let wait = ctx.accounts.guesses.check(name, counted(conn));
    if wait.is_zero() {
        return false;
    }
    conn.error(
        t,
        ErrorCode::RateLimited,
        0,
        format!(
            "too many wrong passwords for this name or from your address; try again in {} s",
            wait.as_secs().max(1)
        ),
    );
    true
}

/// ACCOUNT SIGN IN: signs in to a name's account, or claims the name.
pub(super) async fn sign_in(conn: &mut Connection, name: String, password: Password) {
    const T: u16 = kind::ACCOUNT_SIGN_IN;
    let ctx = conn.ctx.clone();
    if ctx.accounts.mode == AccountMode::Off {
        return conn.error(
            T,
            ErrorCode::UnexpectedPacket,
            0,
            "this server has no accounts; sign in with SESSION REQUEST",
        );
    }
    if !may_sign_in(conn, T, &name) {
        return;
    }
    if let Err(e) = validate_password(password.expose()) {
        return conn.error(T, ErrorCode::BadCredentials, 0, e.to_string());
    }
    if must_wait(conn, T, &name) {
        return;
    }
    let account = match ctx.store.account(&name).await {
        Ok(a) => a,
        Err(e) => return server_error(conn, T, 0, &e),
    };
    let user = match account {
        None if ctx.accounts.mode == AccountMode::Open => {
            let hash = match ctx.accounts.hasher.hash(password.expose().to_owned()).await {
                Ok(h) => h,
                Err(e) => return server_error(conn, T, 0, &e),
            };
            match ctx.store.claim(&name, hash).await {
                Ok(Some(user)) => {
                    tracing::info!(user, %name, "name claimed");
                    user
                }
                // Claimed by someone else a moment ago.
                Ok(None) => return conn.error(T, ErrorCode::BadCredentials, 0, WRONG),
                Err(e) => return server_error(conn, T, 0, &e),
            }
        }
        account => {
            let (user, hash) = match account {
                Some(a) => (Some(a.user), Some(a.hash)),
                None => (None, None),
            };
            let hasher = &ctx.accounts.hasher;
            match hasher.verify(password.expose().to_owned(), hash).await {
                Ok(true) => {
                    ctx.accounts.guesses.succeeded(&name);
                    match user {
                        Some(user) => user,
                        None => return conn.error(T, ErrorCode::BadCredentials, 0, WRONG),
                    }
                }
                Ok(false) => {
                    let ip = counted(conn);
                    ctx.accounts.guesses.failed(&name, ip);
                    tracing::info!(%name, "wrong password");
                    return conn.error(T, ErrorCode::BadCredentials, 0, WRONG);
                }
                Err(e) => return server_error(conn, T, 0, &e),
            }
        }
    };
    open_session(conn, T, name, user).await;
}

/// PASSWORD CHANGE: sets a new password for the signed-in user, given the
/// current one (or, for a name with none yet, an empty one: the name is
/// claimed).
pub(super) async fn change_password(
    conn: &Connection,
    session: &Session,
    old: Password,
    new: Password,
) {
    const T: u16 = kind::PASSWORD_CHANGE;
    let ctx = conn.ctx.clone();
    if ctx.accounts.mode == AccountMode::Off {
        return conn.error(
            T,
            ErrorCode::UnexpectedPacket,
            0,
            "this server has no accounts",
        );
    }
    if let Err(e) = validate_password(new.expose()) {
        return conn.error(T, ErrorCode::BadCredentials, 0, e.to_string());
    }
    if must_wait(conn, T, &session.name) {
        return;
    }
    let current = match ctx.store.account_of(session.user).await {
        Ok(c) => c,
        Err(e) => return server_error(conn, T, 0, &e),
    };
    let hasher = &ctx.accounts.hasher;
    match current {
        Some(hash) => match hasher.verify(old.expose().to_owned(), Some(hash)).await {
            Ok(true) => {}
            Ok(false) => {
                let ip = counted(conn);
                ctx.accounts.guesses.failed(&session.name, ip);
                return conn.error(
                    T,
                    ErrorCode::BadCredentials,
                    0,
                    "the current password is wrong",
                );
            }
            Err(e) => return server_error(conn, T, 0, &e),
        },
        None if !old.is_empty() => {
            return conn.error(
                T,
                ErrorCode::BadCredentials,
                0,
                "this name has no password yet; leave the current password empty",
            )
        }
        None => {}
    }
    let hash = match hasher.hash(new.expose().to_owned()).await {
        Ok(h) => h,
        Err(e) => return server_error(conn, T, 0, &e),
    };
    if let Err(e) = ctx.store.set_password(session.user, hash).await {
        return server_error(conn, T, 0, &e);
    }
    ctx.accounts.guesses.succeeded(&session.name);
    tracing::info!(user = session.user, name = %session.name, "password changed");
    conn.reply(Packet::PasswordChanged { user: session.user });
}
