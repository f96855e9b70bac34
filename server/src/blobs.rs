//! File bodies on disk: `files/<number>` when complete, `files/<number>.part`
//! while uploading. Only file numbers ever become part of a path; the name a
//! client gives is a label in the database.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The directory of file bodies, under the data directory.
pub(crate) const FILES_DIR: &str = "files";

/// The directory of file bodies.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Opens (creating) `data_dir/files` and removes the bodies of uploads
    /// that never finished.
    pub(crate) fn open(data_dir: &Path, incomplete: &[u64]) -> io::Result<Self> {
        let dir = data_dir.join(FILES_DIR);
        fs::create_dir_all(&dir)?;
        let blobs = Self { dir };
        for entry in fs::read_dir(&blobs.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "part") {
                fs::remove_file(&path)?;
            }
        }
        for file in incomplete {
            let _ = fs::remove_file(blobs.complete_path(*file));
        }
        Ok(blobs)
    }

    /// Opens (creating) a directory of file bodies that other servers on
    /// the same PostgreSQL database share. Nothing is removed: a `.part`
    /// file may be another live server's upload. Cleaning up after servers
    /// that died is left to a janitor that knows which are alive (not
    /// written yet).
    pub(crate) fn open_shared(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn part_path(&self, file: u64) -> PathBuf {
        self.dir.join(format!("{file}.part"))
    }

    fn complete_path(&self, file: u64) -> PathBuf {
        self.dir.join(file.to_string())
    }

    /// Creates the temporary body of an upload, `size` bytes long.
    pub(crate) fn create_part(&self, file: u64, size: u32) -> io::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.part_path(file))?;
        f.set_len(u64::from(size))?;
        Ok(f)
    }

    /// Syncs the body, renames it into place and syncs the directory, so a
    /// crash leaves either no file or the whole file.
    pub(crate) fn commit(&self, file: u64, part: &File) -> io::Result<()> {
        part.sync_all()?;
        fs::rename(self.part_path(file), self.complete_path(file))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Removes the temporary body of an upload that will not finish.
    pub(crate) fn discard(&self, file: u64) {
        let _ = fs::remove_file(self.part_path(file));
    }

    /// Opens a complete body for reading.
    pub(crate) fn open_complete(&self, file: u64) -> io::Result<File> {
        File::open(self.complete_path(file))
    }
}
