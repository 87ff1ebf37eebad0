//! Per-tenant rate limiting: one token bucket per tenant (429 with `Retry-After` when empty).
//!
//! A bucket holds up to `burst` tokens and refills at `requests_per_sec`; a request takes `cost`
//! tokens (1 for most requests; a batch may cost more). Buckets start full, so a tenant that has
//! been quiet gets its whole burst.
//!
//! The buckets live in a few mutex-guarded maps (shards, chosen by a hash of the tenant), so
//! concurrent requests of different tenants rarely meet on one lock, and each check is a hash
//! lookup and a few float operations under it.
//!
//! Memory is bounded by `max_tenants`. When a shard is full and a new tenant arrives, buckets
//! that have refilled completely are dropped first: such a tenant is idle, and a dropped bucket
//! comes back exactly as it left (full), so nothing is lost. Only if every tracked tenant is
//! active are the fullest buckets evicted (a sixteenth of the shard at once, so the scan is paid
//! rarely); an evicted tenant may then get up to one extra burst, the price of a fixed bound.
//!
//! Time comes from the caller in [`RateLimiter::check_at`], so tests are deterministic.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The most tenants a limiter may be configured to track.
pub const MAX_TENANTS_LIMIT: usize = 10_000_000;

/// The longest wait ever reported: a client told to come back in days would rather be told to
/// retry later.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Fewer tenants than this are kept in one map: sharding buys nothing at that size and a single
/// shard keeps the bound exact.
const SHARD_THRESHOLD: usize = 1024;
const SHARDS: usize = 16;

/// Refill arithmetic is in floating point; a bucket this close to enough tokens has enough.
const EPSILON: f64 = 1e-9;

/// The `[rate_limit]` section of the gateway's configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether requests are limited at all. Off by default.
    pub enabled: bool,
    /// Sustained requests (tokens) per second per tenant.
    pub requests_per_sec: f64,
    /// Bucket size: how many requests a quiet tenant may make at once.
    pub burst: f64,
    /// The most tenants tracked at once (bounds memory).
    pub max_tenants: usize,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            enabled: false,
            requests_per_sec: 1000.0,
            burst: 2000.0,
            max_tenants: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// Checks the values make sense (whether or not the limiter is enabled, so a mistake shows
    /// before it is turned on).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.requests_per_sec.is_finite() && self.requests_per_sec > 0.0) {
            return Err(format!(
                "rate_limit.requests_per_sec must be a positive number, not {}",
                self.requests_per_sec
            ));
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return Err(format!(
                "rate_limit.burst must be at least 1, not {}",
                self.burst
            ));
        }
        if !(1..=MAX_TENANTS_LIMIT).contains(&self.max_tenants) {
            return Err(format!(
                "rate_limit.max_tenants must be 1 to {MAX_TENANTS_LIMIT}, not {}",
                self.max_tenants
            ));
        }
        Ok(())
    }
}

/// Token buckets for every tenant. Share it in an `Arc`.
pub struct RateLimiter {
    enabled: bool,
    rate: f64,
    burst: f64,
    /// Buckets per shard; `shards.len() * per_shard <= max_tenants`.
    per_shard: usize,
    shards: Box<[Mutex<Shard>]>,
    /// Picks the shard; each shard's map hashes with its own seed.
    shard_hasher: foldhash::quality::RandomState,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.enabled)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("tenants", &self.tracked_tenants())
            .finish()
    }
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<Box<str>, Bucket, foldhash::fast::RandomState>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date; never moves backwards.
    updated: Instant,
}

impl Bucket {
    /// The bucket's level at `now` (a clock that went backwards refills nothing).
    fn level_at(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }

    fn take(&mut self, cost: f64, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.tokens = self.level_at(now, rate, burst);
        self.updated = self.updated.max(now);
        if self.tokens + EPSILON >= cost {
            self.tokens = (self.tokens - cost).max(0.0);
            Ok(())
        } else {
            Err(retry_after((cost - self.tokens) / rate))
        }
    }
}

/// A wait in seconds as a `Duration`, rounded up to the nanosecond, at least 1 ns and at most
/// [`MAX_RETRY_AFTER`].
fn retry_after(secs: f64) -> Duration {
    let nanos = (secs * 1e9).ceil();
    if nanos.is_nan() || nanos >= MAX_RETRY_AFTER.as_nanos() as f64 {
        return MAX_RETRY_AFTER;
    }
    // `as` saturates; the value is in 1 ..= MAX_RETRY_AFTER here.
    Duration::from_nanos(nanos.max(1.0) as u64)
}

