//! Backups of a data directory while the server runs, and their restore
//! (`chat-server backup` / `chat-server restore`).
//!
//! A backup is one tar archive:
//!
//! - `chat-backup-format`, first, holding [`FORMAT`]: what makes the
//!   archive recognisable as one of ours before anything is written;
//! - `chat.sqlite3`: a snapshot of the database taken with SQLite's online
//!   backup API, in one read transaction, so it is one consistent state;
//! - `files/` and `files/<number>`: the body of every file that the
//!   snapshot lists as complete, and nothing else.
//!
//! The snapshot is what the backup promises: every user, queued message
//! and complete file committed before it began is in it. Bodies can be
//! copied after the snapshot because a complete body is never changed or
//! removed: it is renamed into place before its row says complete, and an
//! upload in progress (`files/<number>.part`, its row not complete) is
//! neither listed nor copied.
//!
//! Both ends write to a temporary name, fsync, and rename, so a failed
//! backup leaves no archive and a failed restore leaves the directory as
//! empty as it found it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

use crate::blobs::FILES_DIR;
use crate::store::DATABASE_FILE;

/// The first entry's name.
const FORMAT_ENTRY: &str = "chat-backup-format";

/// The first entry's content: the layout version. A later layout gets a
/// new number, and a restore of an unknown one is refused, not guessed at.
pub const FORMAT: &[u8] = b"chat-backup 1\n";

/// How long the backup's connection waits for a lock on the live
/// database before one attempt gives up (SQLite's busy handler).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at the one-step copy before the backup fails. In WAL mode a
/// reader is refused only while the log is being recovered or reset, which
/// is brief; each attempt already waits up to [`BUSY_TIMEOUT`].
const COPY_ATTEMPTS: u32 = 5;

/// The pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What the archive and every restored file are created with: readable by
/// their owner only, since they hold every queued message and password
/// hash.
const OWNER_ONLY: u32 = 0o600;

/// The largest file body a restore accepts: the protocol's 4 GiB - 1.
const MAX_BODY: u64 = u32::MAX as u64;

