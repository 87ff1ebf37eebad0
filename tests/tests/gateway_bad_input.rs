//! The gateway against bad input, end to end: a real `tern-gateway --local` with small limits, and
//! requests a correct client never sends. Every refusal must be a clear answer (a problem+json,
//! or what hyper itself answers below the router) and must store nothing; slow or oversized
//! clients must be cut off without harming anyone else.

#[allow(dead_code)] // shared with gateway_auth; each uses a part
mod gateway_support;

use std::time::{Duration, Instant};

use gateway_support::*;
use hyper::Method;
use serde_json::{Value, json};
use tern_tests::http::{Answer, Http, RawConn, RawOutcome};

const MAX_MESSAGE: usize = 1024;
const MAX_JSON: usize = 2048;
const MAX_RECEIPTS: usize = 4;
const MAX_BATCH: usize = 8;
const MAX_HEADER_BYTES: usize = 8192;
const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
const BODY_TIMEOUT: Duration = Duration::from_millis(1000);

fn gateway() -> TestGateway {
    TestGateway::local(&format!(
        "[limits]\nmax_message_bytes = {MAX_MESSAGE}\nmax_json_bytes = {MAX_JSON}\n\
         max_receipts = {MAX_RECEIPTS}\nmax_batch_messages = {MAX_BATCH}\nmax_header_bytes = {MAX_HEADER_BYTES}\nmax_headers = 100\n\
         header_read_timeout_ms = {}\nbody_read_timeout_ms = {}\n",
        HEADER_TIMEOUT.as_millis(),
        BODY_TIMEOUT.as_millis(),
    ))
}

/// Creates topic `topic` with two queues.
async fn create_topic(http: &Http, topic: &str) {
    let answer = http
        .json(
            Method::PUT,
            &format!("/v1/topics/{topic}"),
            &json!({"queues": 2}),
        )
        .await;
    ok(&answer, &format!("PUT /v1/topics/{topic}"));
}

