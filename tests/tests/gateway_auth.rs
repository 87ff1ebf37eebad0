//! The gateway's JWT auth, tenancy and rate limit, end to end: real `tern-gateway --local`
//! processes configured with the test keys of `gateway/tests/fixtures`, and tokens signed here.
//!
//! - Auth: every algorithm and key source accepted; every kind of bad token refused with 401,
//!   `WWW-Authenticate: Bearer` and a problem; scopes (403); `?access_token=` on event streams
//!   only.
//! - Tenancy: two tenants with the same topic names never see each other's topics, messages,
//!   receipts or offsets, and never see the broker-side `tenant%` prefix.
//! - Rate limit: per tenant, 429 with `Retry-After`.

#[allow(dead_code)] // shared with gateway_bad_input; each uses a part
mod gateway_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gateway_support::*;
use hyper::Method;
use serde_json::{Value, json};
use tern_core::client::{Admin, ClientConfig, Message, Producer};
use tern_tests::http::{Answer, Http};

/// A scope that allows everything.
const ALL: &str = "admin publish:* consume:*";

fn gateway() -> TestGateway {
    TestGateway::local(&auth_section())
}

/// Produces `body` to `topic`, asserting 200; returns the result JSON.
async fn produce(http: &Http, topic: &str, body: &str, headers: &[(&str, &str)]) -> Value {
    let answer = http
        .post(
            &format!("/v1/topics/{topic}/messages"),
            headers,
            body.to_string(),
        )
        .await;
    ok(&answer, &format!("produce {body:?} to {topic}"))
}

/// Receives from `group`/`topic` until `count` messages came or `timeout` passed (one receive may
/// not reach every queue); returns them.
async fn receive_all(
    http: &Http,
    group: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    while messages.len() < count && Instant::now() < deadline {
        let answer = http
            .post_json(
                &format!("/v1/groups/{group}/topics/{topic}/messages:receive"),
                &json!({"max": 32, "waitSeconds": 1, "invisibleSeconds": 60}),
            )
            .await;
        let json = ok(&answer, &format!("receive {group}/{topic}"));
        messages.extend(json["messages"].as_array().cloned().unwrap_or_default());
    }
    messages
}