/// A backup or restore that failed, and why.
#[derive(Debug, Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// SQLite failed on the live database or the snapshot.
    #[error("database {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The data directory has no database to back up.
    #[error("no chat database in {} (expected {DATABASE_FILE} there)", .0.display())]
    NoDatabase(PathBuf),
    /// The live database stayed locked through every attempt.
    #[error("the database stayed busy through {COPY_ATTEMPTS} attempts; try again")]
    Busy,
    /// A complete file's body is missing or not the size its row says.
    #[error("file {file}: its body is {found} bytes, its record says {expected}")]
    BodySize {
        /// The file number.
        file: u64,
        /// The size in the database.
        expected: u64,
        /// The size on disk (or in the archive).
        found: u64,
    },
    /// The restore target holds something already.
    #[error(
        "{} is not empty: restore only into a new or empty directory, \
         so a backup never mixes with or replaces live data", .0.display()
    )]
    NotEmpty(PathBuf),
    /// The archive does not start like a backup of this format.
    #[error("{} is not a chat backup: {why}", path.display())]
    NotABackup {
        /// The archive.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// An entry that a backup never holds: a path outside the layout
    /// (absolute, `..`, unknown names), a link or device, or a repeat.
    #[error("refused archive entry {entry:?}: {why}")]
    BadEntry {
        /// The entry's path as the archive gives it.
        entry: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The archive ended without something a backup always has.
    #[error("the archive is incomplete: {0}")]
    Incomplete(String),
    /// The snapshot, or the database from an archive, fails SQLite's check.
    #[error("the database fails SQLite's check: {0}")]
    Damaged(String),
}

/// What a backup or restore moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of the database snapshot.
    pub database_bytes: u64,
    /// Complete files.
    pub files: u64,
    /// Bytes of their bodies.
    pub file_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sql_err(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Syncs a directory, so that the names created or renamed in it survive
/// a crash.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates a directory closed to others (rwxr-x---), as the packaged
/// service's data directory is: it holds every message.
fn private_dir(dir: &Path, recursive: bool) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(recursive)
        .mode(0o750)
        .create(dir)
        .map_err(io_err(dir))
}

/// The directory a path is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes a consistent backup of `data_dir` to the archive `to`, while a
/// server may be using the directory. `to` appears only once complete and
/// synced (an existing file of that name is replaced then, atomically); it
/// is created readable by its owner only, since it holds every message and
/// password hash.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Summary, BackupError> {
    let db = data_dir.join(DATABASE_FILE);
    if !db.is_file() {
        return Err(BackupError::NoDatabase(data_dir.to_owned()));
    }
    let out_dir = parent_of(to);
    // Everything in progress lives in one directory beside the archive: on
    // the same file system, so the final rename is atomic, and removed
    // with all it holds if anything fails.
    let work = tempfile::Builder::new()
        .prefix(".chat-backup-")
        .tempdir_in(out_dir)
        .map_err(io_err(out_dir))?;
    let snapshot = work.path().join(DATABASE_FILE);
    snapshot_database(&db, &snapshot)?;
    let complete = complete_files(&snapshot)?;

    let partial = work.path().join("archive.tar");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(OWNER_ONLY)
        .open(&partial)
        .map_err(io_err(&partial))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let mut summary = Summary::default();
    append(
        &mut tar,
        FORMAT_ENTRY,
        FORMAT.len() as u64,
        FORMAT,
        &partial,
    )?;
    let mut snap = File::open(&snapshot).map_err(io_err(&snapshot))?;
    summary.database_bytes = snap.metadata().map_err(io_err(&snapshot))?.len();
    append(
        &mut tar,
        DATABASE_FILE,
        summary.database_bytes,
        &mut snap,
        &partial,
    )?;
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o750);
    dir.set_size(0);
    dir.set_mtime(mtime_now());
    tar.append_data(&mut dir, format!("{FILES_DIR}/"), io::empty())
        .map_err(io_err(&partial))?;
    let bodies = data_dir.join(FILES_DIR);
    for (number, size) in complete {
        let path = bodies.join(number.to_string());
        let mut body = File::open(&path).map_err(io_err(&path))?;
        let found = body.metadata().map_err(io_err(&path))?.len();
        if found != size {
            return Err(BackupError::BodySize {
                file: number,
                expected: size,
                found,
            });
        }
        let name = format!("{FILES_DIR}/{number}");
        append(&mut tar, &name, size, Exact::new(&mut body, size), &partial)?;
        summary.files += 1;
        summary.file_bytes += size;
    }
    let file = tar
        .into_inner()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(io_err(&partial))?;
    file.sync_all().map_err(io_err(&partial))?;
    drop(file);
    fs::rename(&partial, to).map_err(io_err(to))?;
    sync_dir(out_dir)?;
    Ok(summary)
}

/// Copies the live database to `snapshot` with SQLite's backup API, all
/// pages in ONE step. One step is one read transaction on the live
/// database: in WAL mode the server's writer goes on committing meanwhile,
/// and the copy is the state at the step's start. Copying in many small
/// steps would restart from the first page whenever another process
/// writes between two steps, which a busy server does continually, so it
/// might never finish. The cost is that checkpoints cannot move past the
/// snapshot until the step ends: the WAL grows by what is written during
/// the copy, and shrinks at the next checkpoint.
fn snapshot_database(db: &Path, snapshot: &Path) -> Result<(), BackupError> {
    // Read-write without CREATE, like the server's readers: a read-only
    // connection may map the WAL index read-only, which SQLite documents
    // as a slower path with caveats. query_only keeps it from writing.
    let live = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err(db))?;
    live.busy_timeout(BUSY_TIMEOUT).map_err(sql_err(db))?;
    live.pragma_update(None, "query_only", true)
        .map_err(sql_err(db))?;
    let mut copy = Connection::open(snapshot).map_err(sql_err(snapshot))?;
    {
        let step = Backup::new(&live, &mut copy).map_err(sql_err(snapshot))?;
        let mut attempts = 0;
        loop {
            match step.step(-1).map_err(sql_err(db))? {
                StepResult::Done => break,
                // More cannot follow a step of every page; treat it, and a
                // lock, as another attempt.
                _ if attempts + 1 < COPY_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(RETRY_PAUSE);
                }
                _ => return Err(BackupError::Busy),
            }
        }
    }
    // The copy has the live database's WAL mode; make it one self-contained
    // file (no -wal beside it) before it goes into the archive.
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(sql_err(snapshot))?;
    check_database(&copy, snapshot)?;
    copy.close().map_err(|(_, e)| sql_err(snapshot)(e))
}

