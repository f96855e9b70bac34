//! `chat upload PATH`.

use std::path::Path;

use bytes::Bytes;
use proto::Event;

use crate::session::{Session, SessionError};

/// Uploads a file and prints its number once the server has all of it.
pub async fn run(s: &mut Session, path: &Path) -> Result<u64, SessionError> {
    let data = std::fs::read(path).map_err(SessionError::local("read", path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    let bar = super::progress(data.len() as u64, &name);
    let id = s.core.upload(&name, Bytes::from(data))?;
    let file = s
        .wait_for(|_, e| match e {
            Event::TransferProgress { transfer, done, .. } if transfer == id => {
                bar.set_position(done);
                None
            }
            Event::TransferComplete { transfer, file } if transfer == id => Some(Ok(file)),
            Event::TransferFailed {
                transfer,
                code,
                text,
            } if transfer == id => Some(Err(SessionError::Server { code, text })),
            _ => None,
        })
        .await?;
    bar.finish_and_clear();
    println!("{file}");
    Ok(file)
}
