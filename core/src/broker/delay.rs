//! What the send path does with delayed messages, and how a due message gets its real form back.
//!
//! Two kinds of delayed message exist (reference §8):
//!
//! - **Delay levels** (`DELAY` = 1..=18): the message is stored in `SCHEDULE_TOPIC_XXXX`, queue
//!   `level − 1`, with its real topic and queue in `REAL_TOPIC` / `REAL_QID`. The dispatcher writes
//!   the due time (store time + the level's delay) as the entry's tags code; the
//!   [schedule](super::schedule) service delivers it.
//! - **Timers** (`TIMER_DELIVER_MS` = absolute unix ms, or `TIMER_DELAY_SEC` = seconds from now):
//!   stored in `rmq_sys_wheel_timer` queue 0 with `REAL_TOPIC` / `REAL_QID` and a normalized
//!   `TIMER_DELIVER_MS` (the dispatcher uses it as the tags code); the [timer](super::timer)
//!   service delivers it. A due time already past, or less than [`TIMER_DIRECT_WINDOW_MS`] away, is
//!   stored straight into the real topic: a timer cannot be more precise than that anyway.
//!
//! `DELAY` wins when a message carries both (RocketMQ clients only ever set one). Batches with
//! either are refused (see [`refuse_in_batch`]); RocketMQ's own producer refuses delay levels in
//! batches too.

use crate::store::{Message, Properties, SCHEDULE_TOPIC, StoredMessage, TIMER_TOPIC, property};

/// A timer due sooner than this (or already past) goes straight to its real topic.
pub const TIMER_DIRECT_WINDOW_MS: i64 = 1_000;

/// Why a delayed send was refused. Each becomes a response code with this text as the remark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelayError {
    #[error("property DELAY `{0}` is not a delay level (an integer)")]
    BadLevel(String),
    #[error("property {key} `{value}` is not an integer")]
    BadTimer { key: &'static str, value: String },
    #[error(
        "timer delay {delay_ms} ms exceeds the broker's maximum of {max_ms} ms (timer_max_delay_ms)"
    )]
    DelayTooLong { delay_ms: i64, max_ms: u64 },
    #[error(
        "delay levels and timers are not supported in batches: send delayed messages one by one"
    )]
    InBatch,
    #[error(
        "too many pending timer messages ({pending}, limit {max}: timer_max_pending); retry later"
    )]
    TimerBacklogFull { pending: u64, max: u64 },
}

/// Where a sent message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Straight into its topic (no delay, delay level 0, or a timer already due).
    Now,
    /// Into `SCHEDULE_TOPIC_XXXX` at this level (already clamped to the configured count).
    Level(u32),
    /// Into the timer topic, due at this unix ms.
    Timer(i64),
}

/// Classifies a message by its properties. `now_ms` is the broker's clock; `max_delay_ms` bounds
/// timers; `level_count` is the number of configured delay levels (higher levels are clamped).
pub fn classify(
    properties: &Properties,
    now_ms: i64,
    max_delay_ms: u64,
    level_count: usize,
) -> Result<Delivery, DelayError> {
    if let Some(level) = properties.get(property::DELAY) {
        let level: i64 = level
            .trim()
            .parse()
            .map_err(|_| DelayError::BadLevel(clip(level)))?;
        if level > 0 {
            return Ok(Delivery::Level(level.min(level_count as i64) as u32));
        }
    }
    let due = if let Some(at) = properties.get(property::TIMER_DELIVER_MS) {
        parse_int(property::TIMER_DELIVER_MS, at)?
    } else if let Some(secs) = properties.get(property::TIMER_DELAY_SEC) {
        now_ms.saturating_add(parse_int(property::TIMER_DELAY_SEC, secs)?.saturating_mul(1000))
    } else {
        return Ok(Delivery::Now);
    };
    let delay_ms = due.saturating_sub(now_ms);
    if delay_ms > max_delay_ms as i64 {
        return Err(DelayError::DelayTooLong {
            delay_ms,
            max_ms: max_delay_ms,
        });
    }
    if delay_ms < TIMER_DIRECT_WINDOW_MS {
        return Ok(Delivery::Now);
    }
    Ok(Delivery::Timer(due))
}

