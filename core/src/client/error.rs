//! The client's errors.
//!
//! One enum for the whole client so that a caller (the gateway maps these onto HTTP statuses) can
//! tell apart "the broker said no" ([`ClientError::Broker`], with RocketMQ's response code), "nobody
//! answered" ([`ClientError::Remoting`]), "there is nowhere to send this" ([`ClientError::NoRoute`],
//! [`ClientError::NoWritableQueue`]) and "the caller's input is wrong"
//! ([`ClientError::InvalidMessage`], [`ClientError::InvalidConfig`]).

use std::time::Duration;

use crate::protocol::RemotingError;
use crate::protocol::codes::response;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A [`ClientConfig`](super::ClientConfig) or consumer configuration failed validation.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// A message (or batch) the client refuses to send: bad topic, too large, bad property...
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// No NameServer knows the topic (NameServer code 17, TOPIC_NOT_EXIST).
    #[error("no route for topic `{topic}`")]
    NoRoute { topic: String },
    /// The topic's route has no queue on a writable broker with a registered master.
    #[error("topic `{topic}` has no writable queue")]
    NoWritableQueue { topic: String },
    /// An argument outside its domain (a negative offset, a queue of another topic...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The route names a broker whose master address is unknown.
    #[error("no address for broker `{broker_name}`")]
    NoBrokerAddress { broker_name: String },
    /// A broker answered with an error code (`codes::response`).
    #[error("broker {addr} answered code {code}: {remark}")]
    Broker {
        addr: String,
        code: i32,
        remark: String,
    },
    /// A NameServer answered with an error code other than TOPIC_NOT_EXIST.
    #[error("NameServer {addr} answered code {code}: {remark}")]
    NameServer {
        addr: String,
        code: i32,
        remark: String,
    },
    /// The call did not produce a response (connect failure, timeout, closed connection).
    #[error(transparent)]
    Remoting(#[from] RemotingError),
    /// An operation's whole time budget ran out (e.g. a send, retries included).
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// A peer's response could not be decoded (bad header, JSON or record).
    #[error("malformed {what} from {addr}: {reason}")]
    Decode {
        what: &'static str,
        addr: String,
        reason: String,
    },
    /// An idempotent send: a send with this key on this topic is still being stored by the
    /// broker (IDEMPOTENCY_KEY_IN_FLIGHT; the gateway's 409). Retrying later returns its result.
    #[error("idempotency key `{key}` is in flight on {addr}: {remark}")]
    IdempotencyKeyInFlight {
        addr: String,
        key: String,
        remark: String,
    },
    /// An idempotent send: the key was used within the window for a different body
    /// (IDEMPOTENCY_KEY_REUSED; the gateway's 422). Final.
    #[error("idempotency key `{key}` was reused with a different body ({addr}): {remark}")]
    IdempotencyKeyReused {
        addr: String,
        key: String,
        remark: String,
    },
    /// The producer or consumer was shut down.
    #[error("client is shut down")]
    Shutdown,
    /// An ack or visibility change named a delivery that is no longer current: the message was
    /// acked, delivered again, or its receipt was renewed.
    #[error("stale receipt: {0}")]
    StaleReceipt(String),
}

impl ClientError {
    /// Whether the outcome is unknown because no answer arrived in time (the gateway's 504):
    /// the request may or may not have taken effect.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. } | ClientError::Remoting(RemotingError::Timeout { .. })
        )
    }

    /// Whether trying again (possibly elsewhere) can succeed: transport failures and the broker
    /// codes that mean "busy" or "not now", never a refusal of the request itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Remoting(RemotingError::Encode(_) | RemotingError::BadAddress(_)) => false,
            ClientError::Remoting(_) | ClientError::Timeout { .. } => true,
            ClientError::Broker { code, .. } => is_retryable_code(*code),
            ClientError::NameServer { .. } | ClientError::NoBrokerAddress { .. } => true,
            _ => false,
        }
    }

    /// The broker's response code, when a broker refused the request.
    pub fn broker_code(&self) -> Option<i32> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            ClientError::IdempotencyKeyInFlight { .. } => Some(response::IDEMPOTENCY_KEY_IN_FLIGHT),
            ClientError::IdempotencyKeyReused { .. } => Some(response::IDEMPOTENCY_KEY_REUSED),
            _ => None,
        }
    }
}

/// Broker codes after which another attempt (on another broker) makes sense. MESSAGE_ILLEGAL,
/// NO_PERMISSION and TOPIC_NOT_EXIST are answers about the request itself and are final.
/// SYSTEM_ERROR is retried like RocketMQ's producer does: it covers a queue id that a shrunken
/// topic no longer has (stale route) and transient store failures.
pub(crate) fn is_retryable_code(code: i32) -> bool {
    matches!(
        code,
        response::SYSTEM_BUSY | response::SERVICE_NOT_AVAILABLE | response::SYSTEM_ERROR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let busy = ClientError::Broker {
            addr: "a".into(),
            code: response::SYSTEM_BUSY,
            remark: String::new(),
        };
        assert!(busy.is_retryable());
        for code in [
            response::MESSAGE_ILLEGAL,
            response::NO_PERMISSION,
            response::TOPIC_NOT_EXIST,
        ] {
            let e = ClientError::Broker {
                addr: "a".into(),
                code,
                remark: String::new(),
            };
            assert!(!e.is_retryable(), "{code}");
        }
        let timeout = ClientError::Remoting(RemotingError::Timeout {
            addr: "a".into(),
            timeout: Duration::from_secs(1),
        });
        assert!(timeout.is_timeout() && timeout.is_retryable());
        assert!(!ClientError::InvalidMessage("x".into()).is_retryable());
    }
}
