//! USERS REQUEST and USER DATA REQUEST.

use proto::{kind, ErrorCode, Packet};

use crate::connection::Connection;

/// The format's list length is 16 bits.
const MAX_LISTED: usize = u16::MAX as usize;

/// USERS REQUEST: the users online now, on any node of a cluster (from
/// the names' rows of live nodes), or in this server alone.
pub(super) async fn list(conn: &Connection) {
    let mut users = match conn.ctx.store.online_users(MAX_LISTED).await {
        Ok(Some(users)) => users,
        Ok(None) => conn.ctx.hub.online_users(),
        Err(e) => return super::session::server_error(conn, kind::USERS_REQUEST, 0, &e),
    };
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
