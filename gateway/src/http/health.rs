//! `GET /healthz` (the process serves), `GET /readyz` (a NameServer answers and names a broker
//! group with a master, so a produce can succeed) and `GET /metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::extract::json_response;
use crate::error::ApiError;
use crate::state::Gateway;

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

pub async fn healthz() -> Response {
    json_response(&Health { status: "ok" })
}

pub async fn readyz(State(gateway): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    if gateway.is_shutting_down() {
        return Err(ApiError::unavailable(
            "shutting-down",
            "the gateway is shutting down",
        ));
    }
    let brokers = gateway.admin.brokers().await.map_err(|e| {
        ApiError::unavailable("no-nameserver", format!("no NameServer answered: {e}"))
    })?;
    if !brokers.values().any(|members| members.contains_key(&0)) {
        return Err(ApiError::unavailable(
            "no-writable-broker",
            "the NameServers know no broker master",
        ));
    }
    Ok(json_response(&Health { status: "ready" }))
}

pub async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        gateway.metrics.render(),
    )
        .into_response()
}
