//! Cross-process tests of NameServers and brokers: the real `tern-namesrv` and `tern-broker`
//! binaries on ephemeral loopback ports, driven over the remoting protocol.

#[path = "cluster/raw.rs"]
#[allow(dead_code)] // shared by several test binaries; each uses a part
mod raw;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_core::protocol::codes::response;
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_tests::process::{BrokerSpec, ServerProcess, start_broker, start_namesrv};
use tokio::io::AsyncWriteExt;

fn broker<'a>(
    name: &'a str,
    namesrv: &'a [String],
    store: &'a std::path::Path,
    sync: bool,
) -> BrokerSpec<'a> {
    BrokerSpec {
        name,
        cluster: "TestCluster",
        namesrv,
        store,
        sync_flush: sync,
        register_interval_secs: 1,
        listen: None,
    }
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_brokers_on_every_namesrv_and_silent_brokers_leave() {
    let ns1 = start_namesrv(&["--broker-timeout-secs", "3", "--scan-interval-secs", "1"]);
    let ns2 = start_namesrv(&["--broker-timeout-secs", "3", "--scan-interval-secs", "1"]);
    let namesrvs = vec![ns1.addr().to_string(), ns2.addr().to_string()];
    let dir = tempfile::tempdir().unwrap();
    let (store_a, store_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = start_broker(&broker("broker-a", &namesrvs, &store_a, false));
    let mut b = start_broker(&broker("broker-b", &namesrvs, &store_b, false));
    let client = RemotingClient::new();
    raw::create_topic(&client, a.addr(), "routes", 4).await;
    raw::create_topic(&client, b.addr(), "routes", 2).await;

    // Both NameServers learn both brokers (they never talk to each other).
    for ns in &namesrvs {
        wait_until(
            "both brokers in the route",
            Duration::from_secs(10),
            || async {
                raw::route(&client, ns, "routes")
                    .await
                    .is_some_and(|r| r.queue_datas.len() == 2)
            },
        )
        .await;
        let route = raw::route(&client, ns, "routes").await.unwrap();
        let addrs: BTreeSet<&str> = route
            .broker_datas
            .iter()
            .filter_map(|b| b.master_addr())
            .collect();
        assert_eq!(addrs, BTreeSet::from([a.addr(), b.addr()]));
    }
    assert!(
        raw::route(&client, &namesrvs[0], "no-such-topic")
            .await
            .is_none()
    );

    // SIGKILL closes b's connections: dropped at once, long before the 3 s timeout.
    b.kill();
    wait_until("killed broker gone", Duration::from_secs(2), || async {
        raw::route(&client, &namesrvs[0], "routes")
            .await
            .is_some_and(|r| r.queue_datas.len() == 1)
    })
    .await;

    // SIGSTOP keeps a's sockets open but stops its heartbeats: dropped after the timeout.
    a.pause();
    let stopped = Instant::now();
    for ns in &namesrvs {
        wait_until("silent broker gone", Duration::from_secs(10), || async {
            raw::route(&client, ns, "routes").await.is_none()
        })
        .await;
    }
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "dropped too early: {:?}",
        stopped.elapsed()
    );
    drop(a);
    drop((ns1, ns2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let b = start_broker(&broker("broker-lp", &[], &store, false));
    let client = Arc::new(RemotingClient::new());
    raw::create_topic(&client, b.addr(), "lp", 1).await;
    let addr = b.addr().to_string();
    let held = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = raw::pull(&client, &addr, "lp", 0, 0, 15_000, None).await;
            (result, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !held.is_finished(),
        "the pull is held while the queue is empty"
    );
    let sent = Instant::now();
    let resp = raw::send(&client, b.addr(), "lp", 0, b"wake".to_vec(), None)
        .await
        .unwrap();
    assert!(resp.is_success());
    let ((code, _, messages), _) = held.await.unwrap();
    let latency = sent.elapsed();
    assert_eq!(code, response::SUCCESS);
    assert_eq!(messages[0].body.as_ref(), b"wake");
    assert!(
        latency < Duration::from_secs(2),
        "woken by the arrival, not a timer: {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_do_not_hurt_other_connections() {
    let ns = start_namesrv(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let namesrvs = vec![ns.addr().to_string()];
    let b = start_broker(&broker("broker-g", &namesrvs, &store, false));
    let client = RemotingClient::new();
    raw::create_topic(&client, b.addr(), "g", 1).await;
    for target in [b.addr(), ns.addr()] {
        for garbage in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
            vec![
                0, 0, 0, 20, 0, 0, 0, 16, b'{', b'"', b'c', b'o', b'd', b'e', b'"', b':', b'x', 0,
                0, 0, 0, 0,
            ],
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
                .collect(),
        ] {
            let mut socket = tokio::net::TcpStream::connect(target).await.unwrap();
            let _ = socket.write_all(&garbage).await;
            let _ = socket.shutdown().await;
        }
        // The pooled connection opened before the garbage still works, and so do new ones.
        let resp = client
            .invoke(target, RemotingCommand::request(999_999), raw::CALL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
    }
    let resp = raw::send(&client, b.addr(), "g", 0, b"still fine".to_vec(), None)
        .await
        .unwrap();
    assert!(resp.is_success());
    let fresh = RemotingClient::new();
    // Long-poll: under ASYNC_FLUSH the message becomes pullable once dispatched, a moment later.
    let (code, _, messages) = raw::pull(&fresh, b.addr(), "g", 0, 0, 5_000, None).await;
    assert_eq!(code, response::SUCCESS);
    assert_eq!(messages.len(), 1);
    let ns_route = raw::route(&fresh, ns.addr(), "g").await;
    assert!(ns_route.is_some());
}

/// Acknowledged sends, shared by the sender tasks and the checker.
#[derive(Default)]
struct Ledger {
    acked: Mutex<HashSet<Vec<u8>>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sigkill_under_sync_flush_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cycles: usize = std::env::var("TERN_BROKER_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let ledger = Arc::new(Ledger::default());
    let mut broker_process: Option<ServerProcess> = None;
    for cycle in 0..cycles {
        let mut b = start_broker(&broker("broker-k", &[], &store, true));
        let client = Arc::new(RemotingClient::new());
        if cycle == 0 {
            raw::create_topic(&client, b.addr(), "durable", 4).await;
        }
        let addr = b.addr().to_string();
        let mut senders = Vec::new();
        for worker in 0..16 {
            let client = client.clone();
            let addr = addr.clone();
            let ledger = ledger.clone();
            senders.push(tokio::spawn(async move {
                for seq in 0u32.. {
                    let body = format!("c{cycle}-w{worker}-{seq}").into_bytes();
                    match raw::send(
                        &client,
                        &addr,
                        "durable",
                        (seq % 4) as i32,
                        body.clone(),
                        None,
                    )
                    .await
                    {
                        Ok(resp) if resp.is_success() => {
                            ledger.acked.lock().unwrap().insert(body);
                        }
                        Ok(resp) => panic!("send refused: {resp:?}"),
                        Err(_) => return, // the broker died: stop this sender
                    }
                }
            }));
        }
        // Kill at a random-ish moment while 16 senders are mid-flight.
        tokio::time::sleep(Duration::from_millis(700 + 300 * cycle as u64)).await;
        b.kill();
        for s in senders {
            s.await.unwrap();
        }
        broker_process = Some(b);
    }
    drop(broker_process);

    // Restart and read everything back: every acknowledged body present exactly once, every
    // record CRC-clean (checked by `drain`).
    let b = start_broker(&broker("broker-k", &[], &store, true));
    let client = RemotingClient::new();
    let mut seen = HashSet::new();
    for queue in 0..4 {
        for message in raw::drain(&client, b.addr(), "durable", queue).await {
            assert!(
                seen.insert(message.body.to_vec()),
                "duplicate {:?}",
                message.body
            );
        }
    }
    let acked: HashSet<Vec<u8>> = std::mem::take(&mut *ledger.acked.lock().unwrap());
    eprintln!(
        "{} acknowledged over {cycles} kills, {} stored",
        acked.len(),
        seen.len()
    );
    assert!(
        acked.len() > 100,
        "the test must have acknowledged something: {}",
        acked.len()
    );
    let lost: Vec<_> = acked
        .iter()
        .filter(|a| !seen.contains(*a))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {lost:?}",
        acked.iter().filter(|a| !seen.contains(*a)).count(),
        acked.len()
    );
    // Appends continue after recovery.
    assert!(
        raw::send(&client, b.addr(), "durable", 0, b"after".to_vec(), None)
            .await
            .unwrap()
            .is_success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_broker_down_cleanly() {
    use tern_core::protocol::codes::request;
    use tern_core::protocol::headers::UpdateConsumerOffsetRequestHeader;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let b = start_broker(&broker("broker-t", &[], &store, true));
    let client = RemotingClient::new();
    raw::create_topic(&client, b.addr(), "t", 1).await;
    assert!(
        raw::send(&client, b.addr(), "t", 0, b"x".to_vec(), None)
            .await
            .unwrap()
            .is_success()
    );
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "g".into(),
        topic: "t".into(),
        queue_id: 0,
        commit_offset: 1,
    };
    let resp = client
        .invoke(
            b.addr(),
            RemotingCommand::request_with(request::UPDATE_CONSUMER_OFFSET, &commit),
            raw::CALL_TIMEOUT,
        )
        .await
        .unwrap();
    assert!(resp.is_success());
    assert!(
        store.join("abort").exists(),
        "a running store has its abort marker"
    );

    let status = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        !store.join("abort").exists(),
        "clean shutdown removes abort"
    );
    let offsets = std::fs::read_to_string(store.join("config/consumerOffset.json")).unwrap();
    assert!(
        offsets.contains("t@g"),
        "offsets persisted at shutdown: {offsets}"
    );
    assert!(store.join("config/topics.json").exists());
}
