//! USERS REQUEST and USER DATA REQUEST.

use proto::{kind, ErrorCode, Packet};

use crate::connection::Connection;

/// The format's list length is 16 bits.
const MAX_LISTED: usize = u16::MAX as usize;

/// USERS REQUEST: the users online now.
pub(super) fn list(conn: &Connection) {
    let mut users = conn.ctx.hub.online_users();
    users.truncate(MAX_LISTED);
    conn.reply(Packet::UsersResponse { users });
}

/// USER DATA REQUEST: any known user's name.
pub(super) async fn data(conn: &Connection, user: u64) {
    match conn.ctx.store.user_name(user).await {
        Ok(Some(name)) => conn.reply(Packet::UserDataResponse { user, name }),
        Ok(None) => conn.error(
            kind::USER_DATA_REQUEST,
            ErrorCode::UnknownUser,
            user,
            format!("no user has number {user}"),
        ),
        Err(e) => super::session::server_error(conn, kind::USER_DATA_REQUEST, user, &e),
    }
}
