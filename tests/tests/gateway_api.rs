//! The gateway's HTTP API from outside, through `tern-gateway --local`: produce (single, batch,
//! delayed, idempotent) and ordering keys. Pull, lookups, HTTP/2 and the operational endpoints
//! are in `gateway_reads.rs`, consumer groups and admin in `gateway_groups.rs`, event streams in
//! `gateway_sse.rs`.

#[path = "gateway/support.rs"]
#[allow(dead_code)] // shared by several test binaries; each uses a part
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tern_tests::http::Http;

#[tokio::test]
async fn produce_with_every_header_reads_back_the_same_message() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "orders", 8).await;
    let before = now_ms();
    let answer = http
        .post(
            "/v1/topics/orders/messages",
            &[
                ("tern-tag", "created"),
                ("tern-keys", "order-17, customer-42"),
                ("tern-ordering-key", "customer-42"),
                ("Tern-Prop-Color", "red"),
                ("tern-prop-trace_id", "t-1"),
                ("idempotency-key", "all-headers-1"),
                ("content-type", "text/plain"),
            ],
            "first order",
        )
        .await;
    let after = now_ms();
    assert_eq!(answer.header("tern-idempotent-replayed"), None);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let produced = ok(answer);
    assert_produced_shape(&produced);
    assert_eq!(produced["topic"], "orders");
    // java "customer-42".hashCode() = -1772111155; -1772111155 % 8 = -3 → queue 3.
    assert_eq!(produced["queueId"], 3);
    assert_eq!(produced["queueOffset"], 0);
    let id = produced["messageId"].as_str().unwrap();

    // What every read path must show.
    let check = |m: &Value, how: &str| {
        assert_eq!(m["messageId"], id, "{how}: {m}");
        assert_eq!(m["topic"], "orders", "{how}: {m}");
        assert_eq!(m["queueId"], 3, "{how}: {m}");
        assert_eq!(m["queueOffset"], 0, "{how}: {m}");
        assert_eq!(m["tag"], "created", "{how}: {m}");
        assert_eq!(m["keys"], json!(["order-17", "customer-42"]), "{how}: {m}");
        // Header names arrive lower-cased; nothing internal (idempotency key, UNIQ_KEY, ...)
        // may show.
        assert_eq!(
            m["properties"],
            json!({"color": "red", "trace_id": "t-1"}),
            "{how}: {m}"
        );
        assert_eq!(m["body"], "first order", "{how}: {m}");
        assert_eq!(m["bodyEncoding"], "utf8", "{how}: {m}");
        let born = m["bornTimestamp"].as_i64().unwrap();
        let stored = m["storeTimestamp"].as_i64().unwrap();
        assert!(
            (before..=after).contains(&born),
            "{how}: born {born} outside {before}..={after}"
        );
        assert!(
            (born..=after).contains(&stored),
            "{how}: stored {stored}, born {born}"
        );
    };

    let pulled = pull_all_eventually(http, "orders", 1).await;
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    let page = pull(http, "orders", 3, 0, 10).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");
    let m = &page["messages"][0];
    check(m, "pull");
    assert!(
        m.get("receipt").is_none() && m.get("deliveryAttempt").is_none(),
        "{m}"
    );

    let received = receive(http, "g", "orders", json!({"max": 10})).await;
    assert_eq!(received.len(), 1, "{received:?}");
    check(&received[0], "receive");
    assert_eq!(received[0]["deliveryAttempt"], 1);
    assert_eq!(
        ack(http, "g", "orders", &[receipt(&received[0])]).await[0]["status"],
        200
    );

    let found = ok(http.get(&format!("/v1/topics/orders/messages/{id}")).await);
    check(&found, "lookup");
}

