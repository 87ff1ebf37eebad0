//! A small HTTP client for the gateway tests: one request at a time with its whole answer, or an
//! SSE stream read event by event. Built on hyper (the gateway's own HTTP stack), HTTP/1.1 unless
//! a test asks for prior-knowledge HTTP/2.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest any single test request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// The HTTP version the answer came over.
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with `status`, returning its JSON.
    pub fn problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        for field in ["type", "title", "status", "detail", "retryable"] {
            assert!(json.get(field).is_some(), "problem without {field}: {json}");
        }
        json
    }
}

/// A client of one gateway (`http://addr`).
#[derive(Clone)]
pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

impl Http {
    /// HTTP/1.1 client of `addr` (`ip:port`).
    pub fn new(addr: &str) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
            token: None,
        }
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub fn new_h2c(addr: &str) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
            token: None,
        }
    }

    /// The same client sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: impl Into<String>) -> Http {
        Http {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// [`Self::send`] that reports a failed exchange (connection refused or reset, no answer
    /// within `REQUEST_TIMEOUT`) instead of panicking: for tests that kill servers under load.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let response = self.try_start(method, path, headers, body.into()).await?;
        Self::try_answer(response).await
    }

    /// Reads a whole response.
    async fn answer(response: hyper::Response<Incoming>) -> Answer {
        Self::try_answer(response)
            .await
            .unwrap_or_else(|e| panic!("reading an answer: {e}"))
    }

    async fn try_answer(response: hyper::Response<Incoming>) -> Result<Answer, String> {
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| "no whole body within the timeout".to_string())?
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            version,
            headers,
            body,
        })
    }

    async fn start(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> hyper::Response<Incoming> {
        self.try_start(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn try_start(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).expect("request");
        tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "no answer within the timeout".to_string())?
            .map_err(|e| format!("request failed: {e:?}"))
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, &[], Bytes::new()).await
    }

    /// POST with a raw body and extra headers (a produce).
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        self.send(Method::POST, path, headers, body).await
    }

    /// [`Self::post`] that reports a failed exchange instead of panicking.
    pub async fn try_post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        self.try_send(Method::POST, path, headers, body).await
    }

    /// [`Self::post_json`] that reports a failed exchange instead of panicking.
    pub async fn try_post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, String> {
        self.try_send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    /// A request with a JSON body.
    pub async fn json(&self, method: Method, path: &str, body: &serde_json::Value) -> Answer {
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.json(Method::POST, path, body).await
    }

    /// Opens an event stream (GET with `Accept: text/event-stream`); panics unless it answers 200.
    pub async fn events(&self, path: &str, headers: &[(&str, &str)]) -> EventStream {
        match self.try_events(path, headers).await {
            Ok(stream) => stream,
            Err(answer) => panic!(
                "event stream {path}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }

    /// Opens an event stream, or returns the whole answer when it is not a 200.
    pub async fn try_events(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<EventStream, Answer> {
        let mut all = vec![("accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let response = self.start(Method::GET, path, &all, Bytes::new()).await;
        if response.status() != StatusCode::OK {
            return Err(Self::answer(response).await);
        }
        Ok(EventStream {
            headers: response.headers().clone(),
            body: response.into_body(),
            buffer: Vec::new(),
            ended: false,
            error: None,
        })
    }
}

/// One server-sent event (comments are reported as `event == ":"` with the comment as data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// An open SSE response.
pub struct EventStream {
    /// The response headers.
    pub headers: HeaderMap,
    body: Incoming,
    buffer: Vec<u8>,
    ended: bool,
    /// Why the body broke off, when it did not end cleanly.
    error: Option<String>,
}

impl EventStream {
    /// The next event or comment within `timeout`; `None` when the stream ended or nothing came.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => {
                    self.ended = true;
                    self.error = Some(e.to_string());
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next `message` event within `timeout`, skipping comments.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if event.event == "message" {
                return Some(event);
            }
        }
    }

    /// Whether the server ended the stream (read until the end or `timeout`).
    pub async fn ended_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self
            .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
            .is_some()
        {}
        self.ended
    }

    /// The error the body broke off with, if it did (`None` while open or after a clean end).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn parse_one(&mut self) -> Option<Event> {
        let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
        let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&block);
        let mut event = Event {
            id: None,
            event: "message".into(),
            data: String::new(),
        };
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix(':') {
                return Some(Event {
                    id: None,
                    event: ":".into(),
                    data: comment.trim().to_string(),
                });
            } else if let Some(v) = line.strip_prefix("id: ") {
                event.id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event.event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(v);
            }
        }
        Some(event)
    }
}

/// A raw TCP connection to a gateway, for what a well-behaved HTTP client never sends: partial
/// heads, stalled bodies, oversized heads, hand-written chunked bodies.
pub struct RawConn {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

enum Fill {
    Data,
    /// The end of the connection (EOF or a reset).
    End,
    Timeout,
}

/// How a raw connection ended up.
#[derive(Debug)]
pub enum RawOutcome {
    /// The server answered (and may have closed after it).
    Answer(Answer),
    /// The server closed the connection without answering (EOF or reset).
    Closed,
    /// Neither within the time allowed.
    Open,
}

impl RawConn {
    pub async fn connect(addr: &str) -> RawConn {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Writes `bytes`; an error means the server has closed or reset the connection.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one response within `timeout`: the head, then a body of `Content-Length` bytes (or up
    /// to the end of the connection when there is none).
    pub async fn read(&mut self, timeout: Duration) -> RawOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(answer) = self.parse(false) {
                return RawOutcome::Answer(answer);
            }
            match self.fill(deadline).await {
                Fill::Data => {}
                Fill::End => {
                    // What came before the end is all there is.
                    return self
                        .parse(true)
                        .map_or(RawOutcome::Closed, RawOutcome::Answer);
                }
                Fill::Timeout => return RawOutcome::Open,
            }
        }
    }

    /// Waits up to `timeout` for the server to close the connection, discarding what it sends;
    /// true when it did.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.fill(deadline).await {
                Fill::Data => self.buffer.clear(),
                Fill::End => return true,
                Fill::Timeout => return false,
            }
        }
    }

    async fn fill(&mut self, deadline: tokio::time::Instant) -> Fill {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Fill::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => Fill::End,
            Ok(Ok(n)) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
        }
    }

    /// One response from the buffer, if it is complete (`at_end`: the connection has ended, so a
    /// response without `Content-Length` ends here too).
    fn parse(&mut self, at_end: bool) -> Option<Answer> {
        let head_end = self.buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let code: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = HeaderMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            headers.append(
                hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
                hyper::header::HeaderValue::from_str(value.trim()).ok()?,
            );
        }
        let length = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body_end = match length {
            Some(n) if self.buffer.len() >= head_end + n => head_end + n,
            Some(_) => return None,
            None if at_end || code == 304 || code == 204 => self.buffer.len(),
            None => return None,
        };
        let body = Bytes::copy_from_slice(&self.buffer[head_end..body_end]);
        self.buffer.drain(..body_end);
        Some(Answer {
            status: StatusCode::from_u16(code).ok()?,
            version: hyper::Version::HTTP_11,
            headers,
            body,
        })
    }
}
