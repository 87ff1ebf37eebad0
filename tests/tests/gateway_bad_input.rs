//! The gateway against bad input, end to end: a real `tern-gateway --local` with small limits, and
//! requests a correct client never sends. Every refusal must be a clear answer (a problem+json,
//! or what hyper itself answers below the router) and must store nothing.
//!
//! Slow and oversized clients are tested in `gateway_slow_clients.rs`.

#[allow(dead_code)] // shared with the other gateway tests; each uses a part
mod gateway_support;

use std::time::{Duration, Instant};

use gateway_support::*;
use hyper::Method;
use serde_json::{Value, json};
use tern_tests::http::{Answer, Http, RawConn, RawOutcome};

fn gateway() -> TestGateway {
    TestGateway::local(&limits_section())
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