/// SQLite's quick check: the pages and indexes are well formed.
fn check_database(conn: &Connection, path: &Path) -> Result<(), BackupError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sql_err(path))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(BackupError::Damaged(verdict))
    }
}

/// The complete files the database lists: (number, size), by number.
fn complete_files(db: &Path) -> Result<Vec<(u64, u64)>, BackupError> {
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err(db))?;
    let mut stmt = conn
        .prepare("SELECT id, size FROM files WHERE complete = 1 ORDER BY id")
        .map_err(sql_err(db))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sql_err(db))?;
    let mut files = Vec::new();
    for row in rows {
        let (id, size) = row.map_err(sql_err(db))?;
        let (Ok(id), Ok(size)) = (u64::try_from(id), u64::try_from(size)) else {
            return Err(BackupError::Damaged(format!(
                "file record {id} has a negative number or size"
            )));
        };
        files.push((id, size));
    }
    Ok(files)
}

/// Appends one regular entry of `size` bytes.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
    archive: &Path,
) -> Result<(), BackupError> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o640);
    header.set_size(size);
    header.set_mtime(mtime_now());
    tar.append_data(&mut header, name, data)
        .map_err(io_err(archive))
}

fn mtime_now() -> u64 {
    u64::try_from(crate::store::unix_now()).unwrap_or(0)
}

/// A reader that yields exactly `len` bytes of `inner`, and fails if
/// `inner` ends sooner: tar writes the size in the header before the data,
/// so a body that shrank while it was copied must fail the backup rather
/// than misalign the archive.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, len: u64) -> Self {
        Self { inner, left: len }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was copied",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What one archive entry is, once its path is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Database,
    FilesDir,
    Body(u64),
}

/// Checks an entry's path and type against the layout. Only plain names
/// are accepted, so nothing can point outside the target (`..`, absolute
/// paths, a `C:` prefix), and only regular files and the one directory,
/// so no link can redirect a later write.
fn classify(path: &Path, kind: tar::EntryType) -> Result<Entry, &'static str> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => names.push(n.to_str().ok_or("a name that is not UTF-8")?),
            Component::ParentDir => return Err("a path with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path"),
            Component::CurDir => return Err("a path with `.`"),
        }
    }
    let entry = match names.as_slice() {
        [DATABASE_FILE] => Entry::Database,
        [FILES_DIR] => Entry::FilesDir,
        [FILES_DIR, number] => {
            // Only the canonical decimal form, as the server names bodies.
            let n: u64 = number
                .parse()
                .map_err(|_| "a file name that is not a number")?;
            if n.to_string() != *number {
                return Err("a file number not in its plain form");
            }
            Entry::Body(n)
        }
        _ => return Err("a path that is not part of a backup"),
    };
    match (entry, kind.is_dir(), kind.is_file()) {
        (Entry::FilesDir, true, _) => Ok(entry),
        (Entry::Database | Entry::Body(_), _, true) => Ok(entry),
        _ => Err("an entry of the wrong type (links and devices are never in a backup)"),
    }
}

/// Removes what a failed restore wrote, so the directory is as it was:
/// empty, or absent if the restore created it.
struct Undo<'a> {
    dir: &'a Path,
    created_dir: bool,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.created_dir {
            let _ = fs::remove_dir_all(self.dir);
            return;
        }
        if let Ok(entries) = fs::read_dir(self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = match entry.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                    _ => fs::remove_file(&path),
                };
            }
        }
    }
}

/// Restores the archive `from` into `data_dir`, which must not exist or
/// be empty. Every entry is checked against the layout before anything is
/// written for it; every file is synced; the database is renamed into
/// place last, only once it passes SQLite's check and every complete file
/// it lists is there with its size. On failure the directory is left as
/// it was found.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Summary, BackupError> {
    let archive = File::open(from).map_err(io_err(from))?;
    let created_dir = match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(data_dir.to_owned()));
            }
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            private_dir(data_dir, true)?;
            true
        }
        Err(e) => return Err(io_err(data_dir)(e)),
    };
    let mut undo = Undo {
        dir: data_dir,
        created_dir,
        armed: true,
    };
    let summary = unpack(from, archive, data_dir)?;
    undo.armed = false;
    if created_dir {
        sync_dir(parent_of(data_dir))?;
    }
    Ok(summary)
}

