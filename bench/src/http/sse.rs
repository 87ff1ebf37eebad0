//! Server-sent events: an incremental parser of `text/event-stream`, and the delivery-rate
//! measurement that reads the gateway's event stream of a consumer group.
//!
//! The parser follows the WHATWG "event stream interpretation": lines end with CRLF, LF or CR
//! (a CR at the end of one chunk and an LF at the start of the next are one line end), `name:
//! value` fields lose one space after the colon, lines starting with `:` are comments (the
//! gateway's heartbeats), a blank line ends an event, and an event without an `event:` field is of
//! type `message`. One deliberate difference: [`SseEvent::id`] is the event's *own* `id:` field,
//! not the "last event ID" that the spec carries over to later events, because the benchmark counts
//! distinct messages by it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};

use super::load::{Endpoint, connect, snippet, uri};
use crate::broker::interrupted;
use crate::error::{BenchError, Context, Result};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when there was none.
    pub event: String,
    /// This event's own `id:` field, if it had one.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Turns chunks of an event stream, split anywhere, into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The incomplete line at the end of the last chunk.
    line: Vec<u8>,
    /// The last chunk ended with CR: an LF starting the next one belongs to that line end.
    pending_cr: bool,
    /// The stream's start is behind (a leading byte-order mark has been dropped if there was
    /// one).
    started: bool,
    event: String,
    id: Option<String>,
    data: String,
    /// The event being built has a `data:` line (the next one is joined with `\n`).
    has_data: bool,
    /// The event being built has at least one field: a blank line dispatches it.
    has_fields: bool,
    /// Comment lines seen (heartbeats).
    pub comments: u64,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Parses `chunk`, appending every event it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) {
        if !self.started {
            // The stream's first bytes, held back until they are known not to be (a prefix of)
            // a byte-order mark, which may come split over chunks too.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(chunk);
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                self.line = head;
                return;
            }
            self.started = true;
            self.feed(head.strip_prefix(BOM).unwrap_or(&head), out);
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
        }
        while let Some(at) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.line.is_empty() {
                self.line_done(&chunk[..at], out);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&chunk[..at]);
                self.line_done(&line, out);
                line.clear();
                self.line = line; // keeps its capacity
            }
            let cr = chunk[at] == b'\r';
            chunk = &chunk[at + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.pending_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(chunk);
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            // The spec ignores ids containing NUL.
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            // `retry` and unknown fields: nothing to do for a counter.
            _ => {}
        }
        self.has_fields = true;
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if !self.has_fields {
            return;
        }
        let event = std::mem::take(&mut self.event);
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            id: self.id.take(),
            data: std::mem::take(&mut self.data),
        });
        self.has_data = false;
        self.has_fields = false;
    }
}

/// What reading the event stream measured.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Distinct `message` events received (all of them when they carry no id).
    pub received: u64,
    /// `message` events whose id had been seen before (redeliveries).
    pub duplicates: u64,
    /// Events of other types than `message` (other than `error`, which fails the measurement).
    pub other_events: u64,
    /// Comment lines (heartbeats).
    pub comments: u64,
    /// From sending the request to the first `message` event.
    pub first_event: Option<Duration>,
    /// From sending the request to the `expected`-th distinct message.
    pub elapsed: Duration,
}

