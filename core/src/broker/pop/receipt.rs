//! Receipt handles: what a popped message carries (`POP_CK`) and an ack or visibility change
//! names.
//!
//! The layout follows RocketMQ's `ExtraInfoUtil` (eight space-separated fields:
//! `startOffset popTime invisibleTime reviveQid topicType brokerName queueId queueOffset`) so
//! the fields mean what a RocketMQ tool would expect. `popTime` doubles as the handle's version:
//! every delivery and every visibility change of a message gets a strictly larger one, so an
//! older handle can be told apart from the current one and refused.

use std::fmt;

/// Longest handle accepted (the broker name is at most 127 characters; numbers are short).
pub const MAX_HANDLE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle {
    /// The delivery's version (RocketMQ's popTime, ms).
    pub version: i64,
    pub invisible_ms: i64,
    pub fifo: bool,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt handle is longer than {MAX_HANDLE_LEN} bytes")]
    TooLong,
    #[error("receipt handle is malformed: {0}")]
    Malformed(&'static str),
}

impl fmt::Display for ReceiptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} 0 {} {} {} {}",
            self.queue_offset,
            self.version,
            self.invisible_ms,
            u8::from(self.fifo),
            self.broker_name,
            self.queue_id,
            self.queue_offset
        )
    }
}

impl ReceiptHandle {
    pub fn parse(text: &str) -> Result<ReceiptHandle, ReceiptError> {
        if text.len() > MAX_HANDLE_LEN {
            return Err(ReceiptError::TooLong);
        }
        let fields: Vec<&str> = text.split(' ').collect();
        if fields.len() != 8 {
            return Err(ReceiptError::Malformed("expected 8 space-separated fields"));
        }
        let number = |i: usize, what: &'static str| -> Result<i64, ReceiptError> {
            fields[i].parse().map_err(|_| ReceiptError::Malformed(what))
        };
        let queue_offset = u64::try_from(number(7, "queue offset")?)
            .map_err(|_| ReceiptError::Malformed("queue offset"))?;
        let queue_id = i32::try_from(number(6, "queue id")?)
            .map_err(|_| ReceiptError::Malformed("queue id"))?;
        let fifo = match fields[4] {
            "0" => false,
            "1" => true,
            _ => return Err(ReceiptError::Malformed("topic type")),
        };
        if fields[5].is_empty() {
            return Err(ReceiptError::Malformed("broker name"));
        }
        Ok(ReceiptHandle {
            version: number(1, "pop time")?,
            invisible_ms: number(2, "invisible time")?,
            fifo,
            broker_name: fields[5].to_string(),
            queue_id,
            queue_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_rocketmq_layout_and_parses_back() {
        let handle = ReceiptHandle {
            version: 1_700_000_000_123,
            invisible_ms: 30_000,
            fifo: true,
            broker_name: "broker-a".into(),
            queue_id: 3,
            queue_offset: 42,
        };
        let text = handle.to_string();
        assert_eq!(text, "42 1700000000123 30000 0 1 broker-a 3 42");
        assert_eq!(ReceiptHandle::parse(&text), Ok(handle));
    }

    #[test]
    fn malformed_handles_are_refused() {
        for bad in [
            "",
            "1 2 3",
            "42 x 30000 0 0 b 3 42",
            "42 1 30000 0 7 b 3 42",
            "42 1 30000 0 0  3 42",
            "42 1 30000 0 0 b 3 -1",
            "42 1 30000 0 0 b 99999999999 42",
        ] {
            assert!(ReceiptHandle::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ReceiptHandle::parse(&"1".repeat(300)),
            Err(ReceiptError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = ReceiptHandle::parse(&text);
        }
    }
}