fn parse_int(key: &'static str, value: &str) -> Result<i64, DelayError> {
    value.trim().parse().map_err(|_| DelayError::BadTimer {
        key,
        value: clip(value),
    })
}

/// At most 64 characters of a client-supplied value, for a remark.
fn clip(value: &str) -> String {
    value.chars().take(64).collect()
}

/// Refuses a batch entry that asks for a delay: a batch is appended as one run into one queue, and
/// splitting it between the real topic and the delay topics would break that promise.
pub fn refuse_in_batch(properties: &Properties) -> Result<(), DelayError> {
    let delayed = properties
        .get(property::DELAY)
        .is_some_and(|l| l.trim().parse::<i64>().map_or(true, |l| l > 0))
        || properties.get(property::TIMER_DELIVER_MS).is_some()
        || properties.get(property::TIMER_DELAY_SEC).is_some();
    if delayed {
        Err(DelayError::InBatch)
    } else {
        Ok(())
    }
}

/// Rewrites a message (already built for its real topic and queue) into its delay-level form:
/// `SCHEDULE_TOPIC_XXXX`, queue `level − 1`, with `REAL_TOPIC`/`REAL_QID` and `DELAY` = the level
/// (clamped to `1..=level_count`), which the dispatcher turns into the due time.
///
/// The consumer send-back path (retry topics) reuses this for `%RETRY%<group>` messages.
pub(crate) fn to_scheduled(mut message: Message, level: u32, level_count: usize) -> Message {
    let level = level.clamp(1, level_count.max(1) as u32);
    message
        .properties
        .insert(property::REAL_TOPIC, message.topic.as_str());
    message
        .properties
        .insert(property::REAL_QID, message.queue_id.to_string());
    message
        .properties
        .insert(property::DELAY, level.to_string());
    message.topic = SCHEDULE_TOPIC.to_string();
    message.queue_id = level as i32 - 1;
    message
}

/// Rewrites a message into its timer form: the timer topic's only queue, due at `due_ms`.
pub(crate) fn to_timer(mut message: Message, due_ms: i64) -> Message {
    let properties = &mut message.properties;
    properties.insert(property::REAL_TOPIC, message.topic.as_str());
    properties.insert(property::REAL_QID, message.queue_id.to_string());
    properties.remove(property::TIMER_DELAY_SEC);
    properties.insert(property::TIMER_DELIVER_MS, due_ms.to_string());
    message.topic = TIMER_TOPIC.to_string();
    message.queue_id = 0;
    message
}

/// Drops the delay properties of a message that is stored directly (a timer already due, or
/// `DELAY=0`), so a consumer sees an ordinary message.
pub(crate) fn strip_delay_properties(properties: &mut Properties) {
    for key in [
        property::DELAY,
        property::TIMER_DELIVER_MS,
        property::TIMER_DELAY_SEC,
        property::REAL_TOPIC,
        property::REAL_QID,
    ] {
        properties.remove(key);
    }
}

