//! The `tern-namesrv` binary: announces its address, serves, exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tern_core::protocol::codes::{request, response};
use tern_core::protocol::{RemotingClient, RemotingCommand};

const BIN: &str = env!("CARGO_BIN_EXE_tern-namesrv");

#[tokio::test]
async fn announces_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("namesrv.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:1\"\nscan_interval_ms = 200\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--broker-timeout-secs", "30"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("tern-namesrv listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let client = RemotingClient::new();
    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(resp.code, response::SUCCESS);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tern-namesrv did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_configuration_is_refused() {
    let output = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--scan-interval-secs", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scan_interval_ms"), "{stderr}");
}
