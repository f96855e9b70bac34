//! Limits per client address: connections open at once, and the rate of
//! sign-ins. The chat server and the gateway both use this.
//!
//! IPv6 clients are counted per /64, since one host is usually given a
//! whole /64 and could otherwise take a fresh address per connection.
//! Addresses in the exempt list (by default loopback, where a gateway on
//! the same machine connects from) are not limited.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use tokio::time::Instant;

/// The limits applied to each address.
#[derive(Debug, Clone)]
pub struct PeerLimitConfig {
    /// Connections one address may have open at once (0: no limit).
    pub max_connections: usize,
    /// Sign-ins per second one address may make, on average (0: no limit).
    pub sign_in_rate: f64,
    /// Sign-ins one address may make at once above the rate.
    pub sign_in_burst: f64,
    /// Addresses that are not limited.
    pub exempt: Vec<IpNet>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections {
    /// The limit that was reached.
    pub limit: usize,
}

#[derive(Debug)]
struct Entry {
    connections: usize,
    tokens: f64,
    last: Instant,
}

/// Connection counts and sign-in buckets of the addresses seen recently.
#[derive(Debug)]
pub struct PeerLimits {
    config: PeerLimitConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// The table is swept of idle entries when it grows past this.
    sweep_at: Mutex<usize>,
}

/// One open connection of an address; dropping it frees the slot.
#[derive(Debug)]
pub struct PeerPermit {
    limits: Option<Arc<PeerLimits>>,
    key: IpAddr,
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        if let Some(limits) = self.limits.take() {
            let mut entries = limits.lock();
            if let Some(e) = entries.get_mut(&self.key) {
                e.connections = e.connections.saturating_sub(1);
            }
        }
    }
}

/// The address limits are counted under: IPv6 by its /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl PeerLimits {
    /// A table applying `config`.
    pub fn new(config: PeerLimitConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            entries: Mutex::new(HashMap::new()),
            sweep_at: Mutex::new(1024),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` is on the exempt list (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.config.exempt.iter().any(|net| net.contains(&ip))
    }

    /// Counts a new connection from `ip`, or refuses it when the address
    /// has `max_connections` open already.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<PeerPermit, TooManyConnections> {
        let limit = self.config.max_connections;
        if limit == 0 || self.is_exempt(ip) {
            return Ok(PeerPermit {
                limits: None,
                key: ip,
            });
        }
        let key = key_of(ip);
        let mut entries = self.lock();
        self.maybe_sweep(&mut entries);
        let burst = self.config.sign_in_burst;
        let e = entries.entry(key).or_insert_with(|| Entry {
            connections: 0,
            tokens: burst,
            last: Instant::now(),
        });
        if e.connections >= limit {
            return Err(TooManyConnections { limit });
        }
        e.connections += 1;
        Ok(PeerPermit {
            limits: Some(self.clone()),
            key,
        })
    }

    /// Takes one sign-in token of `ip`'s bucket; false when the address
    /// signs in faster than the rate allows.
    pub fn allow_sign_in(&self, ip: IpAddr) -> bool {
        let rate = self.config.sign_in_rate;
        if rate <= 0.0 || self.is_exempt(ip) {
            return true;
        }
        let burst = self.config.sign_in_burst.max(1.0);
        let now = Instant::now();
        let mut entries = self.lock();
        self.maybe_sweep(&mut entries);
        let e = entries.entry(key_of(ip)).or_insert_with(|| Entry {
            connections: 0,
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(e.last).as_secs_f64();
        e.last = now;
        e.tokens = (e.tokens + elapsed * rate).min(burst);
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops entries of addresses with no connection whose bucket has
    /// refilled, once the table has doubled since the last sweep, so the
    /// table holds only addresses that are connected or recently active.
    fn maybe_sweep(&self, entries: &mut HashMap<IpAddr, Entry>) {
        let mut at = self.sweep_at.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() < *at {
            return;
        }
        let now = Instant::now();
        let (rate, burst) = (self.config.sign_in_rate, self.config.sign_in_burst);
        entries.retain(|_, e| {
            let refilled = rate <= 0.0
                || e.tokens + now.saturating_duration_since(e.last).as_secs_f64() * rate >= burst;
            e.connections > 0 || !refilled
        });
        *at = (entries.len() * 2).max(1024);
    }

    /// Addresses tracked now (for tests of the table's bound).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, rate: f64, burst: f64) -> Arc<PeerLimits> {
        PeerLimits::new(PeerLimitConfig {
            max_connections: max,
            sign_in_rate: rate,
            sign_in_burst: burst,
            exempt: vec!["10.9.0.0/16".parse().unwrap()],
        })
    }

    #[test]
    fn connections_are_capped_per_address_and_freed_on_drop() {
        let l = limits(2, 0.0, 1.0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.connect(a).unwrap();
        let _p2 = l.connect(a).unwrap();
        assert_eq!(l.connect(a).unwrap_err(), TooManyConnections { limit: 2 });
        assert!(l.connect(b).is_ok());
        drop(p1);
        assert!(l.connect(a).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_exempt_addresses_are_free() {
        let l = limits(1, 0.0, 1.0);
        let _p = l.connect("2001:db8::1".parse().unwrap()).unwrap();
        assert!(l.connect("2001:db8::2".parse().unwrap()).is_err());
        assert!(l.connect("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let exempt: IpAddr = "10.9.3.4".parse().unwrap();
        let _held: Vec<_> = (0..10).map(|_| l.connect(exempt).unwrap()).collect();
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert!(l.connect("::ffff:10.9.3.4".parse().unwrap()).is_ok());
    }

    #[test]
    fn sign_ins_are_rate_limited_per_address() {
        let l = limits(0, 1.0, 3.0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| l.allow_sign_in(a)));
        assert!(!l.allow_sign_in(a));
        assert!(l.allow_sign_in("192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn idle_addresses_are_swept() {
        let l = limits(10, 1000.0, 1.0);
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(l.connect(ip).unwrap());
        }
        assert!(l.tracked() <= 2048, "{} tracked", l.tracked());
    }
}