/// The message to put when a scheduled or timer message is due: its real topic and queue, without
/// the delay properties and without the idempotency key (the delivered copy is not a new send
/// the idempotency window should judge). `UNIQ_KEY` stays, so the id the producer saw remains
/// the message's id; flag, born time and host, reconsume times and body are kept.
///
/// `None` when the record lacks a usable `REAL_TOPIC`.
pub(crate) fn restore_real(mut stored: StoredMessage) -> Option<(Message, i32)> {
    let properties = &mut stored.properties;
    let topic = properties.remove(property::REAL_TOPIC)?;
    let queue_id = properties
        .remove(property::REAL_QID)
        .and_then(|q| q.parse::<i32>().ok())
        .filter(|&q| q >= 0)
        .unwrap_or(0);
    strip_delay_properties(properties);
    properties.remove(property::IDEMPOTENCY_KEY);
    Some((stored.into_message(topic, queue_id), queue_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs.iter().copied().collect()
    }

    const DAY: u64 = 86_400_000;

    #[test]
    fn classifies_levels_timers_and_errors() {
        let now = 1_000_000;
        let c = |p: &[(&str, &str)]| classify(&props(p), now, 3 * DAY, 18);
        assert_eq!(c(&[]), Ok(Delivery::Now));
        assert_eq!(c(&[("DELAY", "0")]), Ok(Delivery::Now));
        assert_eq!(c(&[("DELAY", "3")]), Ok(Delivery::Level(3)));
        assert_eq!(c(&[("DELAY", "99")]), Ok(Delivery::Level(18)));
        assert!(matches!(c(&[("DELAY", "x")]), Err(DelayError::BadLevel(_))));
        assert_eq!(
            c(&[("TIMER_DELAY_SEC", "2")]),
            Ok(Delivery::Timer(now + 2000))
        );
        assert_eq!(
            c(&[("TIMER_DELIVER_MS", &(now + 5000).to_string())]),
            Ok(Delivery::Timer(now + 5000))
        );
        assert_eq!(c(&[("TIMER_DELIVER_MS", "5")]), Ok(Delivery::Now));
        assert_eq!(c(&[("TIMER_DELAY_SEC", "0")]), Ok(Delivery::Now));
        assert!(matches!(
            c(&[("TIMER_DELAY_SEC", "1e3")]),
            Err(DelayError::BadTimer { .. })
        ));
        // Exactly three days is allowed, a second more is not.
        let three_days = (3 * DAY / 1000).to_string();
        assert!(matches!(
            c(&[("TIMER_DELAY_SEC", &three_days)]),
            Ok(Delivery::Timer(_))
        ));
        let more = (3 * DAY / 1000 + 1).to_string();
        assert!(matches!(
            c(&[("TIMER_DELAY_SEC", &more)]),
            Err(DelayError::DelayTooLong { .. })
        ));
        assert!(matches!(
            c(&[("TIMER_DELAY_SEC", &i64::MAX.to_string())]),
            Err(DelayError::DelayTooLong { .. })
        ));
        // DELAY wins over a timer.
        assert_eq!(
            c(&[("DELAY", "1"), ("TIMER_DELAY_SEC", "5")]),
            Ok(Delivery::Level(1))
        );
    }

    #[test]
    fn batches_refuse_delays() {
        assert!(refuse_in_batch(&props(&[("DELAY", "0")])).is_ok());
        assert!(refuse_in_batch(&props(&[("TAGS", "a")])).is_ok());
        assert_eq!(
            refuse_in_batch(&props(&[("DELAY", "2")])),
            Err(DelayError::InBatch)
        );
        assert_eq!(
            refuse_in_batch(&props(&[("TIMER_DELAY_SEC", "2")])),
            Err(DelayError::InBatch)
        );
    }

    #[test]
    fn scheduled_form_keeps_the_real_destination() {
        let m = Message::new("orders", 3, "x").with_property("DELAY", "40");
        let s = to_scheduled(m, 40, 18);
        assert_eq!((s.topic.as_str(), s.queue_id), (SCHEDULE_TOPIC, 17));
        assert_eq!(s.properties.get("REAL_TOPIC"), Some("orders"));
        assert_eq!(s.properties.get("REAL_QID"), Some("3"));
        assert_eq!(s.properties.get("DELAY"), Some("18"));
        let t = to_timer(
            Message::new("orders", 1, "x").with_property("TIMER_DELAY_SEC", "9"),
            77_000,
        );
        assert_eq!((t.topic.as_str(), t.queue_id), (TIMER_TOPIC, 0));
        assert_eq!(t.properties.get("TIMER_DELIVER_MS"), Some("77000"));
        assert_eq!(t.properties.get("TIMER_DELAY_SEC"), None);
        assert_eq!(t.properties.get("REAL_QID"), Some("1"));
    }
}
