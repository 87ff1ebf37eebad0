//! Server-sent event streams of the gateway, through `tern-gateway --local`: group
//! subscriptions (manual and auto ack, `maxInFlight`), heartbeats, the replay stream with exact
//! `Last-Event-ID` resume, and what streams and long polls do when the gateway shuts down.

#[path = "gateway/support.rs"]
#[allow(dead_code)] // shared by several test binaries; each uses a part
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::*;
use tern_tests::http::{Event, EventStream, Http};

/// The next `message` event, with its data parsed and checked against its id.
async fn next_message(stream: &mut EventStream, timeout: Duration) -> Option<(Event, Value)> {
    let event = stream.next_message(timeout).await?;
    let data = event.json();
    Some((event, data))
}

/// Produces `n` messages to `topic`, message `i` to queue `i % queues` (by ordering key); the
/// produce answers in order.
async fn produce_spread(
    http: &Http,
    topic: &str,
    queues: i32,
    from: usize,
    n: usize,
) -> Vec<Value> {
    let mut produced = Vec::new();
    for i in from..from + n {
        let target = (i % queues as usize) as i64;
        let key = (0..)
            .map(|j| format!("q{target}-{j}"))
            .find(|k| hash_queue(k, queues) == target)
            .unwrap();
        let p = produce(
            http,
            topic,
            &[("tern-ordering-key", &key)],
            format!("m{i}").as_bytes(),
        )
        .await;
        assert_eq!(p["queueId"], target);
        produced.push(p);
    }
    produced
}

#[tokio::test]
async fn group_stream_with_manual_ack_keeps_at_most_max_in_flight() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "feed", 4).await;
    for i in 0..5 {
        produce(http, "feed", &[], format!("m{i}").as_bytes()).await;
    }
    let mut stream = http
        .events("/v1/groups/sg/topics/feed/events?maxInFlight=2", &[])
        .await;
    assert_eq!(
        stream.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    assert_eq!(stream.headers.get("cache-control").unwrap(), "no-cache");
    // Acks go through another connection.
    let acker = Http::new(gw.addr());
    let mut seen = BTreeMap::new();
    let mut in_flight = Vec::new();
    for _ in 0..2 {
        let (event, data) = next_message(&mut stream, Duration::from_secs(10))
            .await
            .expect("a message within maxInFlight");
        assert_eq!(event.event, "message");
        assert_eq!(event.id.as_deref(), data["messageId"].as_str(), "{data}");
        assert_eq!(data["topic"], "feed");
        assert_eq!(data["deliveryAttempt"], 1);
        assert!(data["body"].as_str().unwrap().starts_with('m'));
        assert!(
            seen.insert(data["messageId"].to_string(), data.clone())
                .is_none()
        );
        in_flight.push(data);
    }
    assert!(
        next_message(&mut stream, Duration::from_millis(1_500))
            .await
            .is_none(),
        "a third message while two are unacked"
    );
    // Each ack frees one slot: exactly one more comes.
    while seen.len() < 5 {
        let done = in_flight.remove(0);
        assert_eq!(
            ack(&acker, "sg", "feed", &[receipt(&done)]).await[0]["status"],
            200
        );
        let (_, data) = next_message(&mut stream, Duration::from_secs(10))
            .await
            .expect("the next message after an ack");
        assert_eq!(data["deliveryAttempt"], 1, "{data}");
        assert!(
            seen.insert(data["messageId"].to_string(), data.clone())
                .is_none(),
            "{data}"
        );
        in_flight.push(data);
        if seen.len() < 5 {
            assert!(
                next_message(&mut stream, Duration::from_millis(500))
                    .await
                    .is_none()
            );
        }
    }
    let receipts: Vec<&str> = in_flight.iter().map(receipt).collect();
    assert!(
        ack(&acker, "sg", "feed", &receipts)
            .await
            .iter()
            .all(|r| r["status"] == 200)
    );
    let mut b: Vec<String> = seen
        .values()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    b.sort();
    assert_eq!(b, ["m0", "m1", "m2", "m3", "m4"]);
    drop(stream);
    assert!(
        receive(http, "sg", "feed", json!({"max": 10}))
            .await
            .is_empty()
    );

    // Bad subscriptions are refused before a stream opens.
    for (query, status) in [
        ("/v1/groups/sg/topics/feed/events?ack=sometimes", 400),
        ("/v1/groups/sg/topics/feed/events?maxInFlight=0", 400),
        ("/v1/groups/sg/topics/feed/events?maxInFlight=1025", 400),
        ("/v1/groups/sg/topics/feed/events?colour=red", 400),
        ("/v1/groups/sg/topics/never-created/events", 404),
    ] {
        http.get(query).await.problem(status);
    }
}

