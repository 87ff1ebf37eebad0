//! Compatibility with a RocketMQ client we did not write: crates.io `rocketmq-client-rust` 1.0.0
//! (`tests/compat/rocketmq-client-rust`) sends messages with its `DefaultMQProducer` and consumes
//! them with a clustering `DefaultMQPushConsumer` through tern-namesrv + tern-broker.
//!
//! Ignored by default because the client takes about 10 minutes to build here. Run it with
//!
//! ```sh
//! cargo build --workspace --bins
//! cargo test -p tern-tests --test compat_rocketmq_client -- --ignored --nocapture
//! ```
//!
//! The probe builds into `target/compat` (or `$TERN_COMPAT_TARGET_DIR`), so reruns are fast.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::path::Path;
use std::process::Command;

use tern_core::protocol::RemotingClient;
use tern_tests::process::{BrokerSpec, start_broker, start_namesrv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds rocketmq-client-rust (~10 min); run with --ignored"]
async fn rocketmq_client_rust_produces_and_push_consumes() {
    let ns = start_namesrv(&[]);
    let namesrvs = vec![ns.addr().to_string()];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let broker = start_broker(&BrokerSpec {
        name: "broker-compat",
        cluster: "DefaultCluster",
        namesrv: &namesrvs,
        store: &store,
        sync_flush: false,
        register_interval_secs: 1,
        listen: None,
    });
    let client = RemotingClient::new();
    raw::create_topic(&client, broker.addr(), "CompatTopic", 4).await;
    // Wait until the NameServer has the topic's route (registration follows topic creation).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while raw::route(&client, ns.addr(), "CompatTopic")
        .await
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "route never appeared");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/rocketmq-client-rust/Cargo.toml");
    let count = std::env::var("TERN_COMPAT_COUNT").unwrap_or_else(|_| "200".into());
    let output = tokio::task::spawn_blocking(move || {
        let target = std::env::var("TERN_COMPAT_TARGET_DIR").unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/compat")
                .display()
                .to_string()
        });
        Command::new(env!("CARGO"))
            .env("CARGO_TARGET_DIR", target)
            .args(["run", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .args(["--", &namesrvs[0], "CompatTopic", "compat_group", &count])
            .output()
            .expect("run the compat probe")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        output.status.success() && stdout.contains("OK received"),
        "probe failed ({}):\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        output.status,
        tail(&stdout),
        tail(&stderr)
    );
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
}
