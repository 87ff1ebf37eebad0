//! The gateway's JWT auth, end to end: real `tern-gateway --local` processes configured with the
//! test keys of `gateway/tests/fixtures`, and tokens signed here.
//!
//! - Every algorithm and key source accepted; every kind of bad token refused with 401,
//!   `WWW-Authenticate: Bearer` and a problem.
//! - Algorithms outside the configured allowlist refused.
//! - Scopes (403).
//! - `?access_token=` on event streams only.
//!
//! Tenancy, receipts, the gateway without auth and the rate limit are tested in
//! `gateway_tenancy.rs`.

#[allow(dead_code)] // shared with the other gateway tests; each uses a part
mod gateway_support;

use std::collections::BTreeSet;
use std::time::Duration;

use gateway_support::*;
use hyper::Method;
use serde_json::{Value, json};
use tern_tests::http::Http;

fn gateway() -> TestGateway {
    TestGateway::local(&auth_section())
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
