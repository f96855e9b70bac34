//! `chat users`: who is online.

use crate::session::{Session, SessionError};

/// Prints `NUMBER<TAB>NAME` per online user.
pub async fn run(s: &mut Session) -> Result<(), SessionError> {
    let me = s.core.user();
    for (user, name) in s.online_users().await? {
        let you = if Some(user) == me { "\t(you)" } else { "" };
        println!("{user}\t{name}{you}");
    }
    Ok(())
}
