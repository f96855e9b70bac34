//! Packet handlers, one file per concept. [`handle`] checks the session
//! and dispatches; each handler parses nothing (the decoder did), applies
//! the request to the state, and answers.

mod account;
mod files;
mod messages;

pub(crate) use messages::Pipeline;
mod session;
mod users;

use proto::{ErrorCode, Packet};

use crate::connection::Connection;

/// The number an ERROR about `packet` names (see docs/PROTOCOL.md): the
/// message for 9 and 11, the file for 15 and 21, the user for 7, the
/// transaction for 17 and 25, 0 otherwise.
fn subject_of(packet: &Packet) -> u64 {
    use Packet::*;
    match packet {
        MessageRequest { message, .. } | BroadcastRequest { message, .. } => *message,
        FileDownloadRequest { file, .. } | FileDataRequest { file, .. } => *file,
        UserDataRequest { user, .. } => *user,
        DownloadChunkRequest { transaction, .. } | UploadChunkRequest { transaction, .. } => {
            *transaction
        }
        _ => 0,
    }
}

/// Handles one packet from the client.
pub(crate) async fn handle(conn: &mut Connection, packet: Packet) {
    // Packets only servers send were refused by the decoder.
    let t = packet.kind();
    match packet {
        Packet::SessionRequest { name } => return session::sign_in(conn, name).await,
        Packet::SessionPreserve { session } => return session::preserve(conn, session).await,
        Packet::AccountSignIn { name, password } => {
            return account::sign_in(conn, name, password).await
        }
        _ => {}
    }
    let Some(session) = conn.session.clone() else {
        conn.error(
            t,
            ErrorCode::BadSession,
            subject_of(&packet),
            "sign in first: this connection has no session",
        );
        return;
    };
    if let Some(quoted) = packet.session() {
        if quoted != session.id {
            conn.error(
                t,
                ErrorCode::BadSession,
                subject_of(&packet),
                "that is not this connection's session",
            );
            return;
        }
    }
    session.touch();
    use Packet::*;
    match packet {
        UsersRequest { .. } => users::list(conn).await,
        UserDataRequest { user, .. } => users::data(conn, user).await,
        MessageRequest {
            to, message, body, ..
        } => messages::direct(conn, &session, to, message, body).await,
        BroadcastRequest { message, body, .. } => {
            messages::broadcast(conn, &session, message, body).await
        }
        IncomingMessageAck { message } => messages::ack(conn, &session, message).await,
        FilesRequest { .. } => files::list(conn).await,
        FileDataRequest { file, .. } => files::data(conn, file).await,
        FileUploadRequest { size, name, .. } => files::upload(conn, &session, size, name).await,
        UploadChunkRequest {
            transaction,
            chunk,
            data,
        } => files::upload_chunk(conn, &session, transaction, chunk, data).await,
        FileDownloadRequest { file, .. } => files::download(conn, &session, file).await,
        DownloadChunkRequest { transaction, chunk } => {
            files::download_chunk(conn, &session, transaction, chunk).await
        }
        PasswordChange { old, new, .. } => account::change_password(conn, &session, old, new).await,
        // Sign-in packets and server-only packets were handled above.
        _ => {}
    }
}
