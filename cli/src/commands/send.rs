//! `chat send USER TEXT` and `chat broadcast TEXT`.

use bytes::Bytes;
use proto::{ErrorCode, Event};

use crate::session::{Session, SessionError};

/// Resolves a user given as a number or as the name of an online user.
pub async fn resolve(s: &mut Session, user: &str) -> Result<u64, SessionError> {
    if let Ok(n) = user.parse::<u64>() {
        return Ok(n);
    }
    s.online_users()
        .await?
        .into_iter()
        .find(|(_, name)| name == user)
        .map(|(n, _)| n)
        .ok_or_else(|| SessionError::Server {
            code: ErrorCode::UnknownUser,
            text: format!(
                "nobody named {user} is online (give a user number to reach someone offline)"
            ),
        })
}

async fn wait_sent(s: &mut Session, number: u64) -> Result<(), SessionError> {
    s.wait_for(|_, e| match e {
        Event::MessageSent { message } if message == number => Some(Ok(())),
        Event::MessageFailed {
            message,
            code,
            text,
        } if message == number => Some(Err(SessionError::Server { code, text })),
        _ => None,
    })
    .await
}

/// Sends a direct message and waits until the server has stored it.
pub async fn direct(s: &mut Session, user: &str, text: &str) -> Result<(), SessionError> {
    let to = resolve(s, user).await?;
    let n = s
        .core
        .send_message(to, Bytes::copy_from_slice(text.as_bytes()))?;
    match wait_sent(s, n).await {
        Err(SessionError::Server {
            code: ErrorCode::MailboxFull,
            ..
        }) => Err(SessionError::MailboxFull(match user.parse::<u64>() {
            Ok(_) => format!("user {user}"),
            Err(_) => user.to_owned(),
        })),
        other => other,
    }
}

/// Broadcasts and waits until the server has accepted it.
pub async fn broadcast(s: &mut Session, text: &str) -> Result<(), SessionError> {
    let n = s.core.broadcast(Bytes::copy_from_slice(text.as_bytes()))?;
    wait_sent(s, n).await
}