#[tokio::test]
async fn group_stream_with_auto_ack_delivers_each_message_once() {
    // Unacked stream deliveries would come back after one second.
    let gw = Local::start_with(Some("[sse]\ninvisible_secs = 1\n"), |_| {});
    let http = &gw.http;
    create_topic(http, "auto", 4).await;
    for i in 0..6 {
        produce(http, "auto", &[], format!("m{i}").as_bytes()).await;
    }
    let mut stream = http
        .events(
            "/v1/groups/ag/topics/auto/events?ack=auto&maxInFlight=2",
            &[],
        )
        .await;
    let mut seen = BTreeSet::new();
    while seen.len() < 6 {
        let (_, data) = next_message(&mut stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("only {seen:?} arrived"));
        assert_eq!(data["deliveryAttempt"], 1, "{data}");
        assert!(
            seen.insert(data["body"].as_str().unwrap().to_string()),
            "delivered twice: {data}"
        );
    }
    // Nothing comes back, on the stream or elsewhere in the group.
    assert!(
        next_message(&mut stream, Duration::from_millis(2_500))
            .await
            .is_none()
    );
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        receive(http, "ag", "auto", json!({"max": 10}))
            .await
            .is_empty()
    );
    let offsets = ok(http.get(&group_path("ag", "auto", "offsets")).await);
    assert_eq!(offsets["lag"], 0, "{offsets}");
    // New messages still arrive on a new stream.
    let mut stream = http
        .events("/v1/groups/ag/topics/auto/events?ack=auto", &[])
        .await;
    produce(http, "auto", &[], b"later").await;
    let (_, data) = next_message(&mut stream, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(data["body"], "later");
}

#[tokio::test]
async fn manual_stream_redelivers_what_is_not_acked_in_time_and_nack_frees_a_slot() {
    let gw = Local::start_with(Some("[sse]\ninvisible_secs = 1\n"), |_| {});
    let http = &gw.http;
    create_topic(http, "late-acks", 1).await;
    produce(http, "late-acks", &[("tern-tag", "a")], b"m0").await;
    let mut stream = http
        .events("/v1/groups/lg/topics/late-acks/events?maxInFlight=1", &[])
        .await;
    let (_, first) = next_message(&mut stream, Duration::from_secs(10))
        .await
        .unwrap();
    let delivered = Instant::now();
    assert_eq!(
        (&first["body"], &first["deliveryAttempt"]),
        (&json!("m0"), &json!(1))
    );
    // Not acked within the stream's invisible time: the slot frees and it comes again.
    let (_, again) = next_message(&mut stream, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        delivered.elapsed() >= Duration::from_millis(900),
        "{:?}",
        delivered.elapsed()
    );
    assert_eq!(
        (&again["body"], &again["deliveryAttempt"]),
        (&json!("m0"), &json!(2))
    );
    let stale = ack(http, "lg", "late-acks", &[receipt(&first)]).await;
    assert_eq!(stale[0]["status"], 400, "{stale:?}");
    // A renewed delivery keeps its slot; a nack with a delay frees it for the next message.
    let renewed = ok(http
        .post_json(
            &group_path("lg", "late-acks", "messages:changeVisibility"),
            &json!({"receipt": receipt(&again), "invisibleSeconds": 30}),
        )
        .await);
    produce(http, "late-acks", &[("tern-tag", "b")], b"m1").await;
    assert!(
        next_message(&mut stream, Duration::from_millis(2_000))
            .await
            .is_none(),
        "a second message while the renewed one holds the only slot"
    );
    let nacked = ok(http
        .post_json(
            &group_path("lg", "late-acks", "messages:nack"),
            &json!({"receipts": [renewed["receipt"]], "delaySeconds": 30}),
        )
        .await);
    assert_eq!(nacked["results"], json!([{"status": 200}]));
    let (_, next) = next_message(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(next["body"], "m1");
    drop(stream);

    // Tag-filtered subscriptions: a group stream and a replay stream.
    let mut tagged = http
        .events("/v1/groups/tg/topics/late-acks/events?ack=auto&tag=b", &[])
        .await;
    let (_, b) = next_message(&mut tagged, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(b["body"], "m1");
    assert!(
        next_message(&mut tagged, Duration::from_millis(700))
            .await
            .is_none()
    );
    let mut replay = http
        .events("/v1/topics/late-acks/events?from=earliest&tag=a", &[])
        .await;
    let got = read_n(&mut replay, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].1["body"], "m0");
    assert!(
        next_message(&mut replay, Duration::from_millis(700))
            .await
            .is_none()
    );
    // Resuming after the only match skips the filtered-out message and waits for a new one.
    let mut resumed = http
        .events(
            "/v1/topics/late-acks/events?tag=a",
            &[("last-event-id", &got[0].0)],
        )
        .await;
    produce(http, "late-acks", &[("tern-tag", "a")], b"m2").await;
    let got = read_n(&mut resumed, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].1["body"], "m2");
}