/// Opens `GET path` with `Accept: text/event-stream` and reads `message` events until `expected`
/// distinct ones arrived; fails if the stream ends, an `error` event arrives, or `timeout` passes
/// first.
pub async fn receive(
    endpoint: &Endpoint,
    path: &str,
    expected: u64,
    timeout: Duration,
) -> Result<Delivery> {
    let what = format!("GET {path}");
    let mut sender = connect(endpoint).await?;
    let mut request = endpoint.request(Method::GET, uri(path)?, None, Bytes::new());
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let timed_out = |received: u64| {
        BenchError::Invalid(format!(
            "{what}: {received} of {expected} messages arrived within {timeout:?}"
        ))
    };
    let response = tokio::time::timeout_at(deadline, async {
        sender
            .ready()
            .await
            .context(|| format!("{what}: the connection closed"))?;
        sender.send_request(request).await.context(|| what.clone())
    })
    .await
    .map_err(|_| timed_out(0))??;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = response.into_body();
    if status != StatusCode::OK || !content_type.starts_with("text/event-stream") {
        let text = tokio::time::timeout_at(deadline, body.collect())
            .await
            .ok()
            .and_then(|b| b.ok())
            .map(|b| snippet(&b.to_bytes()))
            .unwrap_or_default();
        return Err(BenchError::Invalid(format!(
            "{what}: {status} ({content_type:?}) instead of an event stream: {text}"
        )));
    }

    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut ids = HashSet::new();
    let mut delivery = Delivery {
        received: 0,
        duplicates: 0,
        other_events: 0,
        comments: 0,
        first_event: None,
        elapsed: Duration::ZERO,
    };
    while delivery.received < expected {
        if interrupted() {
            return Err(BenchError::Interrupted);
        }
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(timed_out(delivery.received)),
            Ok(None) => {
                return Err(BenchError::Invalid(format!(
                    "{what}: the stream ended after {} of {expected} messages",
                    delivery.received
                )));
            }
            Ok(Some(frame)) => frame.context(|| format!("{what}: reading the stream"))?,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        parser.feed(&data, &mut events);
        let now = Instant::now();
        for event in events.drain(..) {
            match event.event.as_str() {
                "message" => {
                    let new = event.id.is_none_or(|id| ids.insert(id));
                    if !new {
                        delivery.duplicates += 1;
                    } else if delivery.received < expected {
                        delivery.received += 1;
                        delivery.first_event.get_or_insert(now - started);
                        if delivery.received == expected {
                            delivery.elapsed = now - started;
                        }
                    }
                }
                "error" => {
                    return Err(BenchError::Invalid(format!(
                        "{what}: an error event after {} messages: {}",
                        delivery.received, event.data
                    )));
                }
                _ => delivery.other_events += 1,
            }
        }
    }
    delivery.comments = parser.comments;
    // Dropping the body and the sender closes the connection: the server sees the client leave.
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::Poll;

    use hyper::body::{Frame, Incoming};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, u64) {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        (out, parser.comments)
    }

    fn message(id: &str, data: &str) -> SseEvent {
        SseEvent {
            event: "message".into(),
            id: Some(id.into()),
            data: data.into(),
        }
    }

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let stream = b": hello\n\nid: 1\nevent: message\ndata: {\"a\":1}\n\n\
                       id:2\ndata: first\ndata:second\n\n\
                       event: heartbeat\n\n\
                       data\n\n";
        let (events, comments) = parse_chunks(&[stream]);
        assert_eq!(comments, 1);
        assert_eq!(
            events,
            vec![
                message("1", "{\"a\":1}"),
                message("2", "first\nsecond"),
                SseEvent {
                    event: "heartbeat".into(),
                    id: None,
                    data: String::new()
                },
                SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new()
                },
            ]
        );
    }

    #[test]
    fn every_split_and_line_ending_gives_the_same_events() {
        let lf =
            "\u{feff}id: 7\nevent: message\ndata: x: y\n\n: ping\nid: 8\ndata:  two spaces\n\n";
        let expected = vec![message("7", "x: y"), message("8", " two spaces")];
        for text in [
            lf.to_owned(),
            lf.replace('\n', "\r\n"),
            lf.replace('\n', "\r"),
        ] {
            let bytes = text.as_bytes();
            for split in 0..=bytes.len() {
                let (a, b) = bytes.split_at(split);
                let (events, comments) = parse_chunks(&[a, b]);
                assert_eq!(events, expected, "{text:?} split at {split}");
                assert_eq!(comments, 1);
            }
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(parse_chunks(&singles).0, expected, "{text:?} byte by byte");
        }
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        let (events, _) = parse_chunks(&[b"id: 1\ndata: x\n"]);
        assert!(events.is_empty());
        let (events, _) = parse_chunks(&[b"id: 1\ndata: x\n", b"\n"]);
        assert_eq!(events, vec![message("1", "x")]);
    }

    /// A body that yields its chunks, then stays open without ending (a live event stream).
    struct LiveBody(std::vec::IntoIter<Bytes>);

    impl hyper::body::Body for LiveBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
            match self.get_mut().0.next() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Poll::Pending,
            }
        }
    }

    /// A server streaming `count` message events (one of them twice) after a heartbeat, in
    /// 7-byte chunks that split events anywhere, then holding the stream open.
    async fn sse_server(count: u64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(move |request: Request<Incoming>| async move {
                assert_eq!(request.headers()[header::ACCEPT], "text/event-stream");
                let mut text = String::from(": connected\n\n");
                for n in 0..count {
                    text.push_str(&format!(
                        "id: m{n}\r\nevent: message\r\ndata: {{\"n\":{n}}}\r\n\r\n"
                    ));
                    if n == 1 {
                        text.push_str("id: m0\nevent: message\ndata: again\n\n");
                    }
                }
                let chunks: Vec<Bytes> = text
                    .as_bytes()
                    .chunks(7)
                    .map(Bytes::copy_from_slice)
                    .collect();
                let mut response = Response::new(LiveBody(chunks.into_iter()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        addr
    }

    #[tokio::test]
    async fn receives_counts_and_dedups_a_live_stream() {
        let addr = sse_server(500).await;
        let endpoint = Endpoint::new(&addr, None).unwrap();
        let delivery = receive(&endpoint, "/events", 500, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(delivery.received, 500);
        assert_eq!(delivery.duplicates, 1);
        assert!(delivery.first_event.is_some_and(|f| f <= delivery.elapsed));
        assert_eq!(delivery.comments, 1);
    }

    #[tokio::test]
    async fn times_out_when_too_few_messages_arrive() {
        let addr = sse_server(3).await;
        let endpoint = Endpoint::new(&addr, None).unwrap();
        let error = receive(&endpoint, "/events", 10, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("3 of 10 messages"), "{error}");
    }
}