impl RateLimiter {
    /// A limiter for this configuration. Call [`RateLimitConfig::validate`] first; values it
    /// would refuse are replaced by the nearest usable ones (a rate of 0.001/s, a burst of 1,
    /// one tenant) so that the limiter itself cannot misbehave.
    pub fn new(config: &RateLimitConfig) -> RateLimiter {
        let rate = if config.requests_per_sec.is_finite() && config.requests_per_sec > 0.0 {
            config.requests_per_sec
        } else {
            0.001
        };
        let burst = if config.burst.is_finite() && config.burst >= 1.0 {
            config.burst
        } else {
            1.0
        };
        let max_tenants = config.max_tenants.clamp(1, MAX_TENANTS_LIMIT);
        let shards = if max_tenants < SHARD_THRESHOLD {
            1
        } else {
            SHARDS
        };
        RateLimiter {
            enabled: config.enabled,
            rate,
            burst,
            per_shard: max_tenants / shards,
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// Whether the limiter limits anything.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Takes `cost` tokens from `tenant`'s bucket now; see [`RateLimiter::check_at`].
    pub fn check(&self, tenant: &str, cost: f64) -> Result<(), Duration> {
        self.check_at(tenant, cost, Instant::now())
    }

    /// Takes `cost` tokens from `tenant`'s bucket as of `now`, or says how long until it could
    /// (`Err(retry_after)`; nothing is taken then). Always `Ok` when disabled.
    ///
    /// A cost above the burst is charged as the burst (a request the bucket could never cover
    /// would otherwise be refused forever); a cost that is negative or NaN is free.
    pub fn check_at(&self, tenant: &str, cost: f64, now: Instant) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        let cost = if cost > 0.0 {
            cost.min(self.burst)
        } else {
            0.0
        };
        let (rate, burst) = (self.rate, self.burst);
        let mut shard = self
            .shard(tenant)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = shard.buckets.get_mut(tenant) {
            return bucket.take(cost, now, rate, burst);
        }
        if shard.buckets.len() >= self.per_shard {
            shard.make_room(self.per_shard, now, rate, burst);
        }
        let mut bucket = Bucket {
            tokens: burst,
            updated: now,
        };
        let result = bucket.take(cost, now, rate, burst);
        shard.buckets.insert(tenant.into(), bucket);
        result
    }

    /// How many tenants have a bucket now (for metrics).
    pub fn tracked_tenants(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .buckets
                    .len()
            })
            .sum()
    }

    fn shard(&self, tenant: &str) -> &Mutex<Shard> {
        let index = (self.shard_hasher.hash_one(tenant) % self.shards.len() as u64) as usize;
        &self.shards[index]
    }
}

impl Shard {
    /// Makes room for one more bucket: drops every full (idle) bucket, and if that frees
    /// nothing, evicts the fullest sixteenth.
    fn make_room(&mut self, capacity: usize, now: Instant, rate: f64, burst: f64) {
        self.buckets
            .retain(|_, b| b.level_at(now, rate, burst) + EPSILON < burst);
        if self.buckets.len() < capacity {
            return;
        }
        let evict = (capacity / 16).max(1).min(self.buckets.len());
        let mut levels: Vec<(f64, &str)> = self
            .buckets
            .iter()
            .map(|(k, b)| (b.level_at(now, rate, burst), &**k))
            .collect();
        // Fullest first; ties broken arbitrarily.
        levels.select_nth_unstable_by(evict - 1, |a, b| b.0.total_cmp(&a.0));
        let victims: Vec<Box<str>> = levels[..evict].iter().map(|(_, k)| Box::from(*k)).collect();
        for victim in victims {
            self.buckets.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: f64, max_tenants: usize) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            enabled: true,
            requests_per_sec: rate,
            burst,
            max_tenants,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn contains(l: &RateLimiter, tenant: &str) -> bool {
        l.shard(tenant).lock().unwrap().buckets.contains_key(tenant)
    }

    #[test]
    fn burst_then_refusal() {
        let l = limiter(10.0, 5.0, 100);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(l.check_at("acme", 1.0, t0), Ok(()), "request {i}");
        }
        let retry = l.check_at("acme", 1.0, t0).unwrap_err();
        assert_eq!(retry, ms(100));
        // A refused request takes nothing.
        assert_eq!(l.check_at("acme", 1.0, t0).unwrap_err(), ms(100));
    }