#[tokio::test]
async fn bodies_come_back_as_utf8_or_base64() {
    let gw = Local::start();
    let http = &gw.http;
    let binary: &[u8] = b"\xff\xfe\x00\x80 not utf-8 \xc3";
    let text = "héllo ✓ \u{1f389}";
    let bin = produce(http, "bodies", &[("tern-ordering-key", "b")], binary).await;
    let txt = produce(
        http,
        "bodies",
        &[("tern-ordering-key", "b")],
        text.as_bytes(),
    )
    .await;
    assert_eq!(bin["queueId"], txt["queueId"]);
    assert_eq!(pull_all_eventually(http, "bodies", 2).await.len(), 2);
    let queue = bin["queueId"].as_i64().unwrap();
    let page = pull(http, "bodies", queue, 0, 10).await;
    let check = |messages: &[Value], how: &str| {
        assert_eq!(messages.len(), 2, "{how}: {messages:?}");
        assert_eq!(messages[0]["bodyEncoding"], "base64", "{how}");
        assert_eq!(
            base64_decode(messages[0]["body"].as_str().unwrap()),
            binary,
            "{how}"
        );
        assert_eq!(messages[1]["bodyEncoding"], "utf8", "{how}");
        assert_eq!(messages[1]["body"], text, "{how}");
    };
    check(page["messages"].as_array().unwrap(), "pull");
    let received = receive(http, "g", "bodies", json!({"max": 10})).await;
    check(&received, "receive");
}

#[tokio::test]
async fn produce_refuses_bad_headers_and_too_large_bodies() {
    let gw = Local::start_with(Some("[limits]\nmax_message_bytes = 1024\n"), |_| {});
    let http = &gw.http;
    let long_key = "k".repeat(300);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("tern-delay", "2s"), ("tern-deliver-at", "1")],
            "invalid-delay",
        ),
        (&[("tern-delay", "10")], "invalid-delay"),
        (&[("tern-delay", "1w")], "invalid-delay"),
        (&[("tern-deliver-at", "-5")], "invalid-header"),
        (&[("tern-prop-DELAY", "3")], "invalid-property"),
        (&[("tern-prop-__x", "3")], "invalid-property"),
        (&[("tern-tag", "a|b")], "invalid-tag"),
        (&[("tern-keys", "a b")], "invalid-keys"),
        (&[("idempotency-key", &long_key)], "invalid-idempotency-key"),
    ];
    for (headers, slug) in cases {
        let answer = http
            .post("/v1/topics/refused/messages", headers, "body")
            .await;
        let problem = answer.problem(400);
        assert_eq!(
            problem["type"],
            format!("https://tern.dev/problems/{slug}"),
            "{headers:?}: {problem}"
        );
    }
    // A header value that is not ASCII (a non-ASCII ordering key must be given in a batch).
    let request = hyper::Request::builder()
        .method("POST")
        .uri(format!("{}/v1/topics/refused/messages", http.base()))
        .header(
            "tern-ordering-key",
            hyper::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 400);

    let limit = http
        .post("/v1/topics/refused/messages", &[], vec![b'x'; 1024])
        .await;
    assert_eq!(limit.status, 200, "{:?}", limit.body);
    let over = http
        .post("/v1/topics/refused/messages", &[], vec![b'x'; 1025])
        .await;
    assert_eq!(
        over.problem(413)["type"],
        "https://tern.dev/problems/too-large"
    );
    // Only the accepted one is stored.
    let stored = pull_all_eventually(http, "refused", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pull_all(http, "refused").await.len(), 1, "{stored:?}");
}

