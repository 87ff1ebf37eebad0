//! The gateway against slow and oversized clients, end to end: a real `tern-gateway --local` with
//! small limits, and clients that stall (partial heads and bodies, idle connections) or send too
//! much (heads over the limits, over HTTP/1 and HTTP/2). They must be cut off, with a clear answer
//! or what hyper itself answers below the router, without harming anyone else, and must store
//! nothing; a head limit the gateway cannot enforce is refused at start.
//!
//! The other bad input is tested in `gateway_bad_input.rs`.

#[allow(dead_code)] // shared with the other gateway tests; each uses a part
mod gateway_support;

use std::time::{Duration, Instant};

use gateway_support::*;
use hyper::Method;
use tern_tests::http::{Http, RawConn, RawOutcome};

fn gateway() -> TestGateway {
    TestGateway::local(&limits_section())
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