    #[test]
    fn refills_at_the_configured_rate() {
        let l = limiter(10.0, 5.0, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            l.check_at("acme", 1.0, t0).unwrap();
        }
        assert!(l.check_at("acme", 1.0, t0 + ms(99)).is_err());
        assert_eq!(l.check_at("acme", 1.0, t0 + ms(100)), Ok(()));
        assert!(l.check_at("acme", 1.0, t0 + ms(100)).is_err());
        // 1 s later: 10 tokens refilled, but the bucket holds 5.
        let t1 = t0 + ms(1100);
        for _ in 0..5 {
            assert_eq!(l.check_at("acme", 1.0, t1), Ok(()));
        }
        assert!(l.check_at("acme", 1.0, t1).is_err());
        // Steady state: one request every 100 ms passes forever.
        for i in 1..=50 {
            assert_eq!(
                l.check_at("acme", 1.0, t1 + ms(100 * i)),
                Ok(()),
                "tick {i}"
            );
        }
    }

    #[test]
    fn retry_after_is_the_time_to_enough_tokens() {
        let l = limiter(4.0, 10.0, 100);
        let t0 = Instant::now();
        l.check_at("acme", 9.0, t0).unwrap();
        // 1 token left; 3 needs 2 more at 4/s = 500 ms.
        assert_eq!(l.check_at("acme", 3.0, t0).unwrap_err(), ms(500));
        assert_eq!(l.check_at("acme", 3.0, t0 + ms(250)).unwrap_err(), ms(250));
        assert_eq!(l.check_at("acme", 3.0, t0 + ms(500)), Ok(()));
        // A slow rate gives a long wait, capped.
        let slow = limiter(0.0001, 1.0, 100);
        slow.check_at("acme", 1.0, t0).unwrap();
        assert_eq!(slow.check_at("acme", 1.0, t0).unwrap_err(), MAX_RETRY_AFTER);
    }

    #[test]
    fn tenants_are_independent() {
        let l = limiter(1.0, 2.0, 100);
        let t0 = Instant::now();
        l.check_at("acme", 2.0, t0).unwrap();
        assert!(l.check_at("acme", 1.0, t0).is_err());
        assert_eq!(l.check_at("globex", 1.0, t0), Ok(()));
        assert_eq!(l.check_at("globex", 1.0, t0), Ok(()));
        assert!(l.check_at("globex", 1.0, t0).is_err());
        assert!(l.check_at("acme", 1.0, t0).is_err());
    }

    #[test]
    fn odd_costs() {
        let l = limiter(1.0, 3.0, 100);
        let t0 = Instant::now();
        // More than the burst: charged as the whole burst, so it can pass once the bucket is full.
        assert_eq!(l.check_at("acme", 100.0, t0), Ok(()));
        assert_eq!(
            l.check_at("acme", 100.0, t0).unwrap_err(),
            Duration::from_secs(3)
        );
        assert_eq!(
            l.check_at("acme", 100.0, t0 + Duration::from_secs(3)),
            Ok(())
        );
        for cost in [0.0, -5.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(
                l.check_at("acme", cost, t0 + Duration::from_secs(3)),
                Ok(()),
                "{cost}"
            );
        }
        assert!(
            l.check_at("acme", f64::INFINITY, t0 + Duration::from_secs(3))
                .is_err()
        );
        assert_eq!(l.check_at("acme", 0.5, t0 + ms(3500)), Ok(()));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let l = limiter(10.0, 2.0, 100);
        let t0 = Instant::now() + Duration::from_secs(10);
        l.check_at("acme", 2.0, t0).unwrap();
        assert!(
            l.check_at("acme", 1.0, t0 - Duration::from_secs(5))
                .is_err()
        );
        // And the bucket's clock did not move back: 100 ms after t0 one token is there.
        assert_eq!(l.check_at("acme", 1.0, t0 + ms(100)), Ok(()));
    }