/// The body of [`restore`], once the directory is known to be empty.
fn unpack(from: &Path, archive: File, data_dir: &Path) -> Result<Summary, BackupError> {
    let bodies_dir = data_dir.join(FILES_DIR);
    private_dir(&bodies_dir, false)?;
    // Written under another name: a database in place means a finished
    // restore, for the server and for anyone looking.
    let db_partial = data_dir.join(format!(".{DATABASE_FILE}.restoring"));
    let db = data_dir.join(DATABASE_FILE);

    let mut tar = tar::Archive::new(BufReader::new(archive));
    let mut entries = tar.entries().map_err(io_err(from))?;
    let not_a_backup = |why: String| BackupError::NotABackup {
        path: from.to_owned(),
        why,
    };
    match entries.next() {
        None => return Err(not_a_backup("it is empty".into())),
        Some(first) => {
            let mut first = first.map_err(|e| not_a_backup(e.to_string()))?;
            let path = first.path().map_err(io_err(from))?.into_owned();
            if path != Path::new(FORMAT_ENTRY) {
                return Err(not_a_backup(format!(
                    "it starts with {path:?}, not {FORMAT_ENTRY}"
                )));
            }
            let mut format = Vec::new();
            (&mut first)
                .take(FORMAT.len() as u64 + 1)
                .read_to_end(&mut format)
                .map_err(io_err(from))?;
            if format != FORMAT {
                return Err(not_a_backup(format!(
                    "format {:?}, this version reads {:?}",
                    String::from_utf8_lossy(&format).trim(),
                    String::from_utf8_lossy(FORMAT).trim()
                )));
            }
        }
    }

    let mut summary = Summary::default();
    let mut bodies = std::collections::BTreeMap::new();
    let (mut seen_db, mut seen_dir) = (false, false);
    for entry in entries {
        let mut entry = entry.map_err(io_err(from))?;
        let path = entry.path().map_err(io_err(from))?.into_owned();
        let bad = |why| BackupError::BadEntry {
            entry: path.display().to_string(),
            why,
        };
        let kind = classify(&path, entry.header().entry_type()).map_err(bad)?;
        let target = match kind {
            Entry::FilesDir if seen_dir => return Err(bad("it appears twice")),
            Entry::FilesDir => {
                seen_dir = true;
                continue;
            }
            Entry::Database if seen_db => return Err(bad("it appears twice")),
            Entry::Database => {
                seen_db = true;
                db_partial.clone()
            }
            Entry::Body(_) if entry.size() > MAX_BODY => {
                return Err(bad("a file larger than 4 GiB - 1, the protocol's limit"))
            }
            Entry::Body(n) => bodies_dir.join(n.to_string()),
        };
        // create_new: a repeated body fails here rather than replacing the
        // first, and nothing that exists is ever followed or overwritten.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(OWNER_ONLY)
            .open(&target)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => bad("it appears twice"),
                _ => io_err(&target)(e),
            })?;
        let expected = entry.size();
        let copied = io::copy(&mut entry, &mut out).map_err(io_err(from))?;
        if copied != expected {
            return Err(BackupError::Incomplete(format!(
                "{} ends after {copied} of its {expected} bytes",
                path.display()
            )));
        }
        out.sync_all().map_err(io_err(&target))?;
        match kind {
            Entry::Database => summary.database_bytes = copied,
            Entry::Body(n) => {
                bodies.insert(n, copied);
            }
            Entry::FilesDir => {}
        }
    }
    if !seen_db {
        return Err(BackupError::Incomplete(format!("no {DATABASE_FILE}")));
    }

    {
        let conn = Connection::open_with_flags(&db_partial, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql_err(&db_partial))?;
        check_database(&conn, &db_partial)?;
    }
    for (number, size) in complete_files(&db_partial)? {
        match bodies.remove(&number) {
            Some(found) if found == size => {
                summary.files += 1;
                summary.file_bytes += size;
            }
            Some(found) => {
                return Err(BackupError::BodySize {
                    file: number,
                    expected: size,
                    found,
                })
            }
            None => {
                return Err(BackupError::Incomplete(format!(
                    "no body for complete file {number}"
                )))
            }
        }
    }
    if let Some((&number, _)) = bodies.iter().next() {
        return Err(BackupError::BadEntry {
            entry: format!("{FILES_DIR}/{number}"),
            why: "a body the database does not list as a complete file",
        });
    }
    sync_dir(&bodies_dir)?;
    fs::rename(&db_partial, &db).map_err(io_err(&db))?;
    sync_dir(data_dir)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory with a database (made the way the operator's
    /// commands make one) and the given complete files.
    fn data_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::store::admin::Accounts::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        fs::create_dir(dir.path().join(FILES_DIR)).unwrap();
        for (name, body) in files {
            conn.execute(
                "INSERT INTO files (name, size, uploader, complete, created_at)
                 VALUES (?1, ?2, 1, 1, 0)",
                rusqlite::params![name, body.len() as i64],
            )
            .unwrap();
            let id = conn.last_insert_rowid();
            fs::write(dir.path().join(FILES_DIR).join(id.to_string()), body).unwrap();
        }
        // An upload in progress: neither its row nor its body is restored
        // as a file.
        conn.execute(
            "INSERT INTO files (name, size, uploader, complete, created_at)
             VALUES ('partial', 100, 1, 0, 0)",
            [],
        )
        .unwrap();
        let id = conn.last_insert_rowid();
        fs::write(
            dir.path().join(FILES_DIR).join(format!("{id}.part")),
            [1; 10],
        )
        .unwrap();
        dir
    }

    /// An archive of the format marker followed by `entries`, each a raw
    /// header name (so paths the tar crate refuses to write can be made),
    /// a type and a body.
    fn archive(entries: &[(&[u8], tar::EntryType, &[u8])]) -> tempfile::NamedTempFile {
        let mut tar = tar::Builder::new(Vec::new());
        append(
            &mut tar,
            FORMAT_ENTRY,
            FORMAT.len() as u64,
            FORMAT,
            Path::new("t"),
        )
        .unwrap();
        for (name, kind, body) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            h.set_cksum();
            tar.append(&h, *body).unwrap();
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&tar.into_inner().unwrap()).unwrap();
        f
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_backup_restores_the_database_and_the_complete_files_only() {
        let src = data_dir(&[("a", b"first body"), ("b", b"")]);
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("chat.tar");
        let made = backup(src.path(), &file).unwrap();
        assert_eq!((made.files, made.file_bytes), (2, 10));
        assert_eq!(names(out.path()), vec!["chat.tar"], "no temporary left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let target = out.path().join("restored");
        let restored = restore(&file, &target).unwrap();
        assert_eq!(restored, made);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), 0o750);
        assert_eq!(mode(&target.join(DATABASE_FILE)), 0o600);
        assert_eq!(names(&target), vec![DATABASE_FILE, FILES_DIR]);
        assert_eq!(names(&target.join(FILES_DIR)), vec!["1", "2"]);
        assert_eq!(fs::read(target.join("files/1")).unwrap(), b"first body");
        let conn = Connection::open(target.join(DATABASE_FILE)).unwrap();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows, 3,
            "the unfinished upload's row is the server's to drop"
        );
    }

    /// Another connection in the middle of a write transaction neither
    /// blocks the backup (WAL: readers do not wait for writers) nor gets
    /// its uncommitted rows into it.
    #[test]
    fn a_backup_beside_an_open_write_transaction_holds_the_committed_state() {
        let src = data_dir(&[("a", b"x")]);
        let writer = Connection::open(src.path().join(DATABASE_FILE)).unwrap();
        writer
            .execute(
                "INSERT INTO users (name, created_at) VALUES ('committed', 0)",
                [],
            )
            .unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .execute(
                "INSERT INTO users (name, created_at) VALUES ('uncommitted', 0)",
                [],
            )
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.tar");
        backup(src.path(), &file).unwrap();
        writer.execute_batch("COMMIT").unwrap();

        let target = out.path().join("r");
        restore(&file, &target).unwrap();
        let conn = Connection::open(target.join(DATABASE_FILE)).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM users ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, vec!["committed"]);
    }

    #[test]
    fn restore_refuses_a_non_empty_directory_and_leaves_it_alone() {
        let src = data_dir(&[("a", b"x")]);
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.tar");
        backup(src.path(), &file).unwrap();
        let target = out.path().join("busy");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("notes.txt"), b"mine").unwrap();
        let err = restore(&file, &target).unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(names(&target), vec!["notes.txt"]);
        assert_eq!(fs::read(target.join("notes.txt")).unwrap(), b"mine");
    }

    #[test]
    fn restore_into_an_existing_empty_directory_works() {
        let src = data_dir(&[("a", b"x")]);
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.tar");
        backup(src.path(), &file).unwrap();
        let target = out.path().join("empty");
        fs::create_dir(&target).unwrap();
        assert_eq!(restore(&file, &target).unwrap().files, 1);
    }

    #[test]
    fn restore_refuses_a_traversal_entry_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("data");
        for (name, why) in [
            (&b"../escaped"[..], "`..`"),
            (b"files/../../escaped", "`..`"),
            (b"/tmp/chat-backup-test-escaped", "absolute"),
        ] {
            let tar = archive(&[(name, tar::EntryType::Regular, b"evil")]);
            let err = restore(tar.path(), &target).unwrap_err();
            assert!(
                matches!(err, BackupError::BadEntry { .. }) && err.to_string().contains(why),
                "{err}"
            );
            assert!(!target.exists(), "the directory it made is gone again");
        }
        assert!(!root.path().join("escaped").exists());
        assert!(!Path::new("/tmp/chat-backup-test-escaped").exists());
    }

    #[test]
    fn restore_refuses_entries_outside_the_layout() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("data");
        fs::create_dir(&target).unwrap();
        let cases: [(&[u8], tar::EntryType); 6] = [
            (b"files/notes.txt", tar::EntryType::Regular),
            (b"files/007", tar::EntryType::Regular),
            (b"files/1.part", tar::EntryType::Regular),
            (b"chat.sqlite3-wal", tar::EntryType::Regular),
            (b"files/1", tar::EntryType::Symlink),
            (b"chat.sqlite3", tar::EntryType::Directory),
        ];
        for (name, kind) in cases {
            let tar = archive(&[(name, kind, b"")]);
            let err = restore(tar.path(), &target).unwrap_err();
            assert!(matches!(err, BackupError::BadEntry { .. }), "{err}");
            assert!(names(&target).is_empty(), "the empty directory stays empty");
        }
    }

    #[test]
    fn restore_refuses_an_archive_without_the_format_marker() {
        let root = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, DATABASE_FILE, 3, &b"abc"[..], Path::new("t")).unwrap();
        let file = root.path().join("other.tar");
        fs::write(&file, tar.into_inner().unwrap()).unwrap();
        let err = restore(&file, &root.path().join("data")).unwrap_err();
        assert!(matches!(err, BackupError::NotABackup { .. }), "{err}");
        assert!(!root.path().join("data").exists());
    }

    #[test]
    fn restore_refuses_an_archive_missing_a_listed_body() {
        let src = data_dir(&[("a", b"x")]);
        let snap = tempfile::tempdir().unwrap();
        let db = snap.path().join("db");
        snapshot_database(&src.path().join(DATABASE_FILE), &db).unwrap();
        let bytes = fs::read(&db).unwrap();
        let tar = archive(&[(b"chat.sqlite3", tar::EntryType::Regular, &bytes)]);
        let target = snap.path().join("data");
        let err = restore(tar.path(), &target).unwrap_err();
        assert!(
            err.to_string().contains("no body for complete file 1"),
            "{err}"
        );
        assert!(!target.exists());
    }

    #[test]
    fn a_failed_backup_leaves_no_archive() {
        let src = data_dir(&[("a", b"x")]);
        fs::remove_file(src.path().join("files/1")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.tar");
        let err = backup(src.path(), &file).unwrap_err();
        assert!(err.to_string().contains("files/1"), "{err}");
        assert!(names(out.path()).is_empty(), "no archive and no temporary");

        let err = backup(out.path(), &file).unwrap_err();
        assert!(matches!(err, BackupError::NoDatabase(_)), "{err}");
    }
}
