//! `chat files`: every shared file.

use proto::Event;

use crate::session::{Session, SessionError};

/// Prints `NUMBER<TAB>SIZE<TAB>NAME` per file.
pub async fn run(s: &mut Session) -> Result<(), SessionError> {
    s.core.request_files()?;
    let files = s
        .wait_for(|_, e| match e {
            Event::Files(f) => Some(Ok(f)),
            _ => None,
        })
        .await?;
    for &f in &files {
        s.core.request_file(f)?;
    }
    let mut rows = Vec::new();
    while rows.len() < files.len() {
        let row = s
            .wait_for(|_, e| match e {
                Event::FileInfo { file, size, name } => Some(Ok((file, size, name))),
                Event::ServerError { code, text, .. } => {
                    Some(Err(SessionError::Server { code, text }))
                }
                _ => None,
            })
            .await?;
        rows.push(row);
    }
    rows.sort();
    for (file, size, name) in rows {
        println!("{file}\t{size}\t{name}");
    }
    Ok(())
}