    #[test]
    fn disabled_always_allows() {
        let l = RateLimiter::new(&RateLimitConfig {
            burst: 1.0,
            ..RateLimitConfig::default()
        });
        assert!(!l.enabled());
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(l.check_at("acme", 1.0, t0), Ok(()));
        }
        assert_eq!(l.check("acme", 1e9), Ok(()));
        assert_eq!(l.tracked_tenants(), 0);
    }

    #[test]
    fn idle_buckets_are_dropped_first() {
        let l = limiter(1.0, 2.0, 3);
        let t0 = Instant::now();
        l.check_at("idle", 1.0, t0).unwrap();
        l.check_at("busy1", 2.0, t0).unwrap();
        l.check_at("busy2", 2.0, t0).unwrap();
        assert_eq!(l.tracked_tenants(), 3);
        // 1.5 s later "idle" is full again, the others are not.
        let t1 = t0 + ms(1500);
        l.check_at("new", 1.0, t1).unwrap();
        assert_eq!(l.tracked_tenants(), 3);
        assert!(!contains(&l, "idle"));
        assert!(contains(&l, "busy1") && contains(&l, "busy2") && contains(&l, "new"));
        // The busy tenants kept their (low) levels.
        assert!(l.check_at("busy1", 2.0, t1).is_err());
    }

    #[test]
    fn when_all_are_busy_the_fullest_is_evicted() {
        let l = limiter(1.0, 10.0, 3);
        let t0 = Instant::now();
        l.check_at("a", 9.0, t0).unwrap();
        l.check_at("b", 5.0, t0).unwrap();
        l.check_at("c", 8.0, t0).unwrap();
        l.check_at("d", 1.0, t0).unwrap();
        assert_eq!(l.tracked_tenants(), 3);
        assert!(!contains(&l, "b"), "b had the most tokens left");
        assert!(contains(&l, "a") && contains(&l, "c") && contains(&l, "d"));
    }

    #[test]
    fn the_number_of_tenants_is_bounded() {
        for max in [1, 5, 1000, 5000] {
            let l = limiter(1.0, 5.0, max);
            let t0 = Instant::now();
            for i in 0..(3 * max + 100) {
                // Every tenant stays busy, so nothing is idle to drop.
                l.check_at(&format!("tenant-{i}"), 3.0, t0 + ms(i as u64))
                    .unwrap();
                assert!(l.tracked_tenants() <= max, "max {max} after {i}");
            }
            assert!(l.tracked_tenants() > 0);
        }
    }

    #[test]
    fn config_defaults_and_validation() {
        let config: RateLimitConfig = toml::from_str("").unwrap();
        assert_eq!(config, RateLimitConfig::default());
        assert!(!config.enabled);
        assert_eq!(
            (config.requests_per_sec, config.burst, config.max_tenants),
            (1000.0, 2000.0, 100_000)
        );
        assert_eq!(config.validate(), Ok(()));
        assert!(toml::from_str::<RateLimitConfig>("rps = 5").is_err());
        let config: RateLimitConfig =
            toml::from_str("enabled = true\nrequests_per_sec = 5.5").unwrap();
        assert_eq!(config.requests_per_sec, 5.5);

        let bad = [
            RateLimitConfig {
                requests_per_sec: 0.0,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                requests_per_sec: -1.0,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                requests_per_sec: f64::NAN,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                requests_per_sec: f64::INFINITY,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                burst: 0.5,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                burst: f64::NAN,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                max_tenants: 0,
                ..RateLimitConfig::default()
            },
            RateLimitConfig {
                max_tenants: MAX_TENANTS_LIMIT + 1,
                ..RateLimitConfig::default()
            },
        ];
        for config in &bad {
            assert!(config.validate().is_err(), "{config:?}");
            // Even unvalidated, the limiter works and never panics.
            let l = RateLimiter::new(&RateLimitConfig {
                enabled: true,
                ..config.clone()
            });
            let _ = l.check_at("acme", 1.0, Instant::now());
            let _ = l.check_at("acme", 1.0, Instant::now());
        }
        let ok = RateLimitConfig {
            requests_per_sec: 0.5,
            burst: 1.0,
            max_tenants: 1,
            ..RateLimitConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RateLimiter>();
        let l = std::sync::Arc::new(limiter(1.0, 100.0, 10_000));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| l.check_at("acme", 1.0, t0).is_ok())
                        .count()
                })
            })
            .collect();
        let passed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(
            passed, 100,
            "exactly the burst passes, however the threads interleave"
        );
    }

    #[test]
    fn retry_after_rounding() {
        assert_eq!(retry_after(0.0), Duration::from_nanos(1));
        assert_eq!(retry_after(1e-12), Duration::from_nanos(1));
        assert_eq!(retry_after(0.1), ms(100));
        assert_eq!(retry_after(f64::INFINITY), MAX_RETRY_AFTER);
        assert_eq!(retry_after(f64::NAN), MAX_RETRY_AFTER);
        assert_eq!(retry_after(1e30), MAX_RETRY_AFTER);
    }
}