/// Receives from `group` until a message arrives; the time it arrived.
async fn first_arrival(http: &Http, group: &str, topic: &str, limit: Duration) -> (Value, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let got = receive(
            http,
            group,
            topic,
            json!({"max": 1, "invisibleSeconds": 30}),
        )
        .await;
        if let Some(m) = got.into_iter().next() {
            return (m, Instant::now());
        }
        assert!(Instant::now() < deadline, "nothing arrived on {topic}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn delayed_messages_arrive_at_their_time_and_not_before() {
    let gw = Local::start();
    let http = &gw.http;
    for topic in ["relative", "absolute"] {
        create_topic(http, topic, 2).await;
    }
    let start = Instant::now();
    let at = (now_ms() + 2_000).to_string();
    produce(
        http,
        "relative",
        &[("tern-delay", "2s"), ("tern-tag", "late")],
        b"relative",
    )
    .await;
    produce(http, "absolute", &[("tern-deliver-at", &at)], b"absolute").await;
    let none_yet = |topic: &'static str| async move {
        let received = receive(http, "early", topic, json!({"max": 1})).await;
        assert!(received.is_empty(), "{topic} delivered early: {received:?}");
        let total: i64 = topic_info(http, topic).await["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["maxOffset"].as_i64().unwrap())
            .sum();
        assert_eq!(total, 0, "{topic} holds the message before its time");
    };
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    none_yet("relative").await;
    none_yet("absolute").await;
    let limit = Duration::from_secs(10);
    let (relative, relative_at) = first_arrival(http, "g", "relative", limit).await;
    let (absolute, absolute_at) = first_arrival(http, "g", "absolute", limit).await;
    for (m, arrived) in [(&relative, relative_at), (&absolute, absolute_at)] {
        let waited = arrived - start;
        assert!(
            waited >= Duration::from_millis(1_900),
            "arrived after {waited:?}: {m}"
        );
        assert!(waited < Duration::from_secs(8), "arrived after {waited:?}");
        // The broker's timer properties stay hidden.
        assert!(m.get("properties").is_none(), "{m}");
    }
    assert_eq!(relative["body"], "relative");
    assert_eq!(relative["tag"], "late");
    assert_eq!(absolute["body"], "absolute");
    // Now it is in the topic, where a pull finds it.
    assert_eq!(pull_all_eventually(http, "relative", 1).await.len(), 1);
}

#[tokio::test]
async fn batch_answers_each_entry_in_request_order() {
    let gw = Local::start_with(
        Some("[limits]\nmax_message_bytes = 1024\nmax_json_bytes = 4096\n"),
        |_| {},
    );
    let http = &gw.http;
    create_topic(http, "batched", 8).await;
    let binary = base64_encode(b"\xff\x00\xc3");
    let entries = json!([
        {"body": "first", "tag": "t0", "keys": ["b-0"], "properties": {"p": "0"}},
        {"body": "!!not base64!!", "bodyEncoding": "base64"},
        {"body": "k1", "orderingKey": "customer-42"},
        {"body": "y", "properties": {"DELAY": "3"}},
        {"body": "z".repeat(1025)},
        {"body": binary, "bodyEncoding": "base64", "orderingKey": "customer-42"},
        {"body": "k3", "orderingKey": "customer-42"},
        {"body": "bad encoding", "bodyEncoding": "hex"},
        {"body": "bad delay", "orderingKey": "customer-42", "delay": "soon"},
        {"body": "k4", "orderingKey": "customer-42"},
        {"body": "key-😀-7", "orderingKey": "key-😀-7"},
    ]);
    let expected: [(u16, &str); 11] = [
        (200, ""),
        (400, "invalid-base64"),
        (200, ""),
        (400, "invalid-property"),
        (413, "too-large"),
        (200, ""),
        (200, ""),
        (400, "invalid-field"),
        (400, "invalid-delay"),
        (200, ""),
        (200, ""),
    ];
    let answer = ok(http
        .post_json(
            "/v1/topics/batched/messages:batch",
            &json!({"messages": entries}),
        )
        .await);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), expected.len(), "{answer}");
    let mut stored = BTreeSet::new();
    for (i, (result, (status, slug))) in results.iter().zip(expected).enumerate() {
        assert_eq!(result["status"], status, "entry {i}: {result}");
        if status == 200 {
            assert!(result.get("error").is_none(), "entry {i}: {result}");
            assert_eq!(result["topic"], "batched");
            stored.insert(result["messageId"].as_str().unwrap().to_string());
        } else {
            assert!(result.get("messageId").is_none(), "entry {i}: {result}");
            let error = &result["error"];
            assert_eq!(
                error["type"],
                format!("https://tern.dev/problems/{slug}"),
                "entry {i}: {result}"
            );
            assert_eq!(error["retryable"], false, "entry {i}");
            assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }
    // One ordering key: one queue (3, see the single produce test), offsets in request order.
    let keyed: Vec<&Value> = [2, 5, 6, 9].iter().map(|&i| &results[i]).collect();
    for r in &keyed {
        assert_eq!(r["queueId"], 3, "{r}");
    }
    let offsets: Vec<i64> = keyed
        .iter()
        .map(|r| r["queueOffset"].as_i64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    // UTF-16 hash of a non-ASCII key: -2139820805 % 8 = -5 → 5 (UTF-8 bytes would give 1).
    assert_eq!(results[10]["queueId"], 5);

    let all = pull_all_eventually(http, "batched", stored.len()).await;
    let ids: BTreeSet<String> = all
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, stored, "exactly the accepted entries are stored");
    // In the key's queue (which unkeyed entries may share), in request order.
    let keyed_ids: Vec<&Value> = keyed.iter().map(|r| &r["messageId"]).collect();
    let queue3: Vec<Value> = pull_queue(http, "batched", 3)
        .await
        .into_iter()
        .filter(|m| keyed_ids.contains(&&m["messageId"]))
        .collect();
    assert_eq!(bodies(&queue3), ["k1", binary.as_str(), "k3", "k4"]);
    assert_eq!(queue3[1]["bodyEncoding"], "base64");
    let first = all.iter().find(|m| m["body"] == "first").unwrap();
    assert_eq!(first["tag"], "t0");
    assert_eq!(first["keys"], json!(["b-0"]));
    assert_eq!(first["properties"], json!({"p": "0"}));

    // Whole-request failures.
    let huge = json!({"messages": vec![json!({"body": "x".repeat(1000)}); 5]});
    let too_large = http
        .post_json("/v1/topics/batched/messages:batch", &huge)
        .await;
    assert_eq!(
        too_large.problem(413)["type"],
        "https://tern.dev/problems/too-large"
    );
    let empty = http
        .post_json(
            "/v1/topics/batched/messages:batch",
            &json!({"messages": []}),
        )
        .await;
    assert_eq!(
        empty.problem(400)["type"],
        "https://tern.dev/problems/invalid-batch"
    );
    let unknown = http
        .post_json(
            "/v1/topics/batched/messages:batch",
            &json!({"messages": [{"body": "x", "color": "red"}]}),
        )
        .await;
    unknown.problem(400);
    let not_json = http
        .post(
            "/v1/topics/batched/messages:batch",
            &[("content-type", "text/plain")],
            "{}",
        )
        .await;
    not_json.problem(415);
    let broken = http
        .post(
            "/v1/topics/batched/messages:batch",
            &[("content-type", "application/json")],
            "{\"messages\": [",
        )
        .await;
    assert_eq!(
        broken.problem(400)["type"],
        "https://tern.dev/problems/invalid-json"
    );
}