fn bodies(messages: &[Value]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn every_algorithm_and_key_source_is_accepted() {
    let gw = gateway();
    let signers = [
        ("HS256 secret", Signer::hs256(HS_SECRET.as_bytes())),
        ("HS256 JWKS hs-1", Signer::hs256(JWKS_HS_SECRET).kid("hs-1")),
        ("RS256 PEM", Signer::rs256("rsa_private.pem")),
        (
            "RS256 JWKS rsa-2",
            Signer::rs256("rsa2_private.pem").kid("rsa-2"),
        ),
        // Without kid every key of the kind is tried, the JWKS keys included.
        ("RS256 JWKS without kid", Signer::rs256("rsa2_private.pem")),
        ("ES256 PEM", Signer::es256("ec_private.pem")),
        (
            "ES256 JWKS ec-1",
            Signer::es256("ec_private.pem").kid("ec-1"),
        ),
        ("EdDSA PEM", Signer::eddsa("ed_private.pem")),
        (
            "EdDSA JWKS ed-2",
            Signer::eddsa("ed2_private.pem").kid("ed-2"),
        ),
    ];
    let mut sent = BTreeSet::new();
    for (case, signer) in &signers {
        let http = gw.http.with_token(signer.sign(&claims("acme", ALL)));
        let produced = produce(&http, "orders", case, &[]).await;
        assert_eq!(produced["topic"], "orders", "{case}");
        ok(&http.get("/v1/topics").await, case);
        sent.insert(case.to_string());
    }
    // Clock skew: expired 10 s ago and valid from 10 s ahead are within the 30 s leeway; the
    // audience may be a list.
    let signer = Signer::es256("ec_private.pem");
    let mut skewed = claims("acme", ALL);
    skewed["exp"] = json!(now() - 10);
    skewed["nbf"] = json!(now() + 10);
    skewed["aud"] = json!(["someone-else", AUDIENCE]);
    let http = gw.http.with_token(signer.sign(&skewed));
    produce(&http, "orders", "skewed", &[]).await;
    sent.insert("skewed".to_string());

    // Every one of them was stored for tenant acme.
    let http = gw.http.with_token(token("acme", ALL));
    let received = receive_all(
        &http,
        "audit",
        "orders",
        sent.len(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(bodies(&received), sent);
    gw.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_bearer_challenge() {
    let gw = gateway();
    let hs = Signer::hs256(HS_SECRET.as_bytes());
    let valid = hs.sign(&claims("acme", ALL));
    let with = |mutate: &dyn Fn(&mut Value)| {
        let mut c = claims("acme", ALL);
        mutate(&mut c);
        c
    };
    let without = |field: &str| {
        let mut c = claims("acme", ALL);
        c.as_object_mut().unwrap().remove(field);
        c
    };
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64url(
            with(&|c| c["tenant"] = json!("globex"))
                .to_string()
                .as_bytes()
        ),
        parts[2]
    );
    let mut flipped_signature = b64url_decode(parts[2]);
    flipped_signature[0] ^= 1;
    let flipped_signature = format!("{}.{}.{}", parts[0], parts[1], b64url(&flipped_signature));
    let none = hand_token(
        &json!({"alg": "none", "typ": "JWT"}),
        &claims("acme", ALL),
        b"",
    );
    let none_signed = hand_token(
        &json!({"alg": "none"}),
        &claims("acme", ALL),
        &b64url_decode(parts[2]),
    );
    let rsa_public_pem = std::fs::read(fixture("rsa_public.pem")).unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired beyond the leeway",
            hs.sign(&with(&|c| c["exp"] = json!(now() - 60))),
            "expired",
        ),
        (
            "nbf in the future",
            hs.sign(&with(&|c| c["nbf"] = json!(now() + 120))),
            "not valid yet",
        ),
        (
            "signed with another secret",
            Signer::hs256(b"another-secret-of-at-least-32-bytes!!").sign(&claims("acme", ALL)),
            "signature",
        ),
        ("signature altered", flipped_signature, "signature"),
        ("payload tampered", tampered_payload, "signature"),
        (
            "RS256 with a key the gateway does not have",
            Signer::rs256("rsa_private.pem")
                .kid("rsa-2")
                .sign(&claims("acme", ALL)),
            "signature",
        ),
        ("alg none", none, "algorithm"),
        ("alg none with a signature", none_signed, "algorithm"),
        (
            "HS384 (not in the allowlist)",
            Signer::hs384(HS_SECRET.as_bytes()).sign(&claims("acme", ALL)),
            "algorithm",
        ),
        (
            // The classic confusion: the RSA public key used as an HMAC secret.
            "HS256 keyed with the RSA public key",
            Signer::hs256(&rsa_public_pem).sign(&claims("acme", ALL)),
            "signature",
        ),
        ("no exp", hs.sign(&without("exp")), "expiry"),
        (
            "wrong issuer",
            hs.sign(&with(&|c| c["iss"] = json!("https://evil.test/"))),
            "issuer",
        ),
        ("no issuer", hs.sign(&without("iss")), "issuer"),
        (
            "wrong audience",
            hs.sign(&with(&|c| c["aud"] = json!("not-tern"))),
            "audience",
        ),
        ("no audience", hs.sign(&without("aud")), "audience"),
        ("no tenant", hs.sign(&without("tenant")), "tenant"),
        (
            "tenant with a %",
            hs.sign(&with(&|c| c["tenant"] = json!("ac%me"))),
            "tenant",
        ),
        (
            "tenant not a string",
            hs.sign(&with(&|c| c["tenant"] = json!(7))),
            "tenant",
        ),
        ("not a JWT", "not-a-jwt".to_string(), "well-formed"),
    ];
    for (case, token, reason) in &cases {
        let http = gw.http.with_token(token.clone());
        let answer = http
            .post("/v1/topics/orders/messages", &[], "must not be stored")
            .await;
        assert_unauthorized(&answer, reason, case);
        assert_unauthorized(&http.get("/v1/topics").await, reason, case);
    }

    // No token, an empty one, another scheme.
    assert_unauthorized(
        &gw.http.post("/v1/topics/orders/messages", &[], "x").await,
        "token",
        "no token",
    );
    for (case, value) in [
        ("empty bearer", "Bearer"),
        ("basic auth", "Basic YWNtZTpzZWNyZXQ="),
        ("token without scheme", valid.as_str()),
    ] {
        let answer = gw
            .http
            .send(
                Method::GET,
                "/v1/topics",
                &[("authorization", value)],
                Vec::new(),
            )
            .await;
        assert_eq!(answer.status, 401, "{case}");
        answer.problem(401);
        assert!(
            answer
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{case}"
        );
    }

    // Nothing was stored by any refused request: the topic does not even exist.
    let http = gw.http.with_token(valid);
    assert_problem(
        &http.get("/v1/topics/orders").await,
        404,
        "not-found",
        "topic after refused produces",
    );
    gw.stop().await;
}

#[tokio::test]
async fn algorithms_outside_the_configured_allowlist_are_refused() {
    let gw = gateway();
    // A second gateway on the same cluster accepting only RS256 and ES256; its JWKS still holds
    // HS256 and EdDSA keys, which must be skipped.
    let config = format!(
        "auto_create_topics = true\n[auth]\nenabled = true\nalgorithms = [\"RS256\", \"ES256\"]\npublic_key_files = [{}, {}]\n\
         jwks_file = {}\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n",
        toml_path(&fixture("rsa_public.pem")),
        toml_path(&fixture("ec_public.pem")),
        toml_path(&fixture("jwks.json")),
    );
    let (strict_process, strict) = gw.another("strict", &config);
    let c = claims("acme", ALL);
    for (case, signer) in [
        ("RS256", Signer::rs256("rsa_private.pem")),
        ("ES256 JWKS", Signer::es256("ec_private.pem").kid("ec-1")),
    ] {
        let http = strict.with_token(signer.sign(&c));
        produce(&http, "orders", case, &[]).await;
    }
    for (case, signer) in [
        ("HS256 JWKS hs-1", Signer::hs256(JWKS_HS_SECRET).kid("hs-1")),
        (
            "EdDSA JWKS ed-2",
            Signer::eddsa("ed2_private.pem").kid("ed-2"),
        ),
        ("EdDSA", Signer::eddsa("ed_private.pem")),
    ] {
        let token = signer.sign(&c);
        let answer = strict
            .with_token(token.clone())
            .post("/v1/topics/orders/messages", &[], "refused")
            .await;
        assert_unauthorized(&answer, "algorithm", case);
        // The same token is good on the gateway that allows the algorithm.
        produce(&gw.http.with_token(token), "orders", case, &[]).await;
    }
    drop(strict_process);
    gw.stop().await;
}

#[tokio::test]
async fn scopes_gate_publish_consume_and_admin() {
    let gw = gateway();
    let admin = gw.http.with_token(token("acme", "admin"));
    let publisher = gw.http.with_token(token("acme", "publish:orders"));
    let ord_consumer = gw.http.with_token(token("acme", "consume:ord*"));
    let everything = gw.http.with_token(token("acme", ALL));

    // PUT /v1/topics needs admin; a refused PUT creates nothing.
    let put = |http: &Http, topic: &str| {
        let http = http.clone();
        let path = format!("/v1/topics/{topic}");
        async move { http.json(Method::PUT, &path, &json!({"queues": 2})).await }
    };
    for http in [&publisher, &ord_consumer] {
        assert_problem(&put(http, "billing").await, 403, "forbidden", "PUT topic");
    }
    assert_problem(
        &everything.get("/v1/topics/billing").await,
        404,
        "not-found",
        "billing after refused PUTs",
    );
    for topic in ["orders", "orders-eu", "billing"] {
        ok(&put(&admin, topic).await, "admin PUT topic");
    }
    // admin alone neither publishes nor consumes.
    assert_problem(
        &admin.post("/v1/topics/orders/messages", &[], "x").await,
        403,
        "forbidden",
        "admin produce",
    );

    // publish:orders publishes to orders only, and cannot consume it.
    let id = produce(&publisher, "orders", "o1", &[("tern-keys", "k1")]).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    for topic in ["orders-eu", "billing"] {
        assert_problem(
            &publisher
                .post(&format!("/v1/topics/{topic}/messages"), &[], "x")
                .await,
            403,
            "forbidden",
            "publish:orders producing elsewhere",
        );
    }
    let consume_paths = |topic: &str| {
        vec![
            (
                Method::POST,
                format!("/v1/groups/g/topics/{topic}/messages:receive"),
            ),
            (
                Method::GET,
                format!("/v1/topics/{topic}/queues/0/messages?offset=0"),
            ),
            (Method::GET, format!("/v1/topics/{topic}/messages/{id}")),
            (Method::GET, format!("/v1/topics/{topic}/messages?key=k1")),
            (Method::GET, format!("/v1/groups/g/topics/{topic}/offsets")),
            (Method::GET, format!("/v1/groups/g/topics/{topic}/events")),
            (Method::GET, format!("/v1/topics/{topic}/events")),
        ]
    };
    let send = |http: &Http, method: Method, path: String| {
        let http = http.clone();
        async move {
            let headers = [("content-type", "application/json")];
            let body = if method == Method::POST { "{}" } else { "" };
            http.send(method, &path, &headers, body.to_string()).await
        }
    };
    for (method, path) in consume_paths("orders") {
        let answer = send(&publisher, method, path.clone()).await;
        assert_problem(&answer, 403, "forbidden", &format!("publisher on {path}"));
    }

    // consume:ord* consumes orders-eu (and orders), not billing, and publishes nothing.
    produce(&everything, "orders-eu", "eu1", &[]).await;
    produce(&everything, "billing", "b1", &[]).await;
    let received = receive_all(&ord_consumer, "g", "orders-eu", 1, Duration::from_secs(10)).await;
    assert_eq!(bodies(&received), BTreeSet::from(["eu1".to_string()]));
    let received = receive_all(&ord_consumer, "g", "orders", 1, Duration::from_secs(10)).await;
    assert_eq!(bodies(&received), BTreeSet::from(["o1".to_string()]));
    for (method, path) in consume_paths("billing") {
        let answer = send(&ord_consumer, method, path.clone()).await;
        assert_problem(
            &answer,
            403,
            "forbidden",
            &format!("consume:ord* on {path}"),
        );
    }
    assert_problem(
        &ord_consumer
            .post("/v1/topics/orders-eu/messages", &[], "x")
            .await,
        403,
        "forbidden",
        "consume:ord* producing",
    );
    let listed = ok(&ord_consumer.get("/v1/topics").await, "list")["topics"].clone();
    assert_eq!(listed, json!(["orders", "orders-eu"]));

    // Offsets: reading needs consume; a reset needs admin too.
    ok(
        &ord_consumer.get("/v1/groups/g/topics/orders/offsets").await,
        "offsets",
    );
    let reset = |http: &Http| {
        let http = http.clone();
        async move {
            http.post_json(
                "/v1/groups/g/topics/orders/offsets:reset",
                &json!({"to": "earliest"}),
            )
            .await
        }
    };
    assert_problem(&reset(&ord_consumer).await, 403, "forbidden", "reset");
    assert_problem(
        &reset(&admin).await,
        403,
        "forbidden",
        "reset without consume",
    );
    ok(&reset(&everything).await, "reset with admin and consume");

    // Other admin operations.
    assert_problem(
        &ord_consumer
            .json(Method::PUT, "/v1/groups/g", &json!({"fifo": false}))
            .await,
        403,
        "forbidden",
        "PUT group",
    );
    assert_problem(
        &publisher
            .send(Method::DELETE, "/v1/topics/orders", &[], Vec::new())
            .await,
        403,
        "forbidden",
        "DELETE topic",
    );
    ok(
        &everything.get("/v1/topics/orders").await,
        "orders still there",
    );
    gw.stop().await;
}

#[tokio::test]
async fn event_streams_take_access_token_and_nothing_else_does() {
    let gw = gateway();
    let token = token("acme", ALL);
    let http = gw.http.with_token(token.clone());
    produce(&http, "orders", "streamed", &[]).await;
    // A topic named `events`, so a path ending in /events is not always a stream.
    produce(&http, "events", "e1", &[]).await;
    let id = produce(&http, "orders", "looked-up", &[]).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();

    // The streams accept the token in the query (EventSource cannot send headers).
    let mut group = gw
        .http
        .events(
            &format!("/v1/groups/sse/topics/orders/events?ack=auto&access_token={token}"),
            &[],
        )
        .await;
    let event = group
        .next_message(Duration::from_secs(10))
        .await
        .expect("a message on the group stream");
    assert!(
        ["streamed", "looked-up"].contains(&event.json()["body"].as_str().unwrap()),
        "{event:?}"
    );
    drop(group);
    let mut replay = gw
        .http
        .events(
            &format!("/v1/topics/orders/events?from=earliest&access_token={token}"),
            &[],
        )
        .await;
    let event = replay
        .next_message(Duration::from_secs(10))
        .await
        .expect("a message on the replay stream");
    assert_eq!(event.event, "message");
    drop(replay);

    // Streams still need a valid token.
    let bad = Signer::hs256(b"another-secret-of-at-least-32-bytes!!").sign(&claims("acme", ALL));
    for path in [
        "/v1/groups/sse/topics/orders/events".to_string(),
        format!("/v1/groups/sse/topics/orders/events?access_token={bad}"),
        format!("/v1/topics/orders/events?from=earliest&access_token={bad}"),
        "/v1/topics/orders/events?access_token=".to_string(),
    ] {
        let answer = gw.http.get(&path).await;
        assert_eq!(answer.status, 401, "{path}");
        answer.problem(401);
    }

    // Everything else ignores a query token: 401 as without one, and nothing happens.
    let q = format!("access_token={token}");
    let refused: Vec<(Method, String)> = vec![
        (Method::GET, format!("/v1/topics?{q}")),
        (Method::GET, format!("/v1/topics/orders?{q}")),
        (
            Method::GET,
            format!("/v1/topics/orders/queues/0/messages?offset=0&{q}"),
        ),
        (Method::POST, format!("/v1/topics/orders/messages?{q}")),
        (
            Method::POST,
            format!("/v1/groups/g/topics/orders/messages:receive?{q}"),
        ),
        (
            Method::GET,
            format!("/v1/groups/g/topics/orders/offsets?{q}"),
        ),
        // Paths that end in /events without being streams.
        (Method::GET, format!("/v1/topics/events?{q}")),
        (Method::PUT, format!("/v1/topics/events?{q}")),
        (Method::DELETE, format!("/v1/topics/events?{q}")),
        (
            Method::GET,
            format!("/v1/topics/orders/messages/events?{q}"),
        ),
        (Method::GET, format!("/v1/topics/orders/messages/{id}?{q}")),
    ];
    for (method, path) in refused {
        let answer = gw
            .http
            .send(
                method.clone(),
                &path,
                &[("content-type", "application/json")],
                "{}",
            )
            .await;
        assert_unauthorized(&answer, "token", &format!("{method} {path}"));
    }
    ok(
        &http.get("/v1/topics/events").await,
        "topic events still there",
    );
    gw.stop().await;
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
