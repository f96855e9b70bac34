//! `chat passwd`: set or change the signed-in user's password.

use proto::Event;

use crate::session::{Session, SessionError};

/// Changes the password from `old` (empty for a name with none) to `new`.
pub async fn run(s: &mut Session, old: &str, new: &str) -> Result<(), SessionError> {
    s.core.change_password(old, new)?;
    s.wait_for(|_, e| match e {
        Event::PasswordChanged { .. } => Some(Ok(())),
        // The server's own words: "the current password is wrong", not the
        // generic sentence for its code, which speaks of signing in.
        Event::PasswordChangeFailed { text, .. } => Some(Err(SessionError::Check(format!(
            "the password was not changed: {text}"
        )))),
        _ => None,
    })
    .await?;
    println!("password changed");
    Ok(())
}
