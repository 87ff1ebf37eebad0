//! The gateway's HTTP API from outside, through `tern-gateway --local`: the stateless pull by
//! offset, lookups by message id and key, HTTP/2 (h2c), metrics and health.

#[path = "gateway/support.rs"]
#[allow(dead_code)] // shared by several test binaries; each uses a part
mod support;

use std::time::{Duration, Instant};

use hyper::Version;
use serde_json::{Value, json};
use support::*;
use tern_tests::http::Http;

#[tokio::test]
async fn pull_by_offset_pages_long_polls_and_validates() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "pulled", 8).await;
    for i in 0..5 {
        produce(
            http,
            "pulled",
            &[("tern-ordering-key", "hello")],
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    assert_eq!(pull_all_eventually(http, "pulled", 5).await.len(), 5);
    let page = pull(http, "pulled", 2, 0, 2).await;
    assert_eq!(bodies(page["messages"].as_array().unwrap()), ["m0", "m1"]);
    assert_eq!(page["messages"][1]["queueOffset"], 1);
    assert_eq!(page["messages"][1]["queueId"], 2);
    assert_eq!(
        (&page["nextOffset"], &page["minOffset"], &page["maxOffset"]),
        (&json!(2), &json!(0), &json!(5)),
        "{page}"
    );
    let page = pull(http, "pulled", 2, 2, 10).await;
    assert_eq!(
        bodies(page["messages"].as_array().unwrap()),
        ["m2", "m3", "m4"]
    );
    assert_eq!(page["nextOffset"], 5);
    let head = pull(http, "pulled", 2, 5, 10).await;
    assert_eq!(head["messages"], json!([]));
    assert_eq!(head["nextOffset"], 5);
    let empty = pull(http, "pulled", 0, 0, 10).await;
    assert_eq!(
        (&empty["messages"], &empty["maxOffset"]),
        (&json!([]), &json!(0))
    );

    // A long poll at the head answers as soon as a message comes.
    let poller = http.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let answer = poller
            .get("/v1/topics/pulled/queues/2/messages?offset=5&wait=3")
            .await;
        (ok(answer), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(http, "pulled", &[("tern-ordering-key", "hello")], b"late").await;
    let (page, took) = poll.await.unwrap();
    assert_eq!(
        bodies(page["messages"].as_array().unwrap()),
        ["late"],
        "{page}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2_500),
        "answered after {took:?}"
    );
    // With nothing coming it answers empty after about `wait`.
    let started = Instant::now();
    let page = ok(http
        .get("/v1/topics/pulled/queues/2/messages?offset=6&wait=2")
        .await);
    let took = started.elapsed();
    assert_eq!(page["messages"], json!([]));
    assert_eq!(page["nextOffset"], 6);
    assert!(
        took >= Duration::from_millis(1_800) && took < Duration::from_millis(4_500),
        "answered after {took:?}"
    );

    for (query, status, slug) in [
        ("queues/8/messages?offset=0", 404, "not-found"),
        ("queues/-1/messages?offset=0", 404, "not-found"),
        ("queues/0/messages?offset=0&wait=31", 400, "invalid-wait"),
        ("queues/0/messages?offset=0&max=0", 400, "invalid-max"),
        ("queues/0/messages?offset=0&max=100000", 400, "invalid-max"),
        ("queues/0/messages?offset=-1", 400, "invalid-query"),
        ("queues/0/messages", 400, "invalid-query"),
        ("queues/0/messages?offset=0&color=red", 400, "invalid-query"),
        ("queues/x/messages?offset=0", 400, "invalid-path"),
    ] {
        let answer = http.get(&format!("/v1/topics/pulled/{query}")).await;
        assert_eq!(
            answer.problem(status)["type"],
            format!("https://tern.dev/problems/{slug}"),
            "{query}"
        );
    }
    let unknown = http
        .get("/v1/topics/never-created/queues/0/messages?offset=0")
        .await;
    unknown.problem(404);
}

#[tokio::test]
async fn lookups_find_messages_by_id_and_by_key() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "other", 1).await;
    let from = now_ms();
    let m1 = produce(http, "looked", &[("tern-keys", "lk-1,shared")], b"m1").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let m2 = produce(http, "looked", &[("tern-keys", "shared")], b"m2").await;
    let m3 = produce(http, "looked", &[], b"m3").await;
    let to = now_ms() + 60_000;

    // The index is written just after the produce answers: ask until it is there.
    async fn eventually(http: &Http, path: &str, want: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = http.get(path).await;
            if answer.status == 200 {
                let json = answer.json();
                let n = json
                    .get("messages")
                    .and_then(Value::as_array)
                    .map_or(1, Vec::len);
                if n >= want {
                    return json;
                }
            }
            assert!(Instant::now() < deadline, "{path}: {:?}", answer.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (produced, body) in [(&m1, "m1"), (&m2, "m2"), (&m3, "m3")] {
        let id = produced["messageId"].as_str().unwrap();
        let found = eventually(http, &format!("/v1/topics/looked/messages/{id}"), 1).await;
        assert_eq!(found["body"], body);
        for field in ["messageId", "topic", "queueId", "queueOffset"] {
            assert_eq!(found[field], produced[field], "{field}: {found}");
        }
    }
    let id = m1["messageId"].as_str().unwrap();
    http.get(&format!("/v1/topics/other/messages/{id}"))
        .await
        .problem(404);
    http.get("/v1/topics/looked/messages/0123456789ABCDEF0123456789ABCDEF")
        .await
        .problem(404);
    http.get("/v1/topics/looked/messages/no-such-id")
        .await
        .problem(404);

    let path = |key: &str, from: i64, to: i64| {
        format!("/v1/topics/looked/messages?key={key}&from={from}&to={to}")
    };
    let shared = eventually(http, &path("shared", from, to), 2).await;
    assert_eq!(bodies(shared["messages"].as_array().unwrap()), ["m1", "m2"]);
    let one = eventually(http, &path("lk-1", from, to), 1).await;
    assert_eq!(bodies(one["messages"].as_array().unwrap()), ["m1"]);
    assert_eq!(one["messages"][0]["keys"], json!(["lk-1", "shared"]));
    let before = ok(http.get(&path("shared", 0, from - 10_000)).await);
    assert_eq!(before["messages"], json!([]));
    let none = ok(http.get(&path("no-such-key", from, to)).await);
    assert_eq!(none["messages"], json!([]));
    let limited = ok(http
        .get(&format!(
            "/v1/topics/looked/messages?key=shared&max=1&from={from}"
        ))
        .await);
    assert_eq!(limited["messages"].as_array().unwrap().len(), 1);
    http.get(&path("shared", to, from)).await.problem(400);
    http.get("/v1/topics/looked/messages?key=shared&max=0")
        .await
        .problem(400);
    http.get("/v1/topics/looked/messages").await.problem(400);
}

/// The value of the unlabelled series `name` in a Prometheus text body.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn h2c_metrics_and_health() {
    let gw = Local::start();
    let h1 = &gw.http;
    let h2 = Http::new_h2c(gw.addr());
    let produced = h2
        .post(
            "/v1/topics/proto/messages",
            &[("tern-tag", "h2"), ("tern-ordering-key", "hello")],
            "over h2c",
        )
        .await;
    assert_eq!(produced.version, Version::HTTP_2);
    let produced = ok(produced);
    assert_produced_shape(&produced);
    assert_eq!(produced["queueId"], 2);
    let received = ok(h2
        .post_json(
            "/v1/groups/g/topics/proto/messages:receive",
            &json!({"max": 5, "waitSeconds": 5}),
        )
        .await);
    assert_eq!(received["messages"][0]["body"], "over h2c");
    assert_eq!(received["messages"][0]["tag"], "h2");
    let over_h1 = h1.post("/v1/topics/proto/messages", &[], "abc").await;
    assert_eq!(over_h1.version, Version::HTTP_11);
    ok(over_h1);
    ok(h1.post("/v1/topics/proto/messages", &[], "defg").await);
    h1.post("/v1/topics/proto/messages", &[("tern-delay", "x")], "bad")
        .await
        .problem(400);

    let metrics = h1.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        metrics.headers
    );
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let route = "route=\"/v1/topics/{topic}/messages\",method=\"POST\"";
    assert_eq!(
        metric(
            &text,
            &format!("tern_gateway_requests_total{{{route},status=\"200\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("tern_gateway_requests_total{{{route},status=\"400\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "tern_gateway_produced_messages_total"),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "tern_gateway_produced_bytes_total"),
        Some(("over h2c".len() + 3 + 4) as f64)
    );
    assert_eq!(
        metric(&text, "tern_gateway_consumed_messages_total"),
        Some(1.0)
    );
    assert!(
        text.contains(
            "tern_gateway_request_duration_seconds_count{route=\"/v1/topics/{topic}/messages\"} 4"
        ),
        "{text}"
    );
    // Unmatched paths share one series instead of growing the map.
    h1.get("/no/such/path").await.problem(404);
    h1.delete("/v1/topics/proto/messages").await.problem(405);
    let text = String::from_utf8(h1.get("/metrics").await.body.to_vec()).unwrap();
    assert!(!text.contains("/no/such/path"), "{text}");

    // An event stream over HTTP/2, next to other requests on the same connection.
    let mut stream = h2
        .events("/v1/topics/proto/events?from=earliest", &[])
        .await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = stream
            .next_message(Duration::from_secs(10))
            .await
            .expect("replayed over h2c");
        seen.push(event.json()["body"].as_str().unwrap().to_string());
        ok(h2.get("/healthz").await);
    }
    seen.sort();
    assert_eq!(seen, ["abc", "defg", "over h2c"]);

    let health = h1.get("/healthz").await;
    assert_eq!(ok(health), json!({"status": "ok"}));
    let ready = h2.get("/readyz").await;
    assert_eq!(ok(ready), json!({"status": "ready"}));
}