#[tokio::test]
async fn streams_beyond_max_streams_are_refused_until_one_ends() {
    let gw = Local::start_with(Some("[sse]\nmax_streams = 1\n"), |_| {});
    let http = &gw.http;
    create_topic(http, "scarce", 1).await;
    let first = http.events("/v1/groups/mg/topics/scarce/events", &[]).await;
    let refused = http
        .try_events("/v1/topics/scarce/events", &[])
        .await
        .err()
        .expect("a second stream refused");
    let problem = refused.problem(503);
    assert_eq!(
        problem["type"],
        "https://tern.dev/problems/too-many-streams"
    );
    assert_eq!(problem["retryable"], true);
    // Other requests are not streams and still served.
    ok(http.get("/healthz").await);
    drop(first);
    // The slot frees once the gateway sees the client gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut second = loop {
        match http
            .try_events("/v1/topics/scarce/events?from=earliest", &[])
            .await
        {
            Ok(stream) => break stream,
            Err(answer) => {
                answer.problem(503);
                assert!(Instant::now() < deadline, "the slot was never freed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    produce(http, "scarce", &[], b"m").await;
    assert!(
        next_message(&mut second, Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn streams_send_pings() {
    let gw = Local::start_with(Some("[sse]\nping_interval_secs = 1\n"), |_| {});
    let http = &gw.http;
    create_topic(http, "quiet", 2).await;
    for path in [
        "/v1/groups/pg/topics/quiet/events",
        "/v1/topics/quiet/events?from=earliest",
    ] {
        let mut stream = http.events(path, &[]).await;
        let started = Instant::now();
        let mut pings = 0;
        while pings < 2 {
            let event = stream
                .next(Duration::from_millis(2_500))
                .await
                .unwrap_or_else(|| panic!("{path}: no ping after {:?}", started.elapsed()));
            assert_eq!(
                (event.event.as_str(), event.data.as_str()),
                (":", "ping"),
                "{path}"
            );
            pings += 1;
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1_500) && took < Duration::from_secs(4),
            "{path}: two pings took {took:?}"
        );
    }
}

/// Reads message events until `n` have come (panics after `timeout`).
async fn read_n(stream: &mut EventStream, n: usize, timeout: Duration) -> Vec<(String, Value)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (event, data) = next_message(stream, left)
            .await
            .unwrap_or_else(|| panic!("{} of {n} events arrived", got.len()));
        got.push((event.id.expect("replay events have ids"), data));
    }
    got
}

/// Each queue's messages come in queue order.
fn assert_queue_order(events: &[(String, Value)]) {
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, m) in events {
        let queue = m["queueId"].as_i64().unwrap();
        let offset = m["queueOffset"].as_i64().unwrap();
        if let Some(previous) = last.insert(queue, offset) {
            assert!(
                previous < offset,
                "queue {queue}: {offset} after {previous}"
            );
        }
    }
}

fn ids(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, m)| m["messageId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn replay_stream_delivers_every_queue_and_resumes_exactly() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "history", 8).await;
    let mut produced = produce_spread(http, "history", 8, 0, 48).await;
    let path = "/v1/topics/history/events?from=earliest";

    // Everything, from the start of every queue.
    let mut stream = http.events(path, &[]).await;
    let all = read_n(&mut stream, 48, Duration::from_secs(20)).await;
    assert!(
        next_message(&mut stream, Duration::from_millis(700))
            .await
            .is_none()
    );
    drop(stream);
    let expected: BTreeSet<String> = produced
        .iter()
        .map(|p| p["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids(&all).into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(ids(&all).len(), 48);
    assert_queue_order(&all);
    let queues: BTreeSet<i64> = all
        .iter()
        .map(|(_, m)| m["queueId"].as_i64().unwrap())
        .collect();
    assert_eq!(queues.len(), 8);
    for (id, m) in &all {
        assert!(id.starts_with("c1."), "{id}");
        assert_eq!(m["topic"], "history");
    }

    let seed: u64 = std::env::var("TERN_SSE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("TERN_SSE_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    // Resuming from the id of event k delivers exactly the events after it.
    for _ in 0..4 {
        let k = rng.random_range(0..all.len());
        let mut stream = http.events(path, &[("last-event-id", &all[k].0)]).await;
        let rest = read_n(&mut stream, all.len() - k - 1, Duration::from_secs(20)).await;
        assert!(
            next_message(&mut stream, Duration::from_millis(500))
                .await
                .is_none(),
            "more than the rest after event {k} (seed {seed})"
        );
        let want: BTreeSet<String> = ids(&all[k + 1..]).into_iter().collect();
        assert_eq!(
            ids(&rest).into_iter().collect::<BTreeSet<_>>(),
            want,
            "resume after event {k} (seed {seed})"
        );
        assert_queue_order(&rest);
    }

    // A client reconnecting at random points, with messages produced while it is away, sees
    // every message exactly once.
    let mut received: Vec<(String, Value)> = Vec::new();
    let mut last_id: Option<String> = None;
    let mut produced_more = false;
    let mut reconnects = 0;
    while received.len() < produced.len() || !produced_more {
        let headers: Vec<(&str, &str)> = last_id
            .as_deref()
            .map(|id| vec![("last-event-id", id)])
            .unwrap_or_default();
        let mut stream = http.events(path, &headers).await;
        let left = produced.len() - received.len();
        let take = rng.random_range(1..=left.clamp(1, 15)).min(left);
        let got = read_n(&mut stream, take, Duration::from_secs(20)).await;
        drop(stream);
        reconnects += 1;
        if let Some((id, _)) = got.last() {
            last_id = Some(id.clone());
        }
        received.extend(got);
        if !produced_more && received.len() >= 20 {
            produced.extend(produce_spread(http, "history", 8, 48, 16).await);
            produced_more = true;
        }
    }
    let mut stream = http
        .events(path, &[("last-event-id", last_id.as_deref().unwrap())])
        .await;
    assert!(
        next_message(&mut stream, Duration::from_millis(700))
            .await
            .is_none(),
        "seed {seed}"
    );
    assert!(reconnects >= 5, "{reconnects} reconnects (seed {seed})");
    let got = ids(&received);
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "a repeat (seed {seed})");
    let expected: BTreeSet<String> = produced
        .iter()
        .map(|p| p["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(unique, expected, "a gap (seed {seed})");
    assert_queue_order(&received);

    // An id that is not a cursor of this stream is refused.
    let bad = http
        .send(
            hyper::Method::GET,
            "/v1/topics/history/events",
            &[("last-event-id", "not-a-cursor")],
            "",
        )
        .await;
    assert_eq!(
        bad.problem(400)["type"],
        "https://tern.dev/problems/invalid-last-event-id"
    );
    http.get("/v1/topics/history/events?from=middle")
        .await
        .problem(400);
    http.get("/v1/topics/never-created/events")
        .await
        .problem(404);
}

#[tokio::test]
async fn replay_from_latest_sees_only_new_messages() {
    let gw = Local::start();
    let http = &gw.http;
    create_topic(http, "news", 4).await;
    produce_spread(http, "news", 4, 0, 6).await;
    pull_all_eventually(http, "news", 6).await;
    let mut latest = http.events("/v1/topics/news/events?from=latest", &[]).await;
    let mut default = http.events("/v1/topics/news/events", &[]).await;
    let fresh = produce_spread(http, "news", 4, 100, 3).await;
    let want: BTreeSet<String> = fresh
        .iter()
        .map(|p| p["messageId"].as_str().unwrap().to_string())
        .collect();
    for stream in [&mut latest, &mut default] {
        let got = read_n(stream, 3, Duration::from_secs(10)).await;
        assert_eq!(ids(&got).into_iter().collect::<BTreeSet<_>>(), want);
        assert!(
            next_message(stream, Duration::from_millis(700))
                .await
                .is_none()
        );
    }
}

#[tokio::test]
async fn shutdown_ends_streams_cleanly_and_answers_long_polls() {
    let gw = Local::start();
    let http = gw.http.clone();
    create_topic(&http, "closing", 2).await;
    create_topic(&http, "idle", 1).await;
    produce(&http, "closing", &[], b"before").await;
    let mut group = http
        .events("/v1/groups/cg/topics/closing/events", &[])
        .await;
    let (_, first) = next_message(&mut group, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first["body"], "before");
    let mut replay = http
        .events("/v1/topics/closing/events?from=earliest", &[])
        .await;
    read_n(&mut replay, 1, Duration::from_secs(10)).await;
    let mut over_h2 = Http::new_h2c(gw.addr())
        .events("/v1/topics/closing/events?from=earliest", &[])
        .await;
    read_n(&mut over_h2, 1, Duration::from_secs(10)).await;
    // Long polls in flight when the signal comes.
    let receiver = Http::new(gw.addr());
    let receiving = tokio::spawn(async move {
        let answer = receiver
            .post_json(
                &group_path("cg", "idle", "messages:receive"),
                &json!({"max": 1, "waitSeconds": 4}),
            )
            .await;
        (answer, Instant::now())
    });
    let puller = Http::new(gw.addr());
    let pulling = tokio::spawn(async move {
        let answer = puller
            .get("/v1/topics/idle/queues/0/messages?offset=0&wait=4")
            .await;
        (answer, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(600)).await;

    let signalled = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || {
        let (status, _dir) = gw.terminate();
        (status, Instant::now())
    });
    for (what, stream) in [
        ("group", &mut group),
        ("replay", &mut replay),
        ("h2c replay", &mut over_h2),
    ] {
        assert!(
            stream.ended_within(Duration::from_secs(3)).await,
            "{what} stream still open"
        );
        assert_eq!(
            stream.error(),
            None,
            "the {what} stream broke off instead of ending"
        );
    }
    let ended = signalled.elapsed();
    assert!(ended < Duration::from_secs(3), "{ended:?}");

    // The long polls were waiting when the signal came, and still get their answer.
    for (what, task) in [("receive", receiving), ("pull", pulling)] {
        let (answer, at) = task.await.unwrap();
        assert_eq!(answer.status, 200, "{what}: {:?}", answer.body);
        assert_eq!(answer.json()["messages"], json!([]), "{what}");
        assert!(at > signalled, "{what} answered before the signal");
        assert!(
            at - signalled < Duration::from_secs(6),
            "{what}: {:?}",
            at - signalled
        );
    }

    let (status, exited) = stopping.await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        exited - signalled < Duration::from_secs(8),
        "exit took {:?}",
        exited - signalled
    );
}
