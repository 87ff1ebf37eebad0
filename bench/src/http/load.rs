//! The HTTP/1.1 load generator: N keep-alive connections, each sending one request, reading the
//! whole response and sending the next (no pipelining), as a pool of ordinary HTTP clients does.
//!
//! Every connection is a hyper `client::conn::http1` handshake over its own `TcpStream` with
//! `TCP_NODELAY`, driven by a task of its own; the same code drives the bare server and the
//! gateway, so their figures compare like with like.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::broker::{Tally, Window, interrupted};
use crate::error::{BenchError, Context, Result};

/// How long a connection may take to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, response body included. Far beyond any healthy latency: it
/// only keeps a stuck server from hanging the benchmark.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error response's body is quoted in the report.
const ERROR_SNIPPET: usize = 200;

/// Where requests go: the address to connect to and the headers every request carries.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, as `TcpStream::connect` takes it.
    pub addr: String,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// `addr` is `host:port`; `bearer` a token sent as `Authorization: Bearer <token>`.
    pub fn new(addr: &str, bearer: Option<&str>) -> Result<Endpoint> {
        let header = |value: String, what: &str| {
            HeaderValue::try_from(value)
                .map_err(|_| BenchError::Args(format!("{what} is not a valid header value")))
        };
        Ok(Endpoint {
            addr: addr.to_owned(),
            host: header(addr.to_owned(), "the server address")?,
            authorization: bearer
                .map(|token| header(format!("Bearer {token}"), "--bearer-token"))
                .transpose()?,
        })
    }

    /// A request with the `Host` (and `Authorization`) headers every request needs.
    pub fn request(
        &self,
        method: Method,
        uri: Uri,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        request
    }
}

/// A path (with query) as a request target.
pub fn uri(path: &str) -> Result<Uri> {
    path.parse()
        .map_err(|e| BenchError::Invalid(format!("request path {path:?}: {e}")))
}

/// Opens one keep-alive HTTP/1.1 connection; its connection task ends when the returned sender
/// is dropped.
pub async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>> {
    let addr = &endpoint.addr;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| BenchError::Invalid(format!("connecting to {addr} timed out")))?
        .context(|| format!("connecting to {addr}"))?;
    stream
        .set_nodelay(true)
        .context(|| "setting TCP_NODELAY".to_owned())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .context(|| format!("HTTP/1.1 handshake with {addr}"))?;
    tokio::spawn(async move {
        // Its errors surface in the sender's next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `request` once the connection is free and reads the whole response, within
/// [`REQUEST_TIMEOUT`]. `what` names the request in errors (e.g. `POST /v1/topics/T/messages`).
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    what: &str,
) -> Result<(StatusCode, Bytes)> {
    let call = async {
        sender
            .ready()
            .await
            .context(|| format!("{what}: the connection closed"))?;
        let response: Response<Incoming> = sender
            .send_request(request)
            .await
            .context(|| what.to_owned())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context(|| format!("{what}: reading the response body"))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| {
            BenchError::Invalid(format!("{what}: no response within {REQUEST_TIMEOUT:?}"))
        })?
}

/// The start of a response body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_SNIPPET)]);
    let text = text.trim();
    if body.len() > ERROR_SNIPPET {
        format!("{text}...")
    } else {
        text.to_owned()
    }
}

