//! Shared by the gateway API test binaries (`gateway_api`, `gateway_groups`, `gateway_sse`): a
//! `tern-gateway --local` with its own data directory, request helpers that assert success, and
//! independent implementations of what the tests check the gateway against (Java's
//! `String.hashCode`, base64).

use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};
use tern_core::broker::BrokerConfig;
use tern_tests::http::{Answer, Http};
use tern_tests::process::{ServerProcess, start_local_gateway};

/// A running `tern-gateway --local`. Dropping it kills the process, then removes its data.
pub struct Local {
    pub http: Http,
    pub process: ServerProcess,
    pub dir: tempfile::TempDir,
}

impl Local {
    /// Default gateway configuration, test broker (100 ms minimum invisibility).
    pub fn start() -> Local {
        Local::start_with(None, |_| {})
    }

    /// With a gateway configuration file holding `gateway_toml` (passed with `--config`) and the
    /// embedded broker's configuration edited by `tune`.
    pub fn start_with(gateway_toml: Option<&str>, tune: impl FnOnce(&mut BrokerConfig)) -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        Local::start_in(dir, gateway_toml, tune)
    }

    /// Starts (or restarts) a local gateway on the data in `dir`.
    pub fn start_in(
        dir: tempfile::TempDir,
        gateway_toml: Option<&str>,
        tune: impl FnOnce(&mut BrokerConfig),
    ) -> Local {
        let mut extra = Vec::new();
        let config = dir.path().join("gateway.toml");
        if let Some(text) = gateway_toml {
            std::fs::write(&config, text).expect("write gateway.toml");
            extra.push("--config".to_string());
            extra.push(config.display().to_string());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let process = start_local_gateway(dir.path(), &extra, tune);
        Local {
            http: Http::new(process.addr()),
            process,
            dir,
        }
    }

    pub fn addr(&self) -> &str {
        self.process.addr()
    }

    /// SIGTERM and the exit status; the data directory is handed back (for a restart).
    pub fn terminate(self) -> (ExitStatus, tempfile::TempDir) {
        let Local { process, dir, .. } = self;
        (process.terminate(), dir)
    }
}

/// Asserts a 200 and returns the JSON.
pub fn ok(answer: Answer) -> Value {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

/// The fields of a produce answer, exactly.
pub fn assert_produced_shape(produced: &Value) {
    let fields: BTreeSet<&str> = produced
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["messageId", "topic", "queueId", "queueOffset"]),
        "{produced}"
    );
    assert!(
        !produced["messageId"]
            .as_str()
            .expect("messageId")
            .is_empty(),
        "{produced}"
    );
}

/// `POST /v1/topics/{topic}/messages`, asserting 200.
pub async fn produce(http: &Http, topic: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    ok(http
        .post(
            &format!("/v1/topics/{topic}/messages"),
            headers,
            body.to_vec(),
        )
        .await)
}

/// `PUT /v1/topics/{topic}` with `queues` read/write queues.
pub async fn create_topic(http: &Http, topic: &str, queues: i32) -> Value {
    ok(http
        .json(
            Method::PUT,
            &format!("/v1/topics/{topic}"),
            &json!({"queues": queues, "perm": "rw"}),
        )
        .await)
}

pub async fn topic_info(http: &Http, topic: &str) -> Value {
    ok(http.get(&format!("/v1/topics/{topic}")).await)
}

/// One pull by offset, asserting 200.
pub async fn pull(http: &Http, topic: &str, queue: i64, offset: i64, max: u32) -> Value {
    ok(http
        .get(&format!(
            "/v1/topics/{topic}/queues/{queue}/messages?offset={offset}&max={max}"
        ))
        .await)
}

/// Every message of queue `queue` from its minimum offset up to its maximum offset, in order.
pub async fn pull_queue(http: &Http, topic: &str, queue: i64) -> Vec<Value> {
    let first = pull(http, topic, queue, 0, 32).await;
    let max = first["maxOffset"].as_i64().expect("maxOffset");
    let mut offset = first["minOffset"].as_i64().expect("minOffset");
    let mut messages = Vec::new();
    while offset < max {
        let page = pull(http, topic, queue, offset, 32).await;
        let got = page["messages"].as_array().expect("messages").clone();
        let next = page["nextOffset"].as_i64().expect("nextOffset");
        assert!(next > offset, "pull at {offset} did not advance: {page}");
        messages.extend(got);
        offset = next;
    }
    messages
}

/// Every message of every queue of `topic` (queue by queue).
pub async fn pull_all(http: &Http, topic: &str) -> Vec<Value> {
    let queues = topic_info(http, topic).await["queues"]
        .as_array()
        .expect("queues")
        .len();
    let mut all = Vec::new();
    for queue in 0..queues {
        all.extend(pull_queue(http, topic, queue as i64).await);
    }
    all
}

/// Pulls every queue until `n` messages are there (the ConsumeQueue is written just after the
/// produce answers), failing after `timeout`; returns them.
pub async fn pull_all_eventually(http: &Http, topic: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = pull_all(http, topic).await;
        if all.len() >= n || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn group_path(group: &str, topic: &str, verb: &str) -> String {
    format!("/v1/groups/{group}/topics/{topic}/{verb}")
}

/// `…/messages:receive` with `request`, asserting 200; the messages.
pub async fn receive(http: &Http, group: &str, topic: &str, request: Value) -> Vec<Value> {
    let answer = ok(http
        .post_json(&group_path(group, topic, "messages:receive"), &request)
        .await);
    answer["messages"].as_array().expect("messages").clone()
}

/// `…/messages:ack`, asserting 200; the per-receipt results.
pub async fn ack(http: &Http, group: &str, topic: &str, receipts: &[&str]) -> Vec<Value> {
    let answer = ok(http
        .post_json(
            &group_path(group, topic, "messages:ack"),
            &json!({ "receipts": receipts }),
        )
        .await);
    answer["results"].as_array().expect("results").clone()
}

pub fn receipt(message: &Value) -> &str {
    message["receipt"].as_str().expect("receipt")
}

pub fn bodies(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_string())
        .collect()
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// RocketMQ's `SelectMessageQueueByHash`: `abs(hashCode % n)` (Java's `%` truncates).
pub fn hash_queue(key: &str, queues: i32) -> i64 {
    i64::from((java_hash(key) % queues).abs())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard padded base64 (panics on anything else).
pub fn base64_decode(text: &str) -> Vec<u8> {
    assert_eq!(text.len() % 4, 0, "base64 length: {text}");
    let value = |c: u8| {
        BASE64
            .iter()
            .position(|&b| b == c)
            .unwrap_or_else(|| panic!("not base64: {text}")) as u32
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { value(c) })
            .fold(0u32, |n, v| (n << 6) | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[test]
fn helpers_match_known_values() {
    assert_eq!(java_hash("hello"), 99_162_322);
    assert_eq!(java_hash(""), 0);
    assert_eq!(base64_encode(b"\xff\xfe\x00\x80abc"), "//4AgGFiYw==");
    assert_eq!(base64_encode(b"hi"), "aGk=");
    assert_eq!(base64_decode("//4AgGFiYw=="), b"\xff\xfe\x00\x80abc");
    assert_eq!(base64_decode(&base64_encode(b"ab")), b"ab");
}
