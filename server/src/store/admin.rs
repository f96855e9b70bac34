//! The operator's account commands (`chat-server account ...`), run from
//! another process on the data directory, while the server runs or not.
//!
//! Each command is one short transaction on a connection of its own; WAL
//! and a busy timeout let it run beside the server's. The server reads
//! accounts from the database at every sign-in, so a change takes effect
//! at the next one.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{unix_now, StoreError};

/// An account, as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name.
    pub name: String,
    /// Its user number.
    pub user: u64,
    /// When the password was set first, Unix seconds.
    pub created_at: i64,
    /// When it was last changed, Unix seconds.
    pub changed_at: i64,
}

/// The accounts of one data directory.
#[derive(Debug)]
pub struct Accounts {
    conn: Connection,
}

impl Accounts {
    /// Opens the database in `data_dir` (creating it, for accounts made
    /// before the server's first start).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Read(format!("cannot create {}: {e}", data_dir.display())))?;
        let conn = Connection::open(data_dir.join(super::DATABASE_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(super::sqlite::SCHEMA)?;
        Ok(Self { conn })
    }

    fn user(&self, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|id| id as u64))
    }

    /// Protects `name` (created if new) with `hash`; false if it already
    /// has a password.
    pub fn add(&mut self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO users (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, unix_now()],
        )?;
        let user: i64 =
            tx.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))?;
        let added = tx.execute(
            "INSERT INTO accounts (user, hash, created_at, changed_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (user) DO NOTHING",
            params![user, hash, unix_now()],
        )?;
        tx.commit()?;
        Ok(added == 1)
    }

    /// Sets a new password for `name`; false if it has no account.
    pub fn reset(&mut self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let Some(user) = self.user(name)? else {
            return Ok(false);
        };
        let n = self.conn.execute(
            "UPDATE accounts SET hash = ?2, changed_at = ?3 WHERE user = ?1",
            params![user as i64, hash, unix_now()],
        )?;
        Ok(n == 1)
    }

    /// Removes `name`'s password: the name is unprotected again (its user
    /// number, mail and files stay). False if it had none.
    pub fn remove(&mut self, name: &str) -> Result<bool, StoreError> {
        let Some(user) = self.user(name)? else {
            return Ok(false);
        };
        let n = self
            .conn
            .execute("DELETE FROM accounts WHERE user = ?1", [user as i64])?;
        Ok(n == 1)
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT users.name, users.id, accounts.created_at, accounts.changed_at
             FROM accounts JOIN users ON users.id = accounts.user ORDER BY users.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Listed {
                name: r.get(0)?,
                user: r.get::<_, i64>(1)? as u64,
                created_at: r.get(2)?,
                changed_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