/// What a load produced: successes inside the window (with their latencies) and every non-2xx
/// answer, warm-up included.
#[derive(Default)]
pub struct Outcome {
    pub tally: Tally,
    pub errors: u64,
    /// Status and body start of the first non-2xx answer.
    pub first_error: Option<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.tally.merge(&other.tally);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The produce load: `connections` connections, each POSTing `body` to `path` back to back until
/// the window closes or, with `limit`, until that many requests were sent in all.
pub struct ProduceLoad {
    pub endpoint: Arc<Endpoint>,
    pub uri: Uri,
    pub body: Bytes,
    pub connections: usize,
}

impl ProduceLoad {
    pub async fn run(&self, window: Window, limit: Option<u64>) -> Result<Outcome> {
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let content_type = HeaderValue::from_static("application/octet-stream");
        let tasks: Vec<JoinHandle<Result<Outcome>>> = (0..self.connections.max(1))
            .map(|_| {
                let (endpoint, uri, body) =
                    (self.endpoint.clone(), self.uri.clone(), self.body.clone());
                let (next, failed, content_type) =
                    (next.clone(), failed.clone(), content_type.clone());
                tokio::spawn(async move {
                    let what = format!("POST {uri}");
                    let run = async {
                        let mut sender = connect(&endpoint).await?;
                        let mut outcome = Outcome::default();
                        loop {
                            if window.is_over(Instant::now()) || failed.load(Ordering::Relaxed) {
                                return Ok(outcome);
                            }
                            if interrupted() {
                                return Err(BenchError::Interrupted);
                            }
                            if limit.is_some_and(|l| next.fetch_add(1, Ordering::Relaxed) >= l) {
                                return Ok(outcome);
                            }
                            let request = endpoint.request(
                                Method::POST,
                                uri.clone(),
                                Some(content_type.clone()),
                                body.clone(),
                            );
                            let started = Instant::now();
                            let (status, response) = exchange(&mut sender, request, &what).await?;
                            if status.is_success() {
                                outcome.tally.record(&window, started, Instant::now());
                            } else {
                                outcome.errors += 1;
                                outcome.first_error.get_or_insert_with(|| {
                                    format!("{status}: {}", snippet(&response))
                                });
                            }
                        }
                    };
                    let result = run.await;
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        join_all(tasks).await
    }
}

/// Awaits every task, even after one failed (so none keeps sending into a server about to be
/// stopped), and merges their outcomes; the first error wins.
async fn join_all(tasks: Vec<JoinHandle<Result<Outcome>>>) -> Result<Outcome> {
    let mut total = Outcome::default();
    let mut first_error = None;
    for task in tasks {
        let outcome = task
            .await
            .map_err(|e| BenchError::Invalid(format!("a load task failed: {e}")))
            .and_then(|result| result);
        match outcome {
            Ok(outcome) => total.merge(outcome),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}

/// What `PUT /v1/topics/{topic}` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCreation {
    Created,
    /// 409: it exists already.
    Existed,
    /// 404, 405 or 501: no topic administration here; the first produce creates the topic.
    Unsupported(StatusCode),
}

/// Creates `topic` with `queues` queues: `PUT /v1/topics/{topic}` with `{"queues":N}`.
pub async fn create_topic(endpoint: &Endpoint, topic: &str, queues: u32) -> Result<TopicCreation> {
    let mut sender = connect(endpoint).await?;
    let path = format!("/v1/topics/{topic}");
    let request = endpoint.request(
        Method::PUT,
        uri(&path)?,
        Some(HeaderValue::from_static("application/json")),
        Bytes::from(format!("{{\"queues\":{queues}}}")),
    );
    let (status, body) = exchange(&mut sender, request, &format!("PUT {path}")).await?;
    match status {
        s if s.is_success() => Ok(TopicCreation::Created),
        StatusCode::CONFLICT => Ok(TopicCreation::Existed),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
            Ok(TopicCreation::Unsupported(status))
        }
        _ => Err(BenchError::Invalid(format!(
            "creating topic {topic}: {status}: {}",
            snippet(&body)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_headers() {
        let endpoint = Endpoint::new("127.0.0.1:8080", Some("abc")).unwrap();
        let request = endpoint.request(
            Method::POST,
            uri("/v1/topics/T/messages").unwrap(),
            Some(HeaderValue::from_static("application/octet-stream")),
            Bytes::from_static(b"x"),
        );
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:8080");
        assert_eq!(request.headers()[header::AUTHORIZATION], "Bearer abc");
        assert_eq!(
            request.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert!(Endpoint::new("127.0.0.1:1", Some("bad\ntoken")).is_err());
    }

    #[test]
    fn snippets_are_short() {
        assert_eq!(snippet(b" oops \n"), "oops");
        let long = vec![b'a'; 500];
        assert_eq!(snippet(&long).len(), ERROR_SNIPPET + 3);
    }
}
