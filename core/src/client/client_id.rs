//! Who this client is: its IP, its process, and the client id it announces to brokers.
//!
//! A broker tells the members of a consumer group apart by client id, and clustering rebalance
//! sorts those ids, so every consumer instance needs its own id, stable for its lifetime. RocketMQ
//! uses `ip@instanceName`; we use `ip@pid#n-r` (n counts instances in this process, r is random)
//! so that several consumers in one process (tests, the gateway) and a restarted process that got
//! the same pid never share an id.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The IPv4 address this host uses to reach the outside, or 127.0.0.1.
///
/// Found by "connecting" a UDP socket, which only asks the kernel for a route and sends nothing.
/// Message ids embed 4 bytes of IP, so an IPv6-only host reports 127.0.0.1 (the id stays unique
/// through pid, random and counter).
pub fn local_ipv4() -> Ipv4Addr {
    static IP: OnceLock<Ipv4Addr> = OnceLock::new();
    *IP.get_or_init(|| {
        let probe = || -> std::io::Result<IpAddr> {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            Ok(socket.local_addr()?.ip())
        };
        match probe() {
            Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            _ => Ipv4Addr::LOCALHOST,
        }
    })
}

/// A random 64-bit number (not for cryptography): the std hasher's per-instance random keys mixed
/// with the clock and a counter. Good enough for spreading load and making ids unique.
pub(crate) fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    hasher.write_u64(nanos);
    hasher.finish()
}

/// A new client id, unique per call: `ip@pid#n-RRRRRRRR`.
pub fn new_client_id() -> String {
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}@{}#{n}-{:08X}",
        local_ipv4(),
        std::process::id(),
        random_u64() as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_unique_and_short() {
        let a = new_client_id();
        let b = new_client_id();
        assert_ne!(a, b);
        assert!(a.len() < 64, "{a}");
        assert!(a.starts_with(&format!("{}@{}#", local_ipv4(), std::process::id())));
    }

    #[test]
    fn random_values_differ() {
        let values: std::collections::HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(values.len(), 1000);
    }
}
