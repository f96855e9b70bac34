//! `chat download FILE [PATH]`.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use proto::{ErrorCode, Event};

use crate::session::{Session, SessionError};

/// The file name to save under when no path is given: the server's name,
/// reduced to its last component so it cannot point elsewhere.
fn safe_name(name: &str, file: u64) -> PathBuf {
    Path::new(name)
        .file_name()
        .filter(|n| !n.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("file-{file}")))
}

/// Downloads a file to `path` (default: its name in the current directory).
pub async fn run(s: &mut Session, file: u64, path: Option<&Path>) -> Result<PathBuf, SessionError> {
    let id = s.core.download(file);
    let (size, name) = s
        .wait_for(|_, e| match e {
            Event::FileInfo {
                file: f,
                size,
                name,
            } if f == file => Some(Ok((size, name))),
            Event::TransferFailed {
                transfer,
                code,
                text,
            } if transfer == id => Some(Err(SessionError::Server { code, text })),
            _ => None,
        })
        .await?;
    let target = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| safe_name(&name, file));
    let mut out = std::fs::File::create(&target).map_err(SessionError::Io)?;
    let bar = super::progress(u64::from(size), &name);
    let mut write_error = None;
    s.wait_for(|_, e| match e {
        Event::DownloadData {
            transfer,
            offset,
            data,
        } if transfer == id => {
            let written = out
                .seek(SeekFrom::Start(offset))
                .and_then(|_| out.write_all(&data));
            if let Err(err) = written {
                write_error = Some(err);
                return Some(Err(SessionError::Server {
                    code: ErrorCode::Other(0),
                    text: format!("cannot write {}", target.display()),
                }));
            }
            bar.set_position(offset + data.len() as u64);
            None
        }
        Event::TransferComplete { transfer, .. } if transfer == id => Some(Ok(())),
        Event::TransferFailed {
            transfer,
            code,
            text,
        } if transfer == id => Some(Err(SessionError::Server { code, text })),
        _ => None,
    })
    .await?;
    if let Some(e) = write_error {
        return Err(SessionError::Io(e));
    }
    out.set_len(u64::from(size)).map_err(SessionError::Io)?;
    out.sync_all().map_err(SessionError::Io)?;
    bar.finish_and_clear();
    println!("{}", target.display());
    Ok(target)
}
