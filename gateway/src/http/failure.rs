//! Broker failures as HTTP answers: every handler maps a failed client call here, so the
//! contract's statuses, the broker-error metrics and the warning log are decided in one place.

use tern_core::client::ClientError;

use crate::error::ApiError;
use crate::state::Gateway;

/// Maps a client failure and counts it as a broker error.
pub fn broker_failure(gateway: &Gateway, error: &ClientError, topic: &str) -> ApiError {
    let api = ApiError::from_client(error, &format!("topic `{topic}`"));
    if api.status.is_server_error() {
        gateway.metrics.broker_error(api.slug);
        tracing::warn!(%topic, error = %error, "broker call failed");
    }
    api
}

/// [`broker_failure`] for a call that looked the topic's route up (`topic` is the broker-side
/// name, `client_topic` the client's). The NameServers answer "no route" for a topic that does
/// not exist, but also for every topic of a broker group that is down or restarting (its topics
/// leave the route table with it). So the topic is reported unknown (404) only while they name a
/// broker master and still know no route for it (asked again after the master was seen: a
/// broker registers with its topics, so one that came back meanwhile is in the answer); with no
/// master, or a route there now, the outage is answered like any other: 503, retryable.
pub async fn routed_failure(
    gateway: &Gateway,
    error: &ClientError,
    topic: &str,
    client_topic: &str,
) -> ApiError {
    if !matches!(error, ClientError::NoRoute { .. }) {
        return broker_failure(gateway, error, client_topic);
    }
    let master_known = gateway
        .admin
        .brokers()
        .await
        .is_ok_and(|brokers| brokers.values().any(|members| members.contains_key(&0)));
    if master_known
        && matches!(
            gateway.routes().refresh(topic).await,
            Err(ClientError::NoRoute { .. })
        )
    {
        return broker_failure(gateway, error, client_topic);
    }
    gateway.routes().mark_stale(topic);
    let api = ApiError::unavailable(
        "no-writable-broker",
        format!("topic `{client_topic}`: no broker group serving it is registered; retry"),
    );
    gateway.metrics.broker_error(api.slug);
    tracing::warn!(topic = %client_topic, "no route while brokers are away");
    api
}

/// A broker call's result with its failure mapped by [`routed_failure`].
pub async fn routed<T>(
    gateway: &Gateway,
    result: Result<T, ClientError>,
    topic: &str,
    client_topic: &str,
) -> Result<T, ApiError> {
    match result {
        Ok(value) => Ok(value),
        Err(e) => Err(routed_failure(gateway, &e, topic, client_topic).await),
    }
}
