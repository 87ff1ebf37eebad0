//! The gateway's tenancy and rate limit, end to end: real `tern-gateway --local` processes
//! configured with the test keys of `gateway/tests/fixtures`, and tokens signed here (the JWT
//! auth itself is tested in `gateway_auth.rs`).
//!
//! - Tenancy: two tenants with the same topic names never see each other's topics, messages,
//!   receipts or offsets, and never see the broker-side `tenant%` prefix.
//! - Without auth: names are used as given, shared with RocketMQ-style clients.
//! - Rate limit: per tenant, 429 with `Retry-After`.

#[allow(dead_code)] // shared with the other gateway tests; each uses a part
mod gateway_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gateway_support::*;
use hyper::Method;
use serde_json::json;
use tern_core::client::{Admin, ClientConfig, Message, Producer};
use tern_tests::http::{Answer, Http};

fn gateway() -> TestGateway {
    TestGateway::local(&auth_section())
}

/// Asserts that an answer shows nothing of the broker-side names (`tenant%name`).
fn no_prefix(answer: Answer, case: &str) -> Answer {
    let body = String::from_utf8_lossy(&answer.body);
    assert!(!body.contains('%'), "{case}: `%` in the body: {body}");
    for (name, value) in &answer.headers {
        assert!(
            !value.as_bytes().contains(&b'%'),
            "{case}: `%` in header {name}: {value:?}"
        );
    }
    answer
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let gw = gateway();
    let acme = gw.http.with_token(token("acme", ALL));
    let globex = gw.http.with_token(token("globex", ALL));

    let mut acme_ids = Vec::new();
    for i in 1..=3 {
        let produced = produce(
            &acme,
            "orders",
            &format!("acme-{i}"),
            &[("tern-keys", "shared-key")],
        )
        .await;
        assert_eq!(produced["topic"], "orders");
        acme_ids.push(produced["messageId"].as_str().unwrap().to_string());
    }
    produce(
        &globex,
        "orders",
        "globex-1",
        &[("tern-keys", "shared-key")],
    )
    .await;
    produce(&globex, "invoices", "invoice-1", &[]).await;
    // A write-only topic of acme: reading it is refused by the broker, whose answer names the
    // broker-side topic.
    ok(
        &acme
            .json(
                Method::PUT,
                "/v1/topics/drop-box",
                &json!({"queues": 1, "perm": "w"}),
            )
            .await,
        "PUT write-only topic",
    );

    // The broker holds tenant-prefixed topics only.
    let admin = Admin::new(ClientConfig::new(vec![gw.namesrv.clone()])).unwrap();
    let broker_topics: BTreeSet<String> = admin.topics().await.unwrap().into_iter().collect();
    for topic in [
        "acme%orders",
        "globex%orders",
        "globex%invoices",
        "acme%drop-box",
    ] {
        assert!(
            broker_topics.contains(topic),
            "{topic} in {broker_topics:?}"
        );
    }
    for topic in ["orders", "invoices"] {
        assert!(
            !broker_topics.contains(topic),
            "{topic} in {broker_topics:?}"
        );
    }
    admin.shutdown();

    // Each tenant receives its own messages only.
    let got = receive_all(&acme, "billing", "orders", 3, Duration::from_secs(20)).await;
    assert_eq!(
        bodies(&got),
        BTreeSet::from(["acme-1", "acme-2", "acme-3"].map(String::from))
    );
    for m in &got {
        assert_eq!(m["topic"], "orders");
        assert!(!m.to_string().contains('%'), "{m}");
    }
    let acme_receipts: Vec<String> = got
        .iter()
        .map(|m| m["receipt"].as_str().unwrap().to_string())
        .collect();
    let got = receive_all(&globex, "billing", "orders", 2, Duration::from_secs(4)).await;
    assert_eq!(bodies(&got), BTreeSet::from(["globex-1".to_string()]));
    let globex_receipt = got[0]["receipt"].as_str().unwrap().to_string();
    ok(
        &acme
            .post_json(
                "/v1/groups/billing/topics/orders/messages:ack",
                &json!({"receipts": acme_receipts}),
            )
            .await,
        "acme ack",
    );
    ok(
        &globex
            .post_json(
                "/v1/groups/billing/topics/orders/messages:ack",
                &json!({"receipts": [globex_receipt]}),
            )
            .await,
        "globex ack",
    );

    // Listings: own topics only, no prefix.
    let listed = ok(
        &no_prefix(acme.get("/v1/topics").await, "acme list"),
        "acme list",
    );
    assert_eq!(listed["topics"], json!(["drop-box", "orders"]));
    let listed = ok(
        &no_prefix(globex.get("/v1/topics").await, "globex list"),
        "globex list",
    );
    assert_eq!(listed["topics"], json!(["invoices", "orders"]));

    // Pulls of every queue: each tenant's own bodies only.
    for (http, own) in [(&acme, "acme-"), (&globex, "globex-")] {
        let info = ok(
            &no_prefix(http.get("/v1/topics/orders").await, "topic info"),
            "info",
        );
        assert_eq!(info["topic"], "orders");
        let queues = info["queues"].as_array().unwrap().len();
        for q in 0..queues {
            let path = format!("/v1/topics/orders/queues/{q}/messages?offset=0&max=32");
            let pulled = ok(&no_prefix(http.get(&path).await, &path), &path);
            for m in pulled["messages"].as_array().unwrap() {
                assert!(m["body"].as_str().unwrap().starts_with(own), "{m}");
            }
        }
        // Key lookups too (both tenants used the same key).
        let found = ok(
            &no_prefix(
                http.get("/v1/topics/orders/messages?key=shared-key").await,
                "by key",
            ),
            "by key",
        );
        let found = found["messages"].as_array().unwrap();
        assert!(!found.is_empty());
        assert!(
            found
                .iter()
                .all(|m| m["body"].as_str().unwrap().starts_with(own)),
            "{found:?}"
        );
    }

    // acme's message ids name nothing for globex (404, as an unknown id), everything for acme.
    for id in &acme_ids {
        let path = format!("/v1/topics/orders/messages/{id}");
        let mine = ok(&no_prefix(acme.get(&path).await, &path), &path);
        assert_eq!(mine["messageId"], id.as_str());
        assert_problem(
            &no_prefix(globex.get(&path).await, &path),
            404,
            "not-found",
            "globex looking up acme's id",
        );
    }

    // Another tenant's topic is exactly as absent as a topic nobody has: 404, never 403.
    let probes = |topic: &str| -> Vec<(Method, String, &'static str)> {
        vec![
            (Method::GET, format!("/v1/topics/{topic}"), ""),
            (
                Method::GET,
                format!("/v1/topics/{topic}/queues/0/messages?offset=0"),
                "",
            ),
            (
                Method::POST,
                format!("/v1/groups/billing/topics/{topic}/messages:receive"),
                "{}",
            ),
            (
                Method::GET,
                format!("/v1/groups/billing/topics/{topic}/events"),
                "",
            ),
            (Method::GET, format!("/v1/topics/{topic}/events"), ""),
            (Method::DELETE, format!("/v1/topics/{topic}"), ""),
        ]
    };
    for ((method, theirs, body), (_, nobodys, _)) in
        probes("invoices").into_iter().zip(probes("no-such-topic"))
    {
        let headers = [("content-type", "application/json")];
        let a = no_prefix(
            acme.send(method.clone(), &theirs, &headers, body).await,
            &theirs,
        );
        let b = no_prefix(
            acme.send(method.clone(), &nobodys, &headers, body).await,
            &nobodys,
        );
        let pa = assert_problem(&a, 404, "not-found", &format!("acme {method} {theirs}"));
        let pb = assert_problem(&b, 404, "not-found", &format!("acme {method} {nobodys}"));
        assert_eq!(
            pa["detail"].as_str().unwrap().replace("invoices", "X"),
            pb["detail"].as_str().unwrap().replace("no-such-topic", "X"),
            "{method} {theirs}: the answers must not tell the two apart"
        );
    }
    let invoices = ok(&globex.get("/v1/topics/invoices").await, "globex invoices");
    let stored: i64 = invoices["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["maxOffset"].as_i64().unwrap())
        .sum();
    assert_eq!(stored, 1, "globex's invoices survived acme's DELETE");

    // Broker names typed by a client are just invalid names (400), encoded or not.
    for path in [
        "/v1/topics/acme%25orders/queues/0/messages?offset=0",
        "/v1/topics/acme%orders/queues/0/messages?offset=0",
        "/v1/topics/acme%25orders",
        "/v1/topics/acme%25orders/messages?key=shared-key",
    ] {
        assert_problem(&globex.get(path).await, 400, "invalid-topic", path);
    }
    assert_problem(
        &globex
            .post("/v1/topics/acme%25orders/messages", &[], "x")
            .await,
        400,
        "invalid-topic",
        "produce to acme%orders",
    );
    assert_problem(
        &globex
            .post_json(
                "/v1/groups/acme%25billing/topics/orders/messages:receive",
                &json!({}),
            )
            .await,
        400,
        "invalid-group",
        "receive as acme%billing",
    );

    // Offsets of "billing" on "orders" for globex are globex's own: 1 message, all consumed.
    for (http, stored) in [(&globex, 1), (&acme, 3)] {
        let offsets = ok(
            &no_prefix(
                http.get("/v1/groups/billing/topics/orders/offsets").await,
                "offsets",
            ),
            "offsets",
        );
        assert_eq!(offsets["group"], "billing");
        assert_eq!(offsets["topic"], "orders");
        let queues = offsets["queues"].as_array().unwrap();
        let max: i64 = queues
            .iter()
            .map(|q| q["maxOffset"].as_i64().unwrap())
            .sum();
        assert_eq!(max, stored, "{offsets}");
        for q in queues {
            assert!(
                q["committedOffset"].as_i64().unwrap() <= q["maxOffset"].as_i64().unwrap(),
                "{offsets}"
            );
        }
    }

    // Reading acme's write-only topic, or writing its read-only one, is refused without naming
    // the broker-side topic.
    ok(
        &acme
            .json(
                Method::PUT,
                "/v1/topics/archive",
                &json!({"queues": 1, "perm": "r"}),
            )
            .await,
        "PUT read-only topic",
    );
    for (method, path) in [
        (
            Method::POST,
            "/v1/groups/billing/topics/drop-box/messages:receive",
        ),
        (
            Method::GET,
            "/v1/topics/drop-box/queues/0/messages?offset=0",
        ),
        (Method::POST, "/v1/topics/archive/messages"),
    ] {
        let answer = acme
            .send(method, path, &[("content-type", "application/json")], "{}")
            .await;
        // 404 (no readable queue) and 503 (no writable queue) today.
        assert!(answer.status.as_u16() >= 400, "{path}: {answer:?}");
        answer.problem(answer.status.as_u16());
        no_prefix(answer, path);
    }
    gw.stop().await;
}

#[tokio::test]
async fn receipts_are_bound_to_tenant_group_and_topic() {
    let gw = gateway();
    let acme = gw.http.with_token(token("acme", ALL));
    let globex = gw.http.with_token(token("globex", ALL));
    produce(&acme, "orders", "a1", &[]).await;
    produce(&acme, "payments", "p1", &[]).await;
    produce(&globex, "orders", "g1", &[]).await;
    let got = receive_all(&acme, "billing", "orders", 1, Duration::from_secs(10)).await;
    assert_eq!(bodies(&got), BTreeSet::from(["a1".to_string()]));
    let receipt = got[0]["receipt"].as_str().unwrap().to_string();

    // A one-character change anywhere but the very ends.
    let mut flipped = receipt.clone().into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();

    let misuses: Vec<(&Http, &str, String, &str)> = vec![
        (
            &globex,
            "billing/topics/orders",
            receipt.clone(),
            "globex with acme's receipt",
        ),
        (
            &acme,
            "shipping/topics/orders",
            receipt.clone(),
            "another group",
        ),
        (
            &acme,
            "billing/topics/payments",
            receipt.clone(),
            "another topic",
        ),
        (
            &acme,
            "billing/topics/orders",
            flipped.clone(),
            "one character flipped",
        ),
        (
            &acme,
            "billing/topics/orders",
            receipt[..receipt.len() - 4].to_string(),
            "truncated",
        ),
        (
            &acme,
            "billing/topics/orders",
            format!("{receipt}AAAA"),
            "extended",
        ),
        (
            &acme,
            "billing/topics/orders",
            "not-a-receipt".into(),
            "made up",
        ),
        (&acme, "billing/topics/orders", "A".repeat(5000), "huge"),
    ];
    for (http, target, sealed, case) in &misuses {
        let base = format!("/v1/groups/{target}/messages");
        for (action, body) in [
            ("ack", json!({"receipts": [sealed]})),
            ("nack", json!({"receipts": [sealed], "delaySeconds": 0})),
            (
                "changeVisibility",
                json!({"receipt": sealed, "invisibleSeconds": 1}),
            ),
        ] {
            let answer = http.post_json(&format!("{base}:{action}"), &body).await;
            assert_problem(
                &answer,
                400,
                "invalid-receipt",
                &format!("{case}: {action}"),
            );
            no_prefix(answer, case);
        }
    }
    // One bad receipt among good ones refuses the whole request.
    assert_problem(
        &acme
            .post_json(
                "/v1/groups/billing/topics/orders/messages:ack",
                &json!({"receipts": [receipt, flipped]}),
            )
            .await,
        400,
        "invalid-receipt",
        "good and bad together",
    );
    // None of that touched the message: acme's receipt still acks it, once.
    let acked = ok(
        &acme
            .post_json(
                "/v1/groups/billing/topics/orders/messages:ack",
                &json!({"receipts": [receipt]}),
            )
            .await,
        "acme ack",
    );
    assert_eq!(acked["results"][0]["status"], 200, "{acked}");
    // And globex's own message was never acked by anything above.
    let got = receive_all(&globex, "billing", "orders", 1, Duration::from_secs(10)).await;
    assert_eq!(bodies(&got), BTreeSet::from(["g1".to_string()]));
    gw.stop().await;
}

#[tokio::test]
async fn without_auth_names_are_used_as_given() {
    // Local mode's default: no [auth] section.
    let gw = TestGateway::local("");
    let http = &gw.http;
    let produced = produce(http, "orders", "from-http", &[]).await;
    assert_eq!(produced["topic"], "orders");

    // A RocketMQ-style client on the same cluster shares the topic under the same name.
    let config = ClientConfig::new(vec![gw.namesrv.clone()]);
    let admin = Admin::new(config.clone()).unwrap();
    let topics = admin.topics().await.unwrap();
    assert!(topics.iter().any(|t| t == "orders"), "{topics:?}");
    admin.shutdown();
    let producer = Producer::new(config, "native-producer").unwrap();
    producer
        .send(&Message::new("orders", b"from-native".to_vec()))
        .await
        .unwrap();
    producer.shutdown();
    let got = receive_all(http, "billing", "orders", 2, Duration::from_secs(20)).await;
    assert_eq!(
        bodies(&got),
        BTreeSet::from(["from-http".to_string(), "from-native".to_string()])
    );
    let listed = ok(&http.get("/v1/topics").await, "list");
    assert!(
        listed["topics"]
            .as_array()
            .unwrap()
            .contains(&json!("orders")),
        "{listed}"
    );

    // RocketMQ's name rule: [A-Za-z0-9_-], at most 127 characters.
    let longest = "t".repeat(127);
    ok(
        &http
            .post(&format!("/v1/topics/{longest}/messages"), &[], "x")
            .await,
        "127-character topic",
    );
    let too_long = "t".repeat(128);
    for name in [
        too_long.as_str(),
        "a%25b",
        "%25RETRY%25billing",
        "%C3%BCber",
        "a%20b",
        "a.b",
        "a%7Cb",
    ] {
        assert_problem(
            &http
                .post(&format!("/v1/topics/{name}/messages"), &[], "x")
                .await,
            400,
            "invalid-topic",
            name,
        );
        assert_problem(
            &http
                .post_json(
                    &format!("/v1/groups/{name}/topics/orders/messages:receive"),
                    &json!({}),
                )
                .await,
            400,
            "invalid-group",
            name,
        );
    }
    // A tenant-style name is just an invalid name without auth too.
    assert_problem(
        &http.get("/v1/topics/acme%25orders").await,
        400,
        "invalid-topic",
        "acme%orders",
    );
    gw.stop().await;
}

#[tokio::test]
async fn rate_limit_is_per_tenant() {
    let gw = TestGateway::local(&format!(
        "{}\n[rate_limit]\nenabled = true\nrequests_per_sec = 5.0\nburst = 5.0\n",
        auth_section()
    ));
    let acme = gw.http.with_token(token("acme", ALL));
    let globex = gw.http.with_token(token("globex", ALL));

    // Five quick requests pass and the sixth is refused. At 5 tokens/s a round slower than
    // 150 ms may have earned a token back; such a round proves nothing and is repeated.
    let mut refused = None;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1500)).await; // the bucket is full again
        let started = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(acme.get("/v1/topics").await);
        }
        if started.elapsed() > Duration::from_millis(150) {
            continue;
        }
        for (i, answer) in answers[..5].iter().enumerate() {
            ok(answer, &format!("request {}", i + 1));
        }
        refused = Some(answers.pop().unwrap());
        break;
    }
    let refused = refused.expect("a quick round of six requests");
    let problem = assert_problem(&refused, 429, "rate-limited", "sixth request");
    assert_eq!(problem["retryable"], true);
    let retry_after: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");

    // Another tenant has its own bucket.
    for _ in 0..3 {
        ok(
            &globex.get("/v1/topics").await,
            "globex while acme is limited",
        );
    }
    // After the wait acme is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    ok(&acme.get("/v1/topics").await, "acme after Retry-After");
    gw.stop().await;
}
