//! Slowing password guessing: failed attempts are counted per name and
//! per client address, and past a few free ones each further attempt must
//! wait twice as long as the last, up to a ceiling.
//!
//! The ceiling is what the real owner of a name can be kept waiting by
//! someone guessing at it (30 s by default); attempts refused for waiting
//! are not counted, so guessing faster buys nothing. A success clears the
//! name's count. Entries idle for an hour are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an entry is kept after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The table is swept of forgotten entries when it grows past this.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Name(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// The settings of [`Guesses`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuessLimits {
    /// Failures a name may have before attempts must wait.
    pub(crate) free_per_name: u32,
    /// Failures an address may have before attempts must wait.
    pub(crate) free_per_address: u32,
    /// The longest wait.
    pub(crate) max_delay: Duration,
}

/// Failed attempts per name and per address.
#[derive(Debug)]
pub(crate) struct Guesses {
    limits: GuessLimits,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Guesses {
    pub(crate) fn new(limits: GuessLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn delay(&self, failures: u32, free: u32) -> Duration {
        if failures < free {
            return Duration::ZERO;
        }
        let doublings = (failures - free).min(30);
        Duration::from_secs(1u64 << doublings).min(self.limits.max_delay)
    }

    fn wait(&self, entries: &HashMap<Key, Entry>, key: &Key, free: u32, now: Instant) -> Duration {
        entries.get(key).map_or(Duration::ZERO, |e| {
            (e.last + self.delay(e.failures, free)).saturating_duration_since(now)
        })
    }

    /// How long an attempt on `name` from `address` must wait; zero when it
    /// may go ahead. `address` is `None` for exempt addresses. An attempt
    /// let through past the free ones takes the slot: attempts made at the
    /// same moment, on other connections, must wait as if it had failed.
    pub(crate) fn check(&self, name: &str, address: Option<IpAddr>) -> Duration {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let by_name = self.wait(
            &entries,
            &Key::Name(name.to_owned()),
            self.limits.free_per_name,
            now,
        );
        let by_address = address.map_or(Duration::ZERO, |a| {
            self.wait(
                &entries,
                &Key::Address(a),
                self.limits.free_per_address,
                now,
            )
        });
        let wait = by_name.max(by_address);
        if wait.is_zero() {
            let limits = self.limits;
            let mut take = |key: Key, free: u32| {
                if let Some(e) = entries.get_mut(&key) {
                    if e.failures >= free {
                        e.last = now;
                    }
                }
            };
            take(Key::Name(name.to_owned()), limits.free_per_name);
            if let Some(a) = address {
                take(Key::Address(a), limits.free_per_address);
            }
        }
        wait
    }

    /// Records a wrong password for `name` from `address`.
    pub(crate) fn failed(&self, name: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
        }
        let keys = std::iter::once(Key::Name(name.to_owned())).chain(address.map(Key::Address));
        for key in keys {
            let e = entries.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
            });
            if now.saturating_duration_since(e.last) >= FORGET_AFTER {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
        }
    }

    /// The right password was given for `name`: its count starts again.
    pub(crate) fn succeeded(&self, name: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&Key::Name(name.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guesses() -> Guesses {
        Guesses::new(GuessLimits {
            free_per_name: 3,
            free_per_address: 5,
            max_delay: Duration::from_secs(30),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn waits_double_after_the_free_failures_up_to_the_ceiling() {
        let g = guesses();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(g.check("bob", Some(ip)), Duration::ZERO);
            g.failed("bob", Some(ip));
        }
        assert_eq!(g.check("bob", Some(ip)), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(g.check("bob", Some(ip)), Duration::ZERO);
        // That attempt took the slot: another at the same moment waits.
        assert_eq!(g.check("bob", Some(ip)), Duration::from_secs(1));
        g.failed("bob", Some(ip));
        assert_eq!(g.check("bob", None), Duration::from_secs(2));
        for _ in 0..10 {
            g.failed("bob", None);
        }
        assert_eq!(g.check("bob", None), Duration::from_secs(30));
        // Another name from the same address: the address has 4 failures
        // of its 5 free ones.
        assert_eq!(g.check("carol", Some(ip)), Duration::ZERO);
        // The owner waits at most the ceiling, then succeeds and starts over.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(g.check("bob", None), Duration::ZERO);
        g.succeeded("bob");
        g.failed("bob", None);
        assert_eq!(g.check("bob", None), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_guessing_many_names_is_slowed() {
        let g = guesses();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..5 {
            g.failed(&format!("user{i}"), Some(ip));
        }
        assert_eq!(g.check("someone-else", Some(ip)), Duration::from_secs(1));
        assert_eq!(g.check("someone-else", None), Duration::ZERO);
    }
}