#[tokio::test]
async fn batch_retried_with_an_idempotency_key_stores_each_entry_once() {
    let gw = Local::start();
    let http = &gw.http;
    let batch = |second: &str| {
        json!({"messages": [
            {"body": "a", "orderingKey": "k"},
            {"body": second},
            {"body": "c", "orderingKey": "k"},
            {"body": base64_encode(&[0, 255]), "bodyEncoding": "base64"},
        ]})
    };
    let send = |body: Value| async move {
        let answer = http
            .send(
                hyper::Method::POST,
                "/v1/topics/retried/messages:batch",
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", "batch-1"),
                ],
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        ok(answer)["results"].as_array().unwrap().clone()
    };
    let first = send(batch("b")).await;
    assert_eq!(first.len(), 4);
    for r in &first {
        assert_eq!(r["status"], 200, "{r}");
        assert!(r.get("idempotentReplayed").is_none(), "{r}");
    }
    let again = send(batch("b")).await;
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(b["status"], 200, "{b}");
        assert_eq!(b["idempotentReplayed"], true, "{b}");
        for field in ["messageId", "topic", "queueId", "queueOffset"] {
            assert_eq!(a[field], b[field], "{field}: first {a}, replay {b}");
        }
    }
    // Entry 1 changed: only it is refused; the others replay.
    let changed = send(batch("B")).await;
    assert_eq!(changed[1]["status"], 422, "{:?}", changed[1]);
    assert_eq!(
        changed[1]["error"]["type"],
        "https://tern.dev/problems/idempotency-key-reused"
    );
    for i in [0, 2, 3] {
        assert_eq!(changed[i]["idempotentReplayed"], true, "{:?}", changed[i]);
        assert_eq!(changed[i]["messageId"], first[i]["messageId"]);
    }
    let all = pull_all_eventually(http, "retried", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_again = pull_all(http, "retried").await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all_again.len(), 4, "{all_again:?}");
    let mut stored_bodies = bodies(&all_again);
    stored_bodies.sort();
    assert_eq!(stored_bodies, ["AP8=", "a", "b", "c"]);
}

