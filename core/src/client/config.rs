//! [`ClientConfig`]: what every client needs to find and talk to the cluster.
//!
//! The defaults are RocketMQ's client defaults (reference §8), so a Tern client and a Java client
//! in the same group behave alike: a route is at most 30 s stale, a broker learns of a consumer
//! within 30 s, a group rebalances within 20 s and offsets are at most 5 s behind.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::ClientError;

/// Most NameServer addresses a client accepts (the broker has the same limit).
pub const MAX_NAMESRV_ADDRS: usize = 64;
/// Bounds of the request timeout: below 10 ms nothing completes, above 5 min a dead peer holds
/// callers far too long.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(10);
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Bounds of the periodic intervals: more often than 10 ms is a busy loop, less often than a day
/// is "never".
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// NameServers as `ip:port`; the client asks them in turn, starting at a random one.
    pub namesrv_addrs: Vec<String>,
    /// Time allowed for one request (a send including its retries, a route lookup, an offset
    /// query). Long-polling pulls get their suspend time on top.
    pub request_timeout: Duration,
    /// How often cached routes are refreshed from the NameServers.
    pub route_refresh: Duration,
    /// How often a consumer heartbeats every broker of its topics.
    pub heartbeat_interval: Duration,
    /// How often a consumer group rebalances even without a membership notification.
    pub rebalance_interval: Duration,
    /// How often a consumer commits its offsets.
    pub offset_commit_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            request_timeout: Duration::from_secs(3),
            route_refresh: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
            rebalance_interval: Duration::from_secs(20),
            offset_commit_interval: Duration::from_secs(5),
        }
    }
}

impl ClientConfig {
    /// The defaults with these NameServers.
    pub fn new<S: Into<String>>(namesrv_addrs: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            namesrv_addrs: namesrv_addrs.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }

    /// Checks every field; clients refuse to start with an invalid configuration.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |msg: String| Err(ClientError::InvalidConfig(msg));
        if self.namesrv_addrs.is_empty() {
            return bad("namesrv_addrs is empty".into());
        }
        if self.namesrv_addrs.len() > MAX_NAMESRV_ADDRS {
            return bad(format!(
                "namesrv_addrs has {} entries, at most {MAX_NAMESRV_ADDRS} are allowed",
                self.namesrv_addrs.len()
            ));
        }
        for addr in &self.namesrv_addrs {
            // The remoting layer connects to socket addresses only (no DNS lookups on the hot
            // path), so a host name would fail at every call; refuse it here instead.
            if addr.parse::<SocketAddr>().is_err() {
                return bad(format!("NameServer address `{addr}` is not ip:port"));
            }
        }
        if !(MIN_REQUEST_TIMEOUT..=MAX_REQUEST_TIMEOUT).contains(&self.request_timeout) {
            return bad(format!(
                "request_timeout must be {MIN_REQUEST_TIMEOUT:?}..={MAX_REQUEST_TIMEOUT:?}, got {:?}",
                self.request_timeout
            ));
        }
        for (name, value) in [
            ("route_refresh", self.route_refresh),
            ("heartbeat_interval", self.heartbeat_interval),
            ("rebalance_interval", self.rebalance_interval),
            ("offset_commit_interval", self.offset_commit_interval),
        ] {
            if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&value) {
                return bad(format!(
                    "{name} must be {MIN_INTERVAL:?}..={MAX_INTERVAL:?}, got {value:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rocketmq_defaults_and_valid() {
        let c = ClientConfig::default();
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.route_refresh, Duration::from_secs(30));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.rebalance_interval, Duration::from_secs(20));
        assert_eq!(c.offset_commit_interval, Duration::from_secs(5));
        c.validate().unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        let ok = ClientConfig::new(["127.0.0.1:9876", "[::1]:9876"]);
        ok.validate().unwrap();
        let cases = [
            ClientConfig::new(Vec::<String>::new()),
            ClientConfig::new(["localhost:9876"]),
            ClientConfig::new(vec!["127.0.0.1:1"; MAX_NAMESRV_ADDRS + 1]),
            ClientConfig {
                request_timeout: Duration::ZERO,
                ..ok.clone()
            },
            ClientConfig {
                rebalance_interval: Duration::from_micros(1),
                ..ok.clone()
            },
            ClientConfig {
                offset_commit_interval: Duration::from_secs(100_000),
                ..ok.clone()
            },
        ];
        for case in cases {
            assert!(
                matches!(case.validate(), Err(ClientError::InvalidConfig(_))),
                "{case:?}"
            );
        }
    }
}
