//! `chat download FILE [PATH] [--force]`.
//!
//! The file is saved under PATH, in the directory PATH when it is one, or
//! in the current directory; without PATH, under the uploader's name
//! reduced to its last component, so a name such as `../../.bashrc` cannot
//! point outside that directory. An existing file is never overwritten
//! without `--force`; with it, the download goes to a temporary file beside
//! the target and replaces it only once complete, so a failed download
//! leaves the old file as it was. A failed download removes what it wrote.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use proto::Event;

use crate::session::{Session, SessionError};

/// The name to save under in a directory: the uploader's name reduced to
/// its last component, or `file-N` when that leaves nothing usable
/// (empty, `.`, `..`).
fn safe_name(name: &str, file: u64) -> PathBuf {
    Path::new(name)
        .file_name()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("file-{file}")))
}

/// Where to save: PATH; DIR/<name> when PATH is a directory; else
/// <name> in the current directory.
fn target_of(path: Option<&Path>, name: &str, file: u64) -> PathBuf {
    match path {
        Some(dir) if dir.is_dir() => dir.join(safe_name(name, file)),
        Some(path) => path.to_path_buf(),
        None => safe_name(name, file),
    }
}

/// The file being written, and what to do with it at the end.
struct Output {
    file: File,
    /// Where the bytes go now.
    writing: PathBuf,
    /// Where they end up (equal to `writing` without --force).
    target: PathBuf,
    /// False once the download is in place: dropping removes a partial file.
    partial: bool,
}

impl Output {
    /// Creates the output without ever replacing an existing file; with
    /// `force`, a temporary file beside `target` replaces it at the end.
    fn create(target: PathBuf, force: bool) -> Result<Self, SessionError> {
        let writing = if force {
            let mut name = target.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".{}.part", std::process::id()));
            target.with_file_name(name)
        } else {
            target.clone()
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&writing)
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists if !force => SessionError::Exists(target.clone()),
                _ => SessionError::local("create", &writing)(e),
            })?;
        Ok(Self {
            file,
            writing,
            target,
            partial: true,
        })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SessionError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(SessionError::local("seek in", &self.writing))?;
        self.file
            .write_all(data)
            .map_err(SessionError::local("write", &self.writing))
    }

    fn finish(mut self, size: u64) -> Result<PathBuf, SessionError> {
        self.file
            .set_len(size)
            .map_err(SessionError::local("set the length of", &self.writing))?;
        self.file
            .sync_all()
            .map_err(SessionError::local("sync", &self.writing))?;
        if self.writing != self.target {
            std::fs::rename(&self.writing, &self.target)
                .map_err(SessionError::local("replace", &self.target))?;
        }
        self.partial = false;
        Ok(self.target.clone())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.partial {
            let _ = std::fs::remove_file(&self.writing);
        }
    }
}

/// Downloads a file to `path` (see the module's documentation for where).
pub async fn run(
    s: &mut Session,
    file: u64,
    path: Option<&Path>,
    force: bool,
) -> Result<PathBuf, SessionError> {
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
    let mut out = Output::create(target_of(path, &name, file), force)?;
    let bar = super::progress(u64::from(size), &name);
    s.wait_for(|_, e| match e {
        Event::DownloadData {
            transfer,
            offset,
            data,
        } if transfer == id => {
            if let Err(e) = out.write_at(offset, &data) {
                return Some(Err(e));
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
    let target = out.finish(u64::from(size))?;
    bar.finish_and_clear();
    println!("{}", target.display());
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_uploader_stay_in_the_directory() {
        assert_eq!(safe_name("../../.bashrc", 1), PathBuf::from(".bashrc"));
        assert_eq!(safe_name("/etc/passwd", 1), PathBuf::from("passwd"));
        assert_eq!(safe_name("..", 7), PathBuf::from("file-7"));
        assert_eq!(safe_name(".", 7), PathBuf::from("file-7"));
        assert_eq!(safe_name("", 7), PathBuf::from("file-7"));
        assert_eq!(safe_name("a/..", 7), PathBuf::from("file-7"));
        assert_eq!(safe_name("notes.txt", 7), PathBuf::from("notes.txt"));
    }
}
