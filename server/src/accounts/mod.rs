//! Password-protected names: the mode the server runs in, password
//! hashing, and the slowing of guesses. The accounts themselves live in
//! the store.

pub(crate) mod guesses;
pub mod hasher;

use std::net::IpAddr;

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
    /// Addresses not counted for guesses (a gateway on the same machine
    /// speaks for every browser behind it).
    exempt: Vec<ipnet::IpNet>,
}

impl Accounts {
    pub(crate) fn new(
        mode: AccountMode,
        hasher: Hasher,
        guesses: Guesses,
        exempt: Vec<ipnet::IpNet>,
    ) -> Self {
        Self {
            mode,
            hasher,
            guesses,
            exempt,
        }
    }

    /// The address guesses are counted under, `None` when it is exempt.
    pub(crate) fn counted(&self, ip: IpAddr) -> Option<IpAddr> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (!self.exempt.iter().any(|n| n.contains(&ip))).then_some(ip)
    }
}
