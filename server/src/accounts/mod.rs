//! Password-protected names: the mode the server runs in, password
//! hashing, and the slowing of guesses. The accounts themselves live in
//! the store.

pub(crate) mod guesses;
pub mod hasher;

use clap::ValueEnum;

use guesses::Guesses;
use hasher::Hasher;

/// Whether names may, or must, be protected by a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccountMode {
    /// Names may be claimed with a password; unclaimed names work without
    /// one, as in the seed protocol.
    Open,
    /// Every sign-in needs a password; only accounts the operator made
    /// may sign in.
    Required,
    /// No accounts: ACCOUNT SIGN IN is refused and every name works
    /// without a password.
    Off,
}

/// The server's account machinery.
#[derive(Debug)]
pub(crate) struct Accounts {
    pub(crate) mode: AccountMode,
    pub(crate) hasher: Hasher,
    pub(crate) guesses: Guesses,
}

impl Accounts {
    pub(crate) fn new(mode: AccountMode, hasher: Hasher, guesses: Guesses) -> Self {
        Self {
            mode,
            hasher,
            guesses,
        }
    }
}
