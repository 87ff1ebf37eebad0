//! Idempotent sends: [`Producer::send_idempotent`] and the keyed path of [`Producer::send`].
//!
//! The broker remembers a key per topic for its window, so a retry is only safe if it reaches
//! the *same* broker: the message is pinned to the queue its key hashes to (like an ordering
//! key) and every retry goes there. A retry that meets the first attempt still being stored
//! (IDEMPOTENCY_KEY_IN_FLIGHT) waits a little and asks again, so the caller normally sees the
//! first result marked `replayed` rather than the in-flight error.

use std::time::{Duration, Instant};

use crate::protocol::RemotingCommand;
use crate::protocol::codes::response;
use crate::store::property;

use super::error::ClientError;
use super::message::Message;
use super::producer::{Prepared, Producer, SendResult};

/// Pause before asking again about a key whose first send is still being stored.
const IN_FLIGHT_BACKOFF: Duration = Duration::from_millis(20);

impl Producer {
    /// Sends `msg` with idempotency key `key` (1..=128 bytes of visible ASCII): within the
    /// broker's window a repeat returns the first result with `replayed = true` and stores
    /// nothing; the same key with a different body fails with
    /// [`ClientError::IdempotencyKeyReused`]. Same as `send(&msg.with_idempotency_key(key))`.
    pub async fn send_idempotent(
        &self,
        msg: &Message,
        key: &str,
    ) -> Result<SendResult, ClientError> {
        let msg = msg.clone().with_idempotency_key(key);
        self.send_keyed(&msg, key).await
    }

    /// The keyed send: the queue `pin` hashes to (the idempotency key, or the ordering key when
    /// there is one), retried there on transport failures, busy brokers and in-flight answers
    /// until the send's time budget runs out.
    pub(super) async fn send_keyed(
        &self,
        msg: &Message,
        pin: &str,
    ) -> Result<SendResult, ClientError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let (prepared, msg_id) = self.prepare(msg)?;
        let mut failures = 0;
        loop {
            let route = self.route_until(&prepared.topic, deadline).await?;
            let queue = route
                .queue_for_key(pin)
                .ok_or_else(|| ClientError::NoWritableQueue {
                    topic: prepared.topic.clone(),
                })?
                .clone();
            let error = match self.attempt(&route, &prepared, &queue, deadline).await {
                Ok((header, status)) => {
                    return Ok(SendResult {
                        msg_id,
                        offset_msg_id: header.msg_id,
                        queue,
                        queue_offset: header.queue_offset,
                        status,
                        replayed: header.idempotent_replayed == Some(true),
                    });
                }
                Err(e @ ClientError::IdempotencyKeyInFlight { .. }) => e,
                Err(e) if e.is_retryable() && failures < self.retries => {
                    failures += 1;
                    e
                }
                Err(e) => return Err(e),
            };
            tracing::debug!(%queue, error = %error, "idempotent send: asking again");
            if Instant::now() + IN_FLIGHT_BACKOFF >= deadline {
                return Err(error);
            }
            tokio::time::sleep(IN_FLIGHT_BACKOFF).await;
        }
    }
}

/// The typed error for the idempotency codes of a send response, if it is one.
pub(super) fn idempotency_error(
    addr: &str,
    prepared: &Prepared,
    response: &RemotingCommand,
) -> Option<ClientError> {
    let key = || {
        prepared
            .idempotency_key()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect()
    };
    let remark = response.remark_or_empty().to_string();
    match response.code {
        response::IDEMPOTENCY_KEY_IN_FLIGHT => Some(ClientError::IdempotencyKeyInFlight {
            addr: addr.to_string(),
            key: key(),
            remark,
        }),
        response::IDEMPOTENCY_KEY_REUSED => Some(ClientError::IdempotencyKeyReused {
            addr: addr.to_string(),
            key: key(),
            remark,
        }),
        _ => None,
    }
}

impl Prepared {
    fn idempotency_key(&self) -> Option<&str> {
        self.header
            .properties
            .as_deref()
            .and_then(|p| crate::store::find_property(p, property::IDEMPOTENCY_KEY))
    }
}