#[tokio::test]
async fn idempotent_retry_replays_the_first_result() {
    let gw = Local::start();
    let http = &gw.http;
    let send = |key: &'static str, topic: &'static str, body: &'static str| async move {
        http.post(
            &format!("/v1/topics/{topic}/messages"),
            &[("idempotency-key", key), ("tern-tag", "t")],
            body,
        )
        .await
    };
    let first = send("idem-1", "idem", "once").await;
    assert_eq!(first.header("tern-idempotent-replayed"), None);
    let first = ok(first);
    for _ in 0..2 {
        let retry = send("idem-1", "idem", "once").await;
        assert_eq!(retry.header("tern-idempotent-replayed"), Some("true"));
        assert_eq!(
            ok(retry),
            first,
            "a replay answers exactly the first result"
        );
    }
    let reused = send("idem-1", "idem", "a different body").await;
    let problem = reused.problem(422);
    assert_eq!(
        problem["type"],
        "https://tern.dev/problems/idempotency-key-reused"
    );
    assert_eq!(problem["retryable"], false);
    // Another key, or the same key on another topic, is a new message.
    let other_key = send("idem-2", "idem", "once").await;
    assert_eq!(other_key.header("tern-idempotent-replayed"), None);
    assert_ne!(ok(other_key)["messageId"], first["messageId"]);
    let other_topic = send("idem-1", "idem-elsewhere", "once").await;
    assert_eq!(other_topic.header("tern-idempotent-replayed"), None);

    let all = pull_all_eventually(http, "idem", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pull_all(http, "idem").await.len(), 2, "{all:?}");
    let once: Vec<&Value> = all
        .iter()
        .filter(|m| m["messageId"] == first["messageId"])
        .collect();
    assert_eq!(once.len(), 1, "{all:?}");
    assert_eq!(once[0]["body"], "once");
    // The message the first id names is the stored one.
    let id = first["messageId"].as_str().unwrap();
    let found = ok(http.get(&format!("/v1/topics/idem/messages/{id}")).await);
    assert_eq!(found["queueOffset"], first["queueOffset"]);

    // A delayed message replays the same, before and after it is delivered.
    let delayed = [("idempotency-key", "idem-delayed"), ("tern-delay", "1s")];
    let path = "/v1/topics/idem-delayed/messages";
    let first = ok(http.post(path, &delayed, "later").await);
    let early = http.post(path, &delayed, "later").await;
    assert_eq!(early.header("tern-idempotent-replayed"), Some("true"));
    assert_eq!(ok(early), first);
    let all = pull_all_eventually(http, "idem-delayed", 1).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["messageId"], first["messageId"]);
    let late = http.post(path, &delayed, "later").await;
    assert_eq!(late.header("tern-idempotent-replayed"), Some("true"));
    assert_eq!(ok(late), first);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(pull_all(http, "idem-delayed").await.len(), 1);
}