/// Messages stored in `topic`: the sum of its queues' max offsets.
async fn stored(http: &Http, topic: &str) -> i64 {
    let info = ok(
        &http.get(&format!("/v1/topics/{topic}")).await,
        "topic info",
    );
    info["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["maxOffset"].as_i64().expect("maxOffset"))
        .sum()
}

/// Asserts that `topic` holds exactly `expected` messages. The broker indexes a message shortly
/// after acknowledging it, so this waits up to 10 s for the count to reach `expected`; a count
/// above it fails at once.
async fn assert_stored(http: &Http, topic: &str, expected: i64, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = stored(http, topic).await;
        assert!(
            count <= expected,
            "{case}: {count} messages in {topic}, expected {expected}"
        );
        if count == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: {count} messages in {topic}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `topic` holds its `expected` messages and nothing more: produces a marker and
/// waits until it is indexed. The broker indexes messages in the order it stored them, so
/// anything a refused request had stored would be counted by then.
async fn assert_nothing_more(http: &Http, topic: &str, expected: i64, case: &str) {
    ok(
        &http
            .post(&format!("/v1/topics/{topic}/messages"), &[], "marker")
            .await,
        "marker",
    );
    assert_stored(http, topic, expected + 1, case).await;
}

/// Every topic the gateway lists.
async fn topics(http: &Http) -> Value {
    ok(&http.get("/v1/topics").await, "GET /v1/topics")["topics"].clone()
}

/// Sends a raw request and reads the answer (panics when the connection closes without one).
async fn raw_request(addr: &str, request: &[u8], case: &str) -> Answer {
    let mut conn = RawConn::connect(addr).await;
    conn.write(request)
        .await
        .unwrap_or_else(|e| panic!("{case}: write: {e}"));
    match conn.read(Duration::from_secs(10)).await {
        RawOutcome::Answer(answer) => answer,
        other => panic!("{case}: no answer: {other:?}"),
    }
}

/// A chunked request: `body` in chunks of at most 512 bytes.
fn chunked(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A batch whose JSON encoding is `size` bytes or more.
fn batch_of_size(size: usize) -> Vec<u8> {
    let filler = "x".repeat(size);
    serde_json::to_vec(&json!({"messages": [{"body": "a", "tag": "t"}], "pad": filler})).unwrap()
}

#[tokio::test]
async fn oversize_bodies_get_413_and_store_nothing() {
    let gw = gateway();
    let http = &gw.http;
    let addr = gw.process.addr().to_string();
    create_topic(http, "t").await;

    // The limit itself is accepted.
    ok(
        &http
            .post("/v1/topics/t/messages", &[], vec![b'a'; MAX_MESSAGE])
            .await,
        "a body of exactly max_message_bytes",
    );
    assert_stored(http, "t", 1, "the accepted body").await;

    // One byte over, with Content-Length.
    let answer = http
        .post("/v1/topics/t/messages", &[], vec![b'a'; MAX_MESSAGE + 1])
        .await;
    assert_problem(&answer, 413, "too-large", "raw body, Content-Length");
    // A declared length far over the limit is refused before any of the body is sent.
    let head = "POST /v1/topics/t/messages HTTP/1.1\r\nHost: gateway\r\nContent-Length: 1073741824\r\n\r\n";
    let answer = raw_request(&addr, head.as_bytes(), "declared 1 GiB").await;
    assert_problem(&answer, 413, "too-large", "declared 1 GiB");
    // Chunked: no length up front, the limit applies while reading.
    let request = chunked(
        "POST",
        "/v1/topics/t/messages",
        "application/octet-stream",
        &[b'a'; MAX_MESSAGE + 1],
    );
    let answer = raw_request(&addr, &request, "raw body, chunked").await;
    assert_problem(&answer, 413, "too-large", "raw body, chunked");

    // JSON bodies have their own limit, with and without Content-Length.
    let big = batch_of_size(MAX_JSON);
    let answer = http
        .send(
            Method::POST,
            "/v1/topics/t/messages:batch",
            &[("content-type", "application/json")],
            big.clone(),
        )
        .await;
    assert_problem(&answer, 413, "too-large", "JSON, Content-Length");
    let request = chunked(
        "POST",
        "/v1/topics/t/messages:batch",
        "application/json",
        &big,
    );
    let answer = raw_request(&addr, &request, "JSON, chunked").await;
    assert_problem(&answer, 413, "too-large", "JSON, chunked");
    let receipts: Vec<String> = (0..3).map(|_| "r".repeat(MAX_JSON / 2)).collect();
    let answer = http
        .post_json(
            "/v1/groups/g/topics/t/messages:ack",
            &json!({ "receipts": receipts }),
        )
        .await;
    assert_problem(&answer, 413, "too-large", "ack list");

    // In a batch, an entry over max_message_bytes (after decoding) fails alone.
    let over = "b".repeat(MAX_MESSAGE + 1);
    let results = ok(
        &http
            .post_json(
                "/v1/topics/t/messages:batch",
                &json!({"messages": [{"body": "small"}, {"body": over}]}),
            )
            .await,
        "batch with one oversize entry",
    );
    assert_eq!(results["results"][0]["status"], 200, "{results}");
    assert_eq!(results["results"][1]["status"], 413, "{results}");
    assert_nothing_more(http, "t", 2, "after the oversize bodies").await;
    gw.stop().await;
}

#[tokio::test]
async fn malformed_json_gets_400_and_other_media_types_415() {
    let gw = gateway();
    let http = &gw.http;
    create_topic(http, "t").await;
    let post = |path: &'static str, content_type: Option<&'static str>, body: &'static str| {
        let http = http.clone();
        async move {
            let headers: Vec<(&str, &str)> = content_type
                .map(|c| vec![("content-type", c)])
                .unwrap_or_default();
            http.send(Method::POST, path, &headers, body).await
        }
    };
    let batch = "/v1/topics/t/messages:batch";
    let json = Some("application/json");
    for (case, body, slug) in [
        ("truncated JSON", r#"{"messages": ["#, "invalid-json"),
        ("not JSON", "messages=1", "invalid-json"),
        ("empty body", "", "invalid-json"),
        (
            "trailing garbage",
            r#"{"messages": [{"body": "a"}]} x"#,
            "invalid-json",
        ),
        (
            "messages not a list",
            r#"{"messages": "a"}"#,
            "invalid-field",
        ),
        (
            "body not a string",
            r#"{"messages": [{"body": 5}]}"#,
            "invalid-field",
        ),
        (
            "tag not a string",
            r#"{"messages": [{"body": "a", "tag": ["x"]}]}"#,
            "invalid-field",
        ),
        (
            "unknown entry field",
            r#"{"messages": [{"body": "a", "colour": "red"}]}"#,
            "invalid-field",
        ),
        (
            "unknown top-level field",
            r#"{"messages": [{"body": "a"}], "extra": 1}"#,
            "invalid-field",
        ),
        ("missing messages", "{}", "invalid-field"),
        (
            "a list, not an object",
            r#"[{"body": "a"}]"#,
            "invalid-field",
        ),
        (
            "properties not strings",
            r#"{"messages": [{"body": "a", "properties": {"n": 1}}]}"#,
            "invalid-field",
        ),
    ] {
        assert_problem(&post(batch, json, body).await, 400, slug, case);
    }
    let receive = "/v1/groups/g/topics/t/messages:receive";
    for (case, body) in [
        ("max as a string", r#"{"max": "3"}"#),
        ("unknown field", r#"{"maxMessages": 3}"#),
        ("max fractional", r#"{"max": 1.5}"#),
    ] {
        assert_problem(&post(receive, json, body).await, 400, "invalid-field", case);
    }
    assert_problem(
        &post(
            "/v1/groups/g/topics/t/messages:ack",
            json,
            r#"{"receipts": "abc"}"#,
        )
        .await,
        400,
        "invalid-field",
        "receipts not a list",
    );
    assert_problem(
        &http
            .json(Method::PUT, "/v1/topics/t", &json!({"queues": "2"}))
            .await,
        400,
        "invalid-field",
        "queues as a string",
    );

    // Every JSON endpoint refuses other media types with 415, before reading the body.
    let body = r#"{"messages": [{"body": "a"}]}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        Some("application/jsonx"),
        Some("json"),
    ] {
        let case = format!("batch as {content_type:?}");
        assert_problem(
            &post(batch, content_type, body).await,
            415,
            "unsupported-media-type",
            &case,
        );
    }
    for (method, path) in [
        (Method::POST, "/v1/groups/g/topics/t/messages:receive"),
        (Method::POST, "/v1/groups/g/topics/t/messages:ack"),
        (Method::POST, "/v1/groups/g/topics/t/messages:nack"),
        (
            Method::POST,
            "/v1/groups/g/topics/t/messages:changeVisibility",
        ),
        (Method::POST, "/v1/groups/g/topics/t/offsets:reset"),
        (Method::PUT, "/v1/topics/t2"),
        (Method::PUT, "/v1/groups/g"),
    ] {
        let answer = http
            .send(
                method.clone(),
                path,
                &[("content-type", "text/plain")],
                "{}",
            )
            .await;
        assert_problem(
            &answer,
            415,
            "unsupported-media-type",
            &format!("{method} {path}"),
        );
    }
    // A charset parameter is fine (the control: these refusals are about the media type).
    let answer = http
        .send(
            Method::POST,
            batch,
            &[("content-type", "application/json; charset=utf-8")],
            body,
        )
        .await;
    ok(&answer, "application/json; charset=utf-8");
    assert_nothing_more(http, "t", 1, "only the control message").await;
    assert_eq!(topics(http).await, json!(["t"]), "no topic t2");
    gw.stop().await;
}

#[tokio::test]
async fn invalid_names_get_400_and_create_nothing() {
    let gw = gateway();
    let http = &gw.http;
    create_topic(http, "t").await;
    let long = "n".repeat(128);
    for name in [
        long.as_str(),
        "a%25b",
        "%C3%BCber",
        "%E2%9C%93",
        "a%20b",
        "a.b",
        "a%3Ab",
        "a%7Cb",
        "%25RETRY%25g",
    ] {
        let topic_paths = [
            (Method::POST, format!("/v1/topics/{name}/messages"), "x"),
            (
                Method::POST,
                format!("/v1/topics/{name}/messages:batch"),
                r#"{"messages": [{"body": "x"}]}"#,
            ),
            (
                Method::GET,
                format!("/v1/topics/{name}/queues/0/messages?offset=0"),
                "",
            ),
            (Method::GET, format!("/v1/topics/{name}/messages?key=k"), ""),
            (Method::GET, format!("/v1/topics/{name}"), ""),
            (Method::PUT, format!("/v1/topics/{name}"), "{}"),
            (Method::DELETE, format!("/v1/topics/{name}"), ""),
            (Method::GET, format!("/v1/topics/{name}/events"), ""),
            (
                Method::POST,
                format!("/v1/groups/g/topics/{name}/messages:receive"),
                "{}",
            ),
            (
                Method::GET,
                format!("/v1/groups/g/topics/{name}/offsets"),
                "",
            ),
        ];
        for (method, path, body) in topic_paths {
            let answer = http
                .send(
                    method.clone(),
                    &path,
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
            assert_problem(&answer, 400, "invalid-topic", &format!("{method} {path}"));
        }
        let group_paths = [
            (
                Method::POST,
                format!("/v1/groups/{name}/topics/t/messages:receive"),
                "{}",
            ),
            (
                Method::POST,
                format!("/v1/groups/{name}/topics/t/messages:ack"),
                r#"{"receipts": ["r"]}"#,
            ),
            (
                Method::GET,
                format!("/v1/groups/{name}/topics/t/offsets"),
                "",
            ),
            (
                Method::GET,
                format!("/v1/groups/{name}/topics/t/events"),
                "",
            ),
            (Method::PUT, format!("/v1/groups/{name}"), "{}"),
        ];
        for (method, path, body) in group_paths {
            let answer = http
                .send(
                    method.clone(),
                    &path,
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
            assert_problem(&answer, 400, "invalid-group", &format!("{method} {path}"));
        }
    }
    assert_eq!(topics(http).await, json!(["t"]));
    assert_nothing_more(http, "t", 0, "after invalid names").await;
    gw.stop().await;
}

/// Receives one message of `topic` for group `g`; returns its receipt.
async fn receive_one(http: &Http, topic: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let answer = http
            .post_json(
                &format!("/v1/groups/g/topics/{topic}/messages:receive"),
                &json!({"max": 1, "waitSeconds": 1, "invisibleSeconds": 60}),
            )
            .await;
        let json = ok(&answer, "receive");
        if let Some(m) = json["messages"].as_array().and_then(|m| m.first()) {
            return m["receipt"].as_str().unwrap().to_string();
        }
    }
    panic!("no message on {topic}");
}

#[tokio::test]
async fn out_of_range_numbers_and_bad_headers_get_400() {
    let gw = gateway();
    let http = &gw.http;
    create_topic(http, "t").await;
    ok(&http.post("/v1/topics/t/messages", &[], "m1").await, "m1");

    // Pull parameters.
    for query in [
        "offset=0&max=-1",
        "offset=0&max=0",
        "offset=0&max=33",
        "offset=0&max=99999999999999999999",
        "offset=0&wait=-1",
        "offset=0&wait=31",
        "offset=0&wait=18446744073709551616",
        "offset=-1",
        "offset=abc",
        "offset=9223372036854775808",
        "max=1",
        "offset=0&color=red",
    ] {
        let path = format!("/v1/topics/t/queues/0/messages?{query}");
        let answer = http.get(&path).await;
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        answer.problem(400);
    }

    // Receive parameters.
    for body in [
        json!({"max": -1}),
        json!({"max": 0}),
        json!({"max": 33}),
        json!({"max": 4294967296u64}),
        json!({"invisibleSeconds": 0}),
        json!({"invisibleSeconds": -1}),
        json!({"invisibleSeconds": 43201}),
        json!({"invisibleSeconds": 1e30}),
        json!({"waitSeconds": 31}),
        json!({"waitSeconds": -1}),
    ] {
        let answer = http
            .post_json("/v1/groups/g/topics/t/messages:receive", &body)
            .await;
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        answer.problem(400);
    }

    // Nack delays and visibility changes out of range leave the message as it was.
    let receipt = receive_one(http, "t").await;
    for delay in [json!(-1), json!(43201), json!(1e30), json!("5")] {
        let answer = http
            .post_json(
                "/v1/groups/g/topics/t/messages:nack",
                &json!({"receipts": [receipt], "delaySeconds": delay}),
            )
            .await;
        assert_eq!(answer.status, 400, "delaySeconds {delay}: {answer:?}");
        answer.problem(400);
    }
    for invisible in [json!(-1), json!(43201), json!(null)] {
        let answer = http
            .post_json(
                "/v1/groups/g/topics/t/messages:changeVisibility",
                &json!({"receipt": receipt, "invisibleSeconds": invisible}),
            )
            .await;
        assert_eq!(
            answer.status, 400,
            "invisibleSeconds {invisible}: {answer:?}"
        );
        answer.problem(400);
    }
    // The receipt is still the current one: nothing was nacked or renewed.
    let acked = ok(
        &http
            .post_json(
                "/v1/groups/g/topics/t/messages:ack",
                &json!({"receipts": [receipt]}),
            )
            .await,
        "ack after refused nacks",
    );
    assert_eq!(acked["results"][0]["status"], 200, "{acked}");

    // Produce headers.
    let far = (now() + 10 * 24 * 3600) * 1000;
    let far = far.to_string();
    let long_key = "k".repeat(129);
    let bad_headers: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("delay without unit", vec![("tern-delay", "10")]),
        ("negative delay", vec![("tern-delay", "-1s")]),
        ("fractional delay", vec![("tern-delay", "1.5s")]),
        ("unknown unit", vec![("tern-delay", "10x")]),
        (
            "overflowing delay",
            vec![("tern-delay", "99999999999999999999d")],
        ),
        (
            "delay beyond the broker's maximum",
            vec![("tern-delay", "4d")],
        ),
        (
            "deliver-at not a number",
            vec![("tern-deliver-at", "tomorrow")],
        ),
        ("negative deliver-at", vec![("tern-deliver-at", "-1")]),
        ("fractional deliver-at", vec![("tern-deliver-at", "1.5")]),
        (
            "deliver-at beyond the broker's maximum",
            vec![("tern-deliver-at", far.as_str())],
        ),
        (
            "delay and deliver-at together",
            vec![("tern-delay", "10s"), ("tern-deliver-at", "1")],
        ),
        (
            "idempotency key too long",
            vec![("idempotency-key", long_key.as_str())],
        ),
        (
            "idempotency key with a space",
            vec![("idempotency-key", "a b")],
        ),
        ("tag with a |", vec![("tern-tag", "a|b")]),
        ("key with a space", vec![("tern-keys", "a b")]),
    ];
    for (case, headers) in &bad_headers {
        let answer = http.post("/v1/topics/t/messages", headers, "bad").await;
        assert_eq!(answer.status, 400, "{case}: {answer:?}");
        answer.problem(400);
    }
    let long_batch_key = "k".repeat(123);
    for (case, key) in [
        ("batch idempotency key too long", long_batch_key.as_str()),
        ("batch idempotency key with a space", "a b"),
    ] {
        let answer = http
            .send(
                Method::POST,
                "/v1/topics/t/messages:batch",
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                r#"{"messages": [{"body": "a"}, {"body": "b"}]}"#,
            )
            .await;
        assert_problem(&answer, 400, "invalid-idempotency-key", case);
    }
    // Bad batch entries fail alone; the good ones are stored.
    let results = ok(
        &http
            .post_json(
                "/v1/topics/t/messages:batch",
                &json!({"messages": [
                    {"body": "ok-1"},
                    {"body": "!!not base64!!", "bodyEncoding": "base64"},
                    {"body": "x", "bodyEncoding": "hex"},
                    {"body": "x", "delay": "10x"},
                    {"body": "x", "deliverAt": -5},
                    {"body": "x", "tag": ""},
                    {"body": "aGVsbG8=", "bodyEncoding": "base64"},
                ]}),
            )
            .await,
        "batch with bad entries",
    );
    let statuses: Vec<i64> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 400, 400, 400, 400, 400, 200], "{results}");
    assert!(
        results["results"][1]["error"]["type"]
            .as_str()
            .unwrap()
            .ends_with("/invalid-base64"),
        "{results}"
    );
    for (case, body) in [
        ("empty batch", json!({"messages": []})),
        (
            "too many entries",
            json!({"messages": vec![json!({"body": "x"}); MAX_BATCH + 1]}),
        ),
    ] {
        let answer = http.post_json("/v1/topics/t/messages:batch", &body).await;
        assert_problem(&answer, 400, "invalid-batch", case);
    }
    assert_nothing_more(http, "t", 3, "m1 and the two good entries").await;
    gw.stop().await;
}

#[tokio::test]
async fn reserved_properties_are_refused_and_never_take_effect() {
    let gw = gateway();
    let http = &gw.http;
    create_topic(http, "t").await;
    let soon = ((now() + 2) * 1000).to_string();
    for (name, value) in [
        ("tern-prop-DELAY", "1"),
        ("tern-prop-delay", "1"),
        ("tern-prop-TIMER_DELIVER_MS", soon.as_str()),
        ("tern-prop-TIMER_DELAY_SEC", "1"),
        ("tern-prop-__STARTDELIVERTIME", soon.as_str()),
        ("tern-prop-UNIQ_KEY", "AC110001000000000000000000000000"),
        ("tern-prop-TRAN_MSG", "true"),
        ("tern-prop-REAL_TOPIC", "other"),
        ("tern-prop-a.b", "1"),
    ] {
        let answer = http
            .post("/v1/topics/t/messages", &[(name, value)], "reserved")
            .await;
        assert_problem(&answer, 400, "invalid-property", name);
    }
    let results = ok(
        &http
            .post_json(
                "/v1/topics/t/messages:batch",
                &json!({"messages": [
                    {"body": "delayed?", "properties": {"DELAY": "1"}},
                    {"body": "timed?", "properties": {"TIMER_DELIVER_MS": soon}},
                    {"body": "plain", "properties": {"color": "red"}},
                ]}),
            )
            .await,
        "batch with reserved properties",
    );
    let statuses: Vec<i64> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 400, 200], "{results}");
    ok(
        &http
            .post(
                "/v1/topics/t/messages",
                &[("tern-prop-color", "blue")],
                "plain-2",
            )
            .await,
        "a user property",
    );

    // Delayed messages would first go to the broker's schedule topics and reach `t` after 1 to
    // 2 s: wait past that, then only the two plain messages may be there, each delivered at once.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_stored(http, "t", 2, "the two plain messages").await;
    let mut bodies = Vec::new();
    for q in 0..2 {
        let pulled = ok(
            &http
                .get(&format!("/v1/topics/t/queues/{q}/messages?offset=0&max=32"))
                .await,
            "pull",
        );
        for m in pulled["messages"].as_array().unwrap() {
            bodies.push(m["body"].as_str().unwrap().to_string());
            let color = m["properties"]["color"].as_str().unwrap();
            assert!(["red", "blue"].contains(&color), "{m}");
            // Delivered at once: stored well before the wait above ended.
            assert!(
                m["storeTimestamp"].as_i64().unwrap() - m["bornTimestamp"].as_i64().unwrap() < 1000,
                "{m}"
            );
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["plain", "plain-2"]);
    assert_nothing_more(http, "t", 2, "after reserved properties").await;
    gw.stop().await;
}

#[tokio::test]
async fn unknown_things_get_404_405_and_receipt_lists_are_bounded() {
    let gw = gateway();
    let http = &gw.http;
    create_topic(http, "t").await;
    ok(&http.post("/v1/topics/t/messages", &[], "m").await, "m");

    for path in [
        "/v1/topics/t/queues/2/messages?offset=0",
        "/v1/topics/t/queues/99/messages?offset=0",
        "/v1/topics/t/queues/-1/messages?offset=0",
    ] {
        assert_problem(&http.get(path).await, 404, "not-found", path);
    }
    assert_problem(
        &http.get("/v1/topics/t/queues/abc/messages?offset=0").await,
        400,
        "invalid-path",
        "queue abc",
    );
    for path in [
        "/v1/nothing",
        "/v2/topics",
        "/",
        "/v1/topics/t/messages/x/y",
    ] {
        assert_problem(&http.get(path).await, 404, "not-found", path);
    }
    for (method, path) in [
        (Method::POST, "/v1/topics"),
        (Method::DELETE, "/v1/topics/t/messages"),
        (Method::PATCH, "/v1/topics/t"),
        (Method::GET, "/v1/groups/g/topics/t/messages:ack"),
        (Method::PUT, "/v1/topics/t/messages:batch"),
        (Method::POST, "/healthz"),
    ] {
        let answer = http.send(method.clone(), path, &[], "").await;
        assert_problem(
            &answer,
            405,
            "method-not-allowed",
            &format!("{method} {path}"),
        );
    }

    let receipt = receive_one(http, "t").await;
    for (case, receipts) in [
        ("no receipts", json!([])),
        (
            "too many receipts",
            json!(vec![receipt.clone(); MAX_RECEIPTS + 1]),
        ),
    ] {
        for action in ["ack", "nack"] {
            let answer = http
                .post_json(
                    &format!("/v1/groups/g/topics/t/messages:{action}"),
                    &json!({ "receipts": receipts }),
                )
                .await;
            assert_problem(
                &answer,
                400,
                "invalid-receipts",
                &format!("{case}: {action}"),
            );
        }
    }
    let acked = ok(
        &http
            .post_json(
                "/v1/groups/g/topics/t/messages:ack",
                &json!({"receipts": vec![receipt; MAX_RECEIPTS]}),
            )
            .await,
        "the most receipts",
    );
    assert_eq!(acked["results"][0]["status"], 200, "{acked}");
    assert_nothing_more(http, "t", 1, "after unknown things").await;
    gw.stop().await;
}

/// Asserts the connection is closed (with no answer, or hyper's `status`) within `within`, and
/// not before `not_before`.
async fn assert_cut_off(conn: &mut RawConn, started: Instant, not_before: Duration, case: &str) {
    let within = Duration::from_secs(3);
    match conn.read(within).await {
        RawOutcome::Closed => {}
        RawOutcome::Answer(answer) => {
            assert_eq!(answer.status, 408, "{case}: {answer:?}");
            assert!(
                conn.closed_within(within).await,
                "{case}: still open after 408"
            );
        }
        RawOutcome::Open => panic!("{case}: still open after {within:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= not_before && elapsed <= within + Duration::from_millis(500),
        "{case}: closed after {elapsed:?}"
    );
}

#[tokio::test]
async fn slow_and_oversized_clients_are_cut_off() {
    let gw = gateway();
    let http = &gw.http;
    let addr = gw.process.addr().to_string();
    create_topic(http, "t").await;
    let early = HEADER_TIMEOUT / 2;

    // Slowloris: part of a head, then nothing.
    let mut partial = RawConn::connect(&addr).await;
    let started = Instant::now();
    partial
        .write(b"POST /v1/topics/t/messages HTTP/1.1\r\nHost: gateway\r\nContent-Le")
        .await
        .unwrap();
    // Connected, nothing sent at all.
    let mut silent = RawConn::connect(&addr).await;
    let silent_started = Instant::now();
    // An idle keep-alive connection after one good request.
    let mut idle = RawConn::connect(&addr).await;
    idle.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    match idle.read(Duration::from_secs(5)).await {
        RawOutcome::Answer(answer) => assert_eq!(answer.status, 200, "{answer:?}"),
        other => panic!("healthz: {other:?}"),
    }
    let idle_started = Instant::now();
    // A body that stops short of its Content-Length, and a chunked one that stops mid-way.
    let mut stalled = RawConn::connect(&addr).await;
    stalled
        .write(b"POST /v1/topics/t/messages HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let stalled_started = Instant::now();
    let mut stalled_chunked = RawConn::connect(&addr).await;
    stalled_chunked
        .write(
            b"POST /v1/topics/t/messages:batch HTTP/1.1\r\nHost: gateway\r\n\
              Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\n{\"mes\r\n",
        )
        .await
        .unwrap();
    let chunked_started = Instant::now();

    // Meanwhile the gateway serves others.
    ok(
        &http.get("/v1/topics").await,
        "a normal request during the slow ones",
    );

    assert_cut_off(&mut partial, started, early, "partial head").await;
    assert_cut_off(&mut silent, silent_started, early, "silent connection").await;
    assert_cut_off(&mut idle, idle_started, early, "idle keep-alive").await;
    for (conn, started, case) in [
        (&mut stalled, stalled_started, "stalled body"),
        (
            &mut stalled_chunked,
            chunked_started,
            "stalled chunked body",
        ),
    ] {
        // The gateway's own body timeout: a 408 problem, then the connection is closed (the
        // rest of the body will never be read).
        match conn.read(Duration::from_secs(3)).await {
            RawOutcome::Answer(answer) => {
                assert_problem(&answer, 408, "body-timeout", case);
            }
            other => panic!("{case}: {other:?}"),
        }
        assert!(
            conn.closed_within(Duration::from_secs(3)).await,
            "{case}: still open after the 408"
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= BODY_TIMEOUT / 2 && elapsed <= Duration::from_millis(3500),
            "{case}: after {elapsed:?}"
        );
    }

    // Heads over max_header_bytes, or with more than max_headers headers: hyper answers 431
    // itself (an empty body, below the router) and closes the connection.
    let big_value = "v".repeat(64 * 1024);
    let just_over = "v".repeat(MAX_HEADER_BYTES + 512);
    let many: String = (0..150).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    for (case, extra) in [
        ("a 64 KiB header", format!("X-Big: {big_value}\r\n")),
        (
            "a head just over the limit",
            format!("X-Big: {just_over}\r\n"),
        ),
        ("150 headers", many),
    ] {
        let request = format!("GET /v1/topics HTTP/1.1\r\nHost: gateway\r\n{extra}\r\n");
        let mut conn = RawConn::connect(&addr).await;
        let _ = conn.write(request.as_bytes()).await;
        match conn.read(Duration::from_secs(5)).await {
            RawOutcome::Answer(answer) => assert_eq!(answer.status, 431, "{case}: {answer:?}"),
            other => panic!("{case}: {other:?}"),
        }
        assert!(
            conn.closed_within(Duration::from_secs(3)).await,
            "{case}: connection kept open"
        );
    }
    // The control: a head under the limit is served.
    let under = "v".repeat(MAX_HEADER_BYTES - 1024);
    let answer = http
        .send(Method::GET, "/v1/topics", &[("x-big", under.as_str())], "")
        .await;
    ok(&answer, "a head under the limit");

    // Nothing was stored, and the gateway still serves normal requests and stops cleanly.
    assert_nothing_more(http, "t", 0, "after the slow clients").await;
    gw.stop().await;
}

#[tokio::test]
async fn a_head_limit_below_what_hyper_can_enforce_is_refused_at_start() {
    // hyper's HTTP/1 read buffer is at least 8 KiB, and that buffer is what bounds a request head:
    // a smaller max_header_bytes cannot be enforced, so the gateway must refuse it rather than
    // silently serve larger heads.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[limits]\nmax_header_bytes = 4096\n").unwrap();
    let mut child = std::process::Command::new(tern_tests::process::binary("tern-gateway"))
        .args([
            "--local",
            "--listen",
            "127.0.0.1:0",
            "--namesrv-listen",
            "127.0.0.1:0",
        ])
        .args(["--broker-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("local"))
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tern-gateway");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("tern-gateway started with max_header_bytes = 4096, which it cannot enforce");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("max_header_bytes"), "{stderr}");
}

#[tokio::test]
async fn http2_requests_meet_the_same_limits() {
    let gw = gateway();
    let h2 = Http::new_h2c(gw.process.addr());
    create_topic(&h2, "t").await;
    let answer = h2
        .post("/v1/topics/t/messages", &[], vec![b'a'; MAX_MESSAGE + 1])
        .await;
    assert_problem(&answer, 413, "too-large", "h2 oversize body");
    let answer = h2
        .send(
            Method::POST,
            "/v1/topics/t/messages:batch",
            &[("content-type", "text/plain")],
            "{}",
        )
        .await;
    assert_problem(&answer, 415, "unsupported-media-type", "h2 media type");

    // A header list over max_header_bytes: 431 for that request alone.
    let over = "v".repeat(MAX_HEADER_BYTES + 512);
    let answer = h2
        .send(Method::GET, "/v1/topics", &[("x-big", over.as_str())], "")
        .await;
    assert_eq!(answer.status, 431, "h2 head over the limit: {answer:?}");
    ok(&h2.get("/v1/topics").await, "h2 after a 431");
    // Far over it, the h2 stack drops the whole connection (GOAWAY, ENHANCE_YOUR_CALM).
    let way_over = "v".repeat(64 * 1024);
    match h2
        .try_send(
            Method::GET,
            "/v1/topics",
            &[("x-big", way_over.as_str())],
            "",
        )
        .await
    {
        Ok(answer) => assert_eq!(answer.status, 431, "h2 64 KiB header: {answer:?}"),
        Err(e) => assert!(e.contains("GoAway"), "h2 64 KiB header: {e}"),
    }
    // More headers than max_headers (HTTP/2 has no count of its own, only the list size).
    let many: Vec<(String, String)> = (0..150)
        .map(|i| (format!("x-h{i}"), i.to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let answer = h2.send(Method::GET, "/v1/topics", &many, "").await;
    assert_problem(&answer, 431, "too-many-headers", "h2 with 150 headers");

    // The gateway still serves HTTP/2 (on a new connection where the old one was dropped).
    let h2 = Http::new_h2c(gw.process.addr());
    ok(&h2.get("/v1/topics").await, "h2 afterwards");
    assert_nothing_more(&h2, "t", 0, "after the HTTP/2 refusals").await;
    gw.stop().await;
}
