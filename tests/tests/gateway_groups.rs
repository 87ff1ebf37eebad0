//! Consumer groups and administration over HTTP, through `tern-gateway --local`: receive, ack,
//! nack, visibility changes, group settings (FIFO, delivery attempts), lag and offset resets,
//! and topic administration.

#[path = "gateway/support.rs"]
#[allow(dead_code)] // shared by several test binaries; each uses a part
mod support;

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};
use support::*;
use tern_tests::http::Http;

/// Receives (no wait) until something comes, at most `limit`; the messages and when they came.
async fn receive_until(
    http: &Http,
    group: &str,
    topic: &str,
    request: Value,
    limit: Duration,
) -> (Vec<Value>, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let got = receive(http, group, topic, request.clone()).await;
        if !got.is_empty() {
            return (got, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "nothing came from {group}/{topic} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn retry_backoff_spaces_nacks_that_name_no_delay() {
    let gw = Local::start();
    let http = &gw.http;
    let set = ok(http
        .json(
            Method::PUT,
            "/v1/groups/backoff",
            &json!({"retryBackoff": {"delaysSeconds": [2, 0.5]}}),
        )
        .await);
    assert_eq!(set["retryBackoff"]["delaysSeconds"], json!([2.0, 0.5]));
    http.json(
        Method::PUT,
        "/v1/groups/bad-backoff",
        &json!({"retryBackoff": {"delaysSeconds": []}}),
    )
    .await
    .problem(400);
    produce(http, "spaced", &[], b"retry me").await;
    let request = json!({"max": 1, "invisibleSeconds": 30});
    let (first, _) = receive_until(
        http,
        "backoff",
        "spaced",
        request.clone(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(first[0]["deliveryAttempt"], 1);

    // Attempt 1 nacked without a delay: back after the first backoff (2 s), not before.
    let nack = |m: &Value| json!({"receipts": [receipt(m)]});
    let nacked_at = Instant::now();
    let answer = ok(http
        .post_json(
            &group_path("backoff", "spaced", "messages:nack"),
            &nack(&first[0]),
        )
        .await);
    assert_eq!(answer["results"][0]["status"], 200);
    let (second, at) = receive_until(
        http,
        "backoff",
        "spaced",
        request.clone(),
        Duration::from_secs(8),
    )
    .await;
    let waited = at - nacked_at;
    assert!(
        waited >= Duration::from_millis(1_800),
        "back after {waited:?}"
    );
    assert_eq!(second[0]["deliveryAttempt"], 2);

    // Attempt 2: the second backoff (0.5 s).
    let nacked_at = Instant::now();
    ok(http
        .post_json(
            &group_path("backoff", "spaced", "messages:nack"),
            &nack(&second[0]),
        )
        .await);
    let (third, at) = receive_until(
        http,
        "backoff",
        "spaced",
        request.clone(),
        Duration::from_secs(5),
    )
    .await;
    let waited = at - nacked_at;
    assert!(
        (Duration::from_millis(400)..Duration::from_millis(1_900)).contains(&waited),
        "back after {waited:?}"
    );
    assert_eq!(third[0]["deliveryAttempt"], 3);

    // An explicit delaySeconds wins over the group's backoff.
    ok(http
        .post_json(
            &group_path("backoff", "spaced", "messages:nack"),
            &json!({"receipts": [receipt(&third[0])], "delaySeconds": 0}),
        )
        .await);
    let again = receive(
        http,
        "backoff",
        "spaced",
        json!({"max": 1, "waitSeconds": 1}),
    )
    .await;
    assert_eq!(
        again.len(),
        1,
        "a nack with delaySeconds 0 redelivers at once"
    );
    assert_eq!(again[0]["deliveryAttempt"], 4);
}

#[tokio::test]
async fn invisibility_expires_into_a_second_attempt_and_ack_ends_it() {
    let gw = Local::start();
    let http = &gw.http;
    let produced = produce(http, "work", &[], b"job").await;
    let invisible = json!({"max": 10, "invisibleSeconds": 1});
    let (first, _) =
        receive_until(http, "g", "work", invisible.clone(), Duration::from_secs(5)).await;
    let received_at = Instant::now();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["messageId"], produced["messageId"]);
    assert_eq!(first[0]["deliveryAttempt"], 1);
    assert!(
        receive(http, "g", "work", invisible.clone())
            .await
            .is_empty()
    );
    // Another group has its own copy.
    let other = receive(http, "other", "work", json!({"max": 10, "waitSeconds": 3})).await;
    assert_eq!(other.len(), 1);

    let (second, at) =
        receive_until(http, "g", "work", invisible.clone(), Duration::from_secs(6)).await;
    assert!(
        at - received_at >= Duration::from_millis(900),
        "back after {:?}",
        at - received_at
    );
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0]["messageId"], produced["messageId"]);
    assert_eq!(second[0]["deliveryAttempt"], 2);
    assert_eq!(second[0]["body"], "job");
    assert_ne!(receipt(&second[0]), receipt(&first[0]));

    // The first receipt is stale now; the current one acks once.
    let stale = ack(http, "g", "work", &[receipt(&first[0])]).await;
    assert_eq!(stale[0]["status"], 400, "{stale:?}");
    assert!(stale[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
    let acked = ack(http, "g", "work", &[receipt(&second[0])]).await;
    assert_eq!(acked, [json!({"status": 200})]);
    let again = ack(http, "g", "work", &[receipt(&second[0])]).await;
    assert_eq!(again[0]["status"], 400, "{again:?}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(receive(http, "g", "work", invisible).await.is_empty());
}

#[tokio::test]
async fn ack_results_follow_the_receipts_and_bad_receipts_refuse_the_request() {
    let gw = Local::start();
    let http = &gw.http;
    for i in 0..3 {
        produce(http, "acks", &[], format!("m{i}").as_bytes()).await;
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && Instant::now() < deadline {
        got.extend(receive(http, "g", "acks", json!({"max": 3, "invisibleSeconds": 30})).await);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let r: Vec<&str> = got.iter().map(receipt).collect();
    let path = group_path("g", "acks", "messages:ack");

    // A forged or foreign receipt refuses the whole request: nothing is acked.
    let forged = format!("{}x", &r[0][..r[0].len() - 1]);
    for receipts in [
        json!([r[0], forged]),
        json!([r[0], "not a receipt"]),
        json!([]),
    ] {
        let answer = http.post_json(&path, &json!({"receipts": receipts})).await;
        answer.problem(400);
    }
    let foreign = http
        .post_json(
            &group_path("other", "acks", "messages:ack"),
            &json!({"receipts": [r[0]]}),
        )
        .await;
    assert_eq!(
        foreign.problem(400)["type"],
        "https://tern.dev/problems/invalid-receipt"
    );
    let other_topic = http
        .post_json(
            &group_path("g", "elsewhere", "messages:ack"),
            &json!({"receipts": [r[0]]}),
        )
        .await;
    other_topic.problem(400);

    // One result per receipt, in request order (r[0] twice: the second is stale).
    let results = ack(http, "g", "acks", &[r[1], r[0], r[0], r[2]]).await;
    let statuses: Vec<&Value> = results.iter().map(|v| &v["status"]).collect();
    assert_eq!(statuses, [200, 200, 400, 200], "{results:?}");

    // Receive validation.
    let receive_path = group_path("g", "acks", "messages:receive");
    for (body, slug) in [
        (json!({"max": 0}), "invalid-max"),
        (json!({"max": 33}), "invalid-max"),
        (json!({"invisibleSeconds": 0}), "invalid-field"),
        (json!({"invisibleSeconds": 43_201}), "invalid-field"),
        (json!({"waitSeconds": 31}), "invalid-wait"),
        (json!({"color": "red"}), "invalid-field"),
    ] {
        let answer = http.post_json(&receive_path, &body).await;
        assert_eq!(
            answer.problem(400)["type"],
            format!("https://tern.dev/problems/{slug}"),
            "{body}"
        );
    }
    http.post(&receive_path, &[("content-type", "text/plain")], "{}")
        .await
        .problem(415);
    http.post_json(
        &group_path("g", "never-created", "messages:receive"),
        &json!({}),
    )
    .await
    .problem(404);
}

#[tokio::test]
async fn nack_redelivers_at_once_or_after_its_delay() {
    let gw = Local::start();
    let http = &gw.http;
    produce(http, "retry", &[], b"again").await;
    let long = json!({"max": 1, "invisibleSeconds": 30});
    let (first, _) = receive_until(http, "g", "retry", long.clone(), Duration::from_secs(5)).await;
    let nack_path = group_path("g", "retry", "messages:nack");
    let nacked = ok(http
        .post_json(
            &nack_path,
            &json!({"receipts": [receipt(&first[0])], "delaySeconds": 0}),
        )
        .await);
    assert_eq!(nacked["results"], json!([{"status": 200}]));
    let started = Instant::now();
    let (second, at) =
        receive_until(http, "g", "retry", long.clone(), Duration::from_secs(5)).await;
    assert!(
        at - started < Duration::from_millis(1_500),
        "{:?}",
        at - started
    );
    assert_eq!(second[0]["body"], "again");
    assert_eq!(second[0]["deliveryAttempt"], 2);

    let nacked = ok(http
        .post_json(
            &nack_path,
            &json!({"receipts": [receipt(&second[0])], "delaySeconds": 2}),
        )
        .await);
    assert_eq!(nacked["results"], json!([{"status": 200}]));
    let nacked_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(receive(http, "g", "retry", long.clone()).await.is_empty());
    let (third, at) = receive_until(http, "g", "retry", long.clone(), Duration::from_secs(8)).await;
    assert!(
        at - nacked_at >= Duration::from_millis(1_900),
        "{:?}",
        at - nacked_at
    );
    assert_eq!(third[0]["deliveryAttempt"], 3);
    // A nacked receipt is spent.
    let spent = ok(http
        .post_json(&nack_path, &json!({"receipts": [receipt(&second[0])]}))
        .await);
    assert_eq!(spent["results"][0]["status"], 400, "{spent}");
    http.post_json(
        &nack_path,
        &json!({"receipts": [receipt(&third[0])], "delaySeconds": 43_201}),
    )
    .await
    .problem(400);
}

#[tokio::test]
async fn change_visibility_hands_out_a_new_receipt() {
    let gw = Local::start();
    let http = &gw.http;
    produce(http, "slow", &[], b"m1").await;
    let short = json!({"max": 1, "invisibleSeconds": 1});
    let (got, received_at) =
        receive_until(http, "g", "slow", short.clone(), Duration::from_secs(5)).await;
    let old = receipt(&got[0]).to_string();
    let path = group_path("g", "slow", "messages:changeVisibility");
    let renewed = ok(http
        .post_json(&path, &json!({"receipt": old, "invisibleSeconds": 4}))
        .await);
    let new = renewed["receipt"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    // Past the first invisible time the message is still hidden.
    tokio::time::sleep(Duration::from_millis(1_600).saturating_sub(received_at.elapsed())).await;
    assert!(receive(http, "g", "slow", short.clone()).await.is_empty());
    let stale = ack(http, "g", "slow", &[&old]).await;
    assert_eq!(stale[0]["status"], 400, "{stale:?}");
    http.post_json(&path, &json!({"receipt": old, "invisibleSeconds": 4}))
        .await
        .problem(400);
    assert_eq!(ack(http, "g", "slow", &[&new]).await[0]["status"], 200);

    // Visibility 0: back at once.
    produce(http, "slow", &[], b"m2").await;
    let (got, _) = receive_until(
        http,
        "g",
        "slow",
        json!({"max": 1, "invisibleSeconds": 30}),
        Duration::from_secs(5),
    )
    .await;
    ok(http
        .post_json(
            &path,
            &json!({"receipt": receipt(&got[0]), "invisibleSeconds": 0}),
        )
        .await);
    let started = Instant::now();
    let (again, at) = receive_until(http, "g", "slow", short, Duration::from_secs(5)).await;
    assert!(at - started < Duration::from_millis(1_500));
    assert_eq!(again[0]["body"], "m2");
    assert_eq!(again[0]["deliveryAttempt"], 2);
}

#[tokio::test]
async fn receive_long_polls_until_a_message_or_the_wait_ends() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "waits", 4).await;
    let started = Instant::now();
    let empty = receive(http, "g", "waits", json!({"waitSeconds": 2})).await;
    let took = started.elapsed();
    assert!(empty.is_empty());
    assert!(
        took >= Duration::from_millis(1_800) && took < Duration::from_millis(4_500),
        "{took:?}"
    );

    let waiter = http.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let got = receive(&waiter, "g", "waits", json!({"max": 5, "waitSeconds": 10})).await;
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    produce(http, "waits", &[], b"wake up").await;
    let (got, took) = poll.await.unwrap();
    assert_eq!(bodies(&got), ["wake up"]);
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn receive_filters_by_tag() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "tagged", 2).await;
    for (tag, body) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("c", "c1"),
        ("b", "b2"),
    ] {
        produce(http, "tagged", &[("tern-tag", tag)], body.as_bytes()).await;
    }
    produce(http, "tagged", &[], b"untagged").await;
    pull_all_eventually(http, "tagged", 6).await;
    let all = |group: &'static str, tag: &'static str| async move {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let more = receive(
                http,
                group,
                "tagged",
                json!({"max": 10, "tag": tag, "invisibleSeconds": 30}),
            )
            .await;
            if more.is_empty() && !got.is_empty() {
                break;
            }
            got.extend(more);
        }
        let mut b = bodies(&got);
        b.sort();
        b
    };
    assert_eq!(all("only-a", "a").await, ["a1", "a2"]);
    assert_eq!(all("b-or-c", "b || c").await, ["b1", "b2", "c1"]);
    assert_eq!(
        all("everything", "*").await,
        ["a1", "a2", "b1", "b2", "c1", "untagged"]
    );
}

#[tokio::test]
async fn fifo_group_holds_a_queue_until_ack_and_dead_letters_after_max_attempts() {
    let gw = Local::start();
    let http = &gw.http;
    let config = ok(http
        .json(
            Method::PUT,
            "/v1/groups/fifo",
            &json!({"fifo": true, "maxDeliveryAttempts": 2}),
        )
        .await);
    assert_eq!(
        config,
        json!({"group": "fifo", "fifo": true, "maxDeliveryAttempts": 2})
    );
    create_topic(http, "ordered", 1).await;
    for i in 1..=3 {
        produce(
            http,
            "ordered",
            &[("tern-ordering-key", "k")],
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    pull_all_eventually(http, "ordered", 3).await;
    let one = json!({"max": 1, "invisibleSeconds": 1});
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // m1 is never acked: it is delivered twice, then dead-lettered, and only then m2 comes.
    while seen.len() < 4 && Instant::now() < deadline {
        let got = receive(http, "fifo", "ordered", one.clone()).await;
        if let Some(m) = got.first() {
            seen.push((
                m["body"].as_str().unwrap().to_string(),
                m["deliveryAttempt"].as_i64().unwrap(),
            ));
            // While it is in flight the queue gives nothing else.
            assert!(
                receive(http, "fifo", "ordered", one.clone())
                    .await
                    .is_empty(),
                "a FIFO queue delivered past an unacked message: {seen:?}"
            );
            if m["body"] == "m2" {
                assert_eq!(
                    ack(http, "fifo", "ordered", &[receipt(m)]).await[0]["status"],
                    200
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected: Vec<(String, i64)> = [("m1", 1), ("m1", 2), ("m2", 1), ("m3", 1)]
        .iter()
        .map(|(b, a)| (b.to_string(), *a))
        .collect();
    assert_eq!(seen, expected);
    // m1 went to the group's dead-letter topic, which is neither listed nor addressable.
    let listed = ok(http.get("/v1/topics").await);
    assert_eq!(listed["topics"], json!(["ordered"]), "{listed}");
    http.get("/v1/topics/%25DLQ%25fifo").await.problem(400);
    // A plain group gets everything at once, acked or not.
    let plain = receive(
        http,
        "plain",
        "ordered",
        json!({"max": 3, "waitSeconds": 3}),
    )
    .await;
    assert_eq!(plain.len(), 3, "{plain:?}");

    for body in [
        json!({"maxDeliveryAttempts": 0}),
        json!({"maxDeliveryAttempts": 1001}),
        json!({"retryBackoff": "1s"}),
        json!({"fifo": "yes"}),
    ] {
        http.json(Method::PUT, "/v1/groups/fifo", &body)
            .await
            .problem(400);
    }
}

#[tokio::test]
async fn offsets_show_lag_and_a_reset_delivers_again() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "lagging", 2).await;
    for i in 0..4 {
        produce(http, "lagging", &[], format!("m{i}").as_bytes()).await;
    }
    pull_all_eventually(http, "lagging", 4).await;
    let offsets_path = group_path("g", "lagging", "offsets");
    let offsets = ok(http.get(&offsets_path).await);
    assert_eq!(offsets["group"], "g");
    assert_eq!(offsets["topic"], "lagging");
    assert_eq!(offsets["lag"], 4, "{offsets}");
    let queues = offsets["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    let max_total: i64 = queues
        .iter()
        .map(|q| q["maxOffset"].as_i64().unwrap())
        .sum();
    assert_eq!(max_total, 4, "{offsets}");

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 4 && Instant::now() < deadline {
        got.extend(
            receive(
                http,
                "g",
                "lagging",
                json!({"max": 4, "invisibleSeconds": 30}),
            )
            .await,
        );
    }
    assert_eq!(got.len(), 4);
    let receipts: Vec<&str> = got.iter().map(receipt).collect();
    assert!(
        ack(http, "g", "lagging", &receipts)
            .await
            .iter()
            .all(|r| r["status"] == 200)
    );
    let offsets = ok(http.get(&offsets_path).await);
    assert_eq!(offsets["lag"], 0, "{offsets}");
    for q in offsets["queues"].as_array().unwrap() {
        assert_eq!(q["committedOffset"], q["maxOffset"], "{offsets}");
    }
    assert!(
        receive(http, "g", "lagging", json!({"max": 4}))
            .await
            .is_empty()
    );

    let reset_path = group_path("g", "lagging", "offsets:reset");
    let reset = ok(http
        .post_json(&reset_path, &json!({"to": "earliest"}))
        .await);
    assert_eq!(reset["lag"], 4, "{reset}");
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while again.len() < 4 && Instant::now() < deadline {
        again.extend(
            receive(
                http,
                "g",
                "lagging",
                json!({"max": 4, "invisibleSeconds": 30}),
            )
            .await,
        );
    }
    let mut b = bodies(&again);
    b.sort();
    assert_eq!(b, ["m0", "m1", "m2", "m3"]);
    let reset = ok(http.post_json(&reset_path, &json!({"to": "latest"})).await);
    assert_eq!(reset["lag"], 0, "{reset}");
    let reset = ok(http.post_json(&reset_path, &json!({"timestamp": 0})).await);
    assert_eq!(reset["lag"], 4, "{reset}");
    http.get(&group_path("g", "never-created", "offsets"))
        .await
        .problem(404);
    for bad in [
        json!({"to": "yesterday"}),
        json!({"to": "earliest", "timestamp": 0}),
        json!({"timestamp": -1}),
        json!({}),
    ] {
        http.post_json(&reset_path, &bad).await.problem(400);
    }
}

#[tokio::test]
async fn topics_are_created_listed_and_deleted() {
    let gw = Local::start();
    let http = &gw.http;
    let created = create_topic(http, "admin-t", 4).await;
    assert_eq!(created["topic"], "admin-t");
    assert_eq!(created["perm"], "rw");
    assert_eq!(created["queues"].as_array().unwrap().len(), 4);
    for i in 0..6 {
        produce(http, "admin-t", &[], format!("m{i}").as_bytes()).await;
    }
    pull_all_eventually(http, "admin-t", 6).await;
    let info = topic_info(http, "admin-t").await;
    let queues = info["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 4, "{info}");
    for (i, q) in queues.iter().enumerate() {
        assert_eq!(q["queueId"], i, "{info}");
        assert_eq!(q["minOffset"], 0, "{info}");
        assert!(q["brokerName"].as_str().is_some_and(|b| !b.is_empty()));
    }
    let max_total: i64 = queues
        .iter()
        .map(|q| q["maxOffset"].as_i64().unwrap())
        .sum();
    assert_eq!(max_total, 6, "{info}");

    // Give the broker system topics to hide: a delay (timer topic), a nack (retry topic).
    produce(http, "admin-t", &[("tern-delay", "1h")], b"later").await;
    let got = receive(http, "g", "admin-t", json!({"max": 1, "waitSeconds": 3})).await;
    ok(http
        .post_json(
            &group_path("g", "admin-t", "messages:nack"),
            &json!({"receipts": [receipt(&got[0])], "delaySeconds": 1}),
        )
        .await);
    let listed = ok(http.get("/v1/topics").await);
    let topics: Vec<&str> = listed["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(topics.contains(&"admin-t"), "{listed}");
    for t in &topics {
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && !t.starts_with("rmq_sys_")
                && !t.starts_with("SCHEDULE_TOPIC")
                && *t != "TBW102",
            "system topic listed: {t} in {listed}"
        );
    }
    let mut sorted = topics.clone();
    sorted.sort();
    assert_eq!(topics, sorted);

    // Read-only: produce is refused at once (no writable queue), reads still work.
    let read_only = ok(http
        .json(
            Method::PUT,
            "/v1/topics/admin-t",
            &json!({"queues": 4, "perm": "r"}),
        )
        .await);
    assert_eq!(read_only["perm"], "r");
    let refused = http
        .post("/v1/topics/admin-t/messages", &[], "refused")
        .await;
    assert_eq!(
        refused.problem(503)["type"],
        "https://tern.dev/problems/no-writable-broker"
    );
    assert_eq!(pull_all(http, "admin-t").await.len(), 6);
    ok(http
        .json(
            Method::PUT,
            "/v1/topics/admin-t",
            &json!({"queues": 4, "perm": "rw"}),
        )
        .await);
    for bad in [
        json!({"queues": 0}),
        json!({"queues": 1025}),
        json!({"perm": "x"}),
        json!({"queues": 4, "color": 1}),
    ] {
        http.json(Method::PUT, "/v1/topics/admin-t", &bad)
            .await
            .problem(400);
    }
    http.json(Method::PUT, "/v1/topics/bad%20name", &json!({}))
        .await
        .problem(400);

    let deleted = http.delete("/v1/topics/admin-t").await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert!(deleted.body.is_empty());
    http.get("/v1/topics/admin-t").await.problem(404);
    http.delete("/v1/topics/admin-t").await.problem(404);
    let listed = ok(http.get("/v1/topics").await);
    assert!(
        !listed["topics"]
            .as_array()
            .unwrap()
            .contains(&json!("admin-t")),
        "{listed}"
    );
    // Local mode creates topics on first produce: a produce right after the delete creates the
    // topic again, with the gateway's default_topic_queues (8).
    let produced = produce(http, "admin-t", &[], b"reborn").await;
    assert_eq!(produced["topic"], "admin-t");
    let info = topic_info(http, "admin-t").await;
    assert_eq!(info["queues"].as_array().unwrap().len(), 8, "{info}");
}

/// After DELETE, a topic created again under the same name must not show the deleted topic's
/// messages. The broker's DELETE_TOPIC_IN_BROKER only drops the topic's configuration and
/// keeps its ConsumeQueues, so the old messages reappear (a core broker issue, not the
/// gateway's).
#[tokio::test]
#[ignore = "core: the broker keeps a deleted topic's ConsumeQueues, so a re-created topic shows old messages"]
async fn a_deleted_topic_comes_back_empty() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "reused", 2).await;
    produce(http, "reused", &[], b"old").await;
    pull_all_eventually(http, "reused", 1).await;
    assert_eq!(http.delete("/v1/topics/reused").await.status, 204);
    create_topic(http, "reused", 2).await;
    produce(http, "reused", &[], b"new").await;
    let all = pull_all_eventually(http, "reused", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bodies(&pull_all(http, "reused").await), ["new"], "{all:?}");
}

#[tokio::test]
async fn receipts_stay_valid_across_a_gateway_restart() {
    let gw = Local::start();
    produce(&gw.http, "kept", &[], b"m0").await;
    produce(&gw.http, "kept", &[], b"m1").await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(
            receive(
                &gw.http,
                "g",
                "kept",
                json!({"max": 2, "invisibleSeconds": 60}),
            )
            .await,
        );
    }
    assert_eq!(got.len(), 2);
    let (status, dir) = gw.terminate();
    assert!(status.success(), "{status:?}");
    // --local keeps its receipt key and the broker its in-flight state under the data dir.
    let gw = Local::start_in(dir, None, |_| {});
    let http = &gw.http;
    assert_eq!(
        ack(http, "g", "kept", &[receipt(&got[0])]).await[0]["status"],
        200
    );
    let renewed = ok(http
        .post_json(
            &group_path("g", "kept", "messages:changeVisibility"),
            &json!({"receipt": receipt(&got[1]), "invisibleSeconds": 0}),
        )
        .await);
    assert!(renewed["receipt"].is_string());
    let (again, _) = receive_until(
        http,
        "g",
        "kept",
        json!({"max": 2, "invisibleSeconds": 60}),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(bodies(&again), [got[1]["body"].as_str().unwrap()]);
    assert_eq!(again[0]["deliveryAttempt"], 2);
}