#[tokio::test]
async fn concurrent_sends_with_one_idempotency_key_store_one_message() {
    let gw = Local::start();
    let sends = (0..12).map(|_| {
        let http = Http::new(gw.addr());
        tokio::spawn(async move {
            http.post(
                "/v1/topics/raced/messages",
                &[("idempotency-key", "race-1")],
                "same",
            )
            .await
        })
    });
    let answers: Vec<_> = futures_join(sends).await;
    let mut ids = BTreeSet::new();
    let mut fresh = 0;
    for answer in &answers {
        // A send that meets the first still being stored is retried by the gateway, so every
        // answer is the first result (a 409 would be allowed, and retryable).
        if answer.status == 409 {
            assert_eq!(answer.problem(409)["retryable"], true);
            continue;
        }
        fresh += usize::from(answer.header("tern-idempotent-replayed").is_none());
        ids.insert(ok(answer.clone())["messageId"].to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(fresh, 1, "exactly one send stored the message");
    let all = pull_all_eventually(&gw.http, "raced", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pull_all(&gw.http, "raced").await.len(), 1, "{all:?}");
    assert_eq!(ids.first().unwrap(), &all[0]["messageId"].to_string());
}

async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn idempotency_window_survives_a_gateway_restart() {
    let gw = Local::start();
    let headers = [("idempotency-key", "restart-1")];
    let first = produce(&gw.http, "durable", &headers, b"kept").await;
    let (status, dir) = gw.terminate();
    assert!(status.success(), "{status:?}");
    let gw = Local::start_in(dir, None, |_| {});
    let retry = gw
        .http
        .post("/v1/topics/durable/messages", &headers, "kept")
        .await;
    assert_eq!(retry.header("tern-idempotent-replayed"), Some("true"));
    assert_eq!(ok(retry), first);
    let all = pull_all_eventually(&gw.http, "durable", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pull_all(&gw.http, "durable").await.len(), 1, "{all:?}");
}

#[tokio::test]
async fn ordering_keys_pick_the_java_hash_queue_and_keep_order() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "keyed", 8).await;
    // Literal values of Java's "…".hashCode(), and abs(hash % 8) with Java's truncating `%`.
    let known: [(&str, i32, i64); 7] = [
        ("hello", 99_162_322, 2),
        ("customer-42", -1_772_111_155, 3),
        ("order-1", -1_207_111_310, 6),
        ("user-7", -836_031_819, 3),
        ("polygenelubricants", i32::MIN, 0),
        ("Aa", 2_112, 0),
        ("BB", 2_112, 0),
    ];
    for (key, hash, queue) in known {
        assert_eq!(java_hash(key), hash, "{key}");
        assert_eq!(hash_queue(key, 8), queue, "{key}");
        let produced = produce(http, "keyed", &[("tern-ordering-key", key)], key.as_bytes()).await;
        assert_eq!(produced["queueId"], queue, "{key}: {produced}");
    }
    let mut negative = 0;
    for i in 0..40 {
        let key = format!("k{i}-{}", i * 7919);
        negative += usize::from(java_hash(&key) < 0);
        let produced = produce(
            http,
            "keyed",
            &[("tern-ordering-key", &key)],
            key.as_bytes(),
        )
        .await;
        assert_eq!(
            produced["queueId"],
            hash_queue(&key, 8),
            "{key}: {produced}"
        );
    }
    assert!(negative > 0, "some generated keys hash negative");
    // Non-ASCII keys (batch only): UTF-16 code units, surrogate pairs included.
    let results = ok(http
        .post_json(
            "/v1/topics/keyed/messages:batch",
            &json!({"messages": [
                {"body": "x", "orderingKey": "key-😀-7"},
                {"body": "y", "orderingKey": "naïve-🚀"},
            ]}),
        )
        .await)["results"]
        .clone();
    assert_eq!(java_hash("key-😀-7"), -2_139_820_805);
    assert_eq!(java_hash("naïve-🚀"), 1_285_320_101);
    assert_eq!(results[0]["queueId"], 5, "{results}");
    assert_eq!(results[1]["queueId"], 5, "{results}");

    // The queue count a key hashes over is the topic's current one, right after a change.
    create_topic(http, "resized", 4).await;
    let before = produce(http, "resized", &[("tern-ordering-key", "order-1")], b"4").await;
    assert_eq!(before["queueId"], hash_queue("order-1", 4));
    assert_eq!(hash_queue("order-1", 4), 2);
    create_topic(http, "resized", 8).await;
    let after = produce(http, "resized", &[("tern-ordering-key", "order-1")], b"8").await;
    assert_eq!(after["queueId"], 6, "{after}");

    // One key's messages sit in its queue in the order they were acknowledged.
    for i in 0..12 {
        produce(
            http,
            "keyed",
            &[("tern-ordering-key", "customer-42")],
            format!("seq-{i}").as_bytes(),
        )
        .await;
    }
    let expected: Vec<String> = (0..12).map(|i| format!("seq-{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seq: Vec<String> = bodies(&pull_queue(http, "keyed", 3).await)
            .into_iter()
            .filter(|b| b.starts_with("seq-"))
            .collect();
        if seq == expected {
            break;
        }
        assert!(
            seq.len() < expected.len() && Instant::now() < deadline,
            "{seq:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
