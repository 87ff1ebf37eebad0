//! A consumer group's retry policy (RocketMQ 5's `groupRetryPolicy` of SubscriptionGroupConfig):
//! how long a message handed back without an explicit delay waits before its next delivery.
//!
//! The JSON shape is RocketMQ's (`{"type": "EXPONENTIAL", "exponentialRetryPolicy": {"initial":
//! ms, "max": ms, "multiplier": n}}` or `{"type": "CUSTOMIZED", "customizedRetryPolicy": {"next":
//! [ms, …]}}`), so group configurations move between Tern and RocketMQ brokers unchanged. Like
//! RocketMQ's proxy, the gateway applies it when a pop consumer nacks without a delay.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most delays a customized policy lists.
pub const MAX_CUSTOMIZED_DELAYS: usize = 64;
/// Longest delay a policy may produce (a pop's longest invisible time, 12 h).
pub const MAX_RETRY_DELAY_MS: i64 = 12 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRetryPolicy {
    /// `EXPONENTIAL` or `CUSTOMIZED`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
}

/// `initial · multiplier^(attempt − 1)`, at most `max` (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExponentialRetryPolicy {
    pub initial: i64,
    pub max: i64,
    pub multiplier: i64,
}

/// The delay after delivery `n` is `next[n − 1]`; the last one repeats (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomizedRetryPolicy {
    pub next: Vec<i64>,
}

impl GroupRetryPolicy {
    pub fn exponential(initial_ms: i64, max_ms: i64, multiplier: i64) -> GroupRetryPolicy {
        GroupRetryPolicy {
            kind: "EXPONENTIAL".into(),
            exponential_retry_policy: Some(ExponentialRetryPolicy {
                initial: initial_ms,
                max: max_ms,
                multiplier,
            }),
            customized_retry_policy: None,
        }
    }

    pub fn customized(next_ms: Vec<i64>) -> GroupRetryPolicy {
        GroupRetryPolicy {
            kind: "CUSTOMIZED".into(),
            exponential_retry_policy: None,
            customized_retry_policy: Some(CustomizedRetryPolicy { next: next_ms }),
        }
    }

    /// Checks the policy's bounds (a policy from a client or a foreign broker's file).
    pub fn validate(&self) -> Result<(), String> {
        let in_range = |ms: i64| (0..=MAX_RETRY_DELAY_MS).contains(&ms);
        match (
            self.kind.as_str(),
            &self.exponential_retry_policy,
            &self.customized_retry_policy,
        ) {
            ("EXPONENTIAL", Some(e), _) => {
                if !in_range(e.initial) || !in_range(e.max) || e.initial > e.max {
                    return Err(format!(
                        "exponential retry delays must satisfy 0 ≤ initial ≤ max ≤ {MAX_RETRY_DELAY_MS} ms"
                    ));
                }
                if !(1..=100).contains(&e.multiplier) {
                    return Err("the retry multiplier must be 1..=100".into());
                }
                Ok(())
            }
            ("CUSTOMIZED", _, Some(c)) => {
                if c.next.is_empty() || c.next.len() > MAX_CUSTOMIZED_DELAYS {
                    return Err(format!(
                        "a customized retry policy lists 1..={MAX_CUSTOMIZED_DELAYS} delays"
                    ));
                }
                if !c.next.iter().all(|ms| in_range(*ms)) {
                    return Err(format!("retry delays must be 0..={MAX_RETRY_DELAY_MS} ms"));
                }
                Ok(())
            }
            (kind, _, _) => Err(format!(
                "retry policy `{}` needs its EXPONENTIAL or CUSTOMIZED settings",
                kind.chars().take(40).collect::<String>()
            )),
        }
    }

    /// The wait after delivery `attempt` (1 = the first delivery) before the next one.
    pub fn delay(&self, attempt: u32) -> Duration {
        let attempt = attempt.max(1);
        let ms = match (
            &self.exponential_retry_policy,
            &self.customized_retry_policy,
        ) {
            (Some(e), _) if self.kind == "EXPONENTIAL" => {
                let mut ms = e.initial.max(0) as u128;
                for _ in 1..attempt.min(64) {
                    ms = ms.saturating_mul(e.multiplier.max(1) as u128);
                    if ms >= e.max.max(0) as u128 {
                        break;
                    }
                }
                ms.min(e.max.max(0) as u128) as i64
            }
            (_, Some(c)) if !c.next.is_empty() => {
                c.next[(attempt as usize - 1).min(c.next.len() - 1)]
            }
            _ => 0,
        };
        Duration::from_millis(ms.clamp(0, MAX_RETRY_DELAY_MS) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_grows_to_its_cap() {
        let p = GroupRetryPolicy::exponential(1_000, 10_000, 3);
        p.validate().unwrap();
        let delays: Vec<u64> = (1..=5).map(|a| p.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [1_000, 3_000, 9_000, 10_000, 10_000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn customized_repeats_its_last_delay() {
        let p = GroupRetryPolicy::customized(vec![500, 2_000]);
        p.validate().unwrap();
        assert_eq!(p.delay(1), Duration::from_millis(500));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(9), Duration::from_secs(2));
    }

    #[test]
    fn rocketmq_json_round_trips_and_bad_policies_are_refused() {
        let json = r#"{"type":"CUSTOMIZED","customizedRetryPolicy":{"next":[1000,5000]}}"#;
        let p: GroupRetryPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(p, GroupRetryPolicy::customized(vec![1_000, 5_000]));
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
        for bad in [
            GroupRetryPolicy::customized(vec![]),
            GroupRetryPolicy::customized(vec![-1]),
            GroupRetryPolicy::exponential(10, 5, 2),
            GroupRetryPolicy::exponential(1, 5, 0),
            GroupRetryPolicy {
                kind: "EXPONENTIAL".into(),
                exponential_retry_policy: None,
                customized_retry_policy: None,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
