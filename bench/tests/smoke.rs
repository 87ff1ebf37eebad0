//! Proves that `tern-bench store` runs end to end: a `--quick` run with tiny budgets must succeed,
//! print every section of the report and write a JSON file with every scenario in it.

use std::process::Command;

#[test]
fn store_quick_run_prints_a_full_report() {
    // Under the target directory, i.e. on a real disk, not a possibly memory-backed /tmp.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let json = dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
        .args([
            "store",
            "--quick",
            "--bodies",
            "128,1024",
            "--sync-appenders",
        ])
        .arg("1,64")
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running tern-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tern-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    for expected in [
        "store ASYNC_FLUSH, 1 appender",
        "store SYNC_FLUSH, 1 appender",
        "store SYNC_FLUSH, 64 appenders",
        "raw write(2) per record + fsync at end",
        "raw 1 MiB writes + fsync at end",
        "raw 4 KiB write + fdatasync, repeated",
        "raw 64 records per write + fdatasync, repeated",
        "### Ratios",
        "### Targets",
        "Not judged in a --quick run",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("valid JSON");
    // 2 bodies x (2 raw + 1 async + 2 sync + 1 ideal group commit) + 1 fdatasync.
    assert_eq!(report["medians"].as_array().map(Vec::len), Some(13));
    let ratios = report["ratios"].as_array().expect("ratios");
    assert!(
        ratios
            .iter()
            .any(|r| r["id"] == "sync1_p50_vs_raw_fdatasync_p50"),
        "{ratios:?}"
    );
    for row in report["medians"].as_array().expect("medians") {
        assert!(
            row["figures"]["mb_per_s"].as_f64().is_some_and(|v| v > 0.0),
            "{row}"
        );
    }

    // The benchmark cleans up after itself: only our JSON file is left.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listing")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("results.json")]);
}

#[test]
fn invalid_arguments_fail_cleanly() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
        .args(["store", "--quick", "--bodies", "0"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("running tern-bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--bodies"), "{stderr}");
}

/// `tern-bench broker` end to end, in process (the `tern-broker` binary belongs to another
/// package, so a test of this one cannot rely on it being built): every scenario group runs,
/// the report has every section, the JSON every scenario, and nothing is left behind.
#[test]
fn broker_quick_run_prints_a_full_report() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let json = dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
        .args(["broker", "--quick", "--in-process", "--duration", "0.1"])
        .args([
            "--warmup",
            "0.05",
            "--in-flight",
            "1,64",
            "--header",
            "binary",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running tern-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tern-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "broker ASYNC_FLUSH, 64 in flight",
        "broker SYNC_FLUSH, 1 in flight",
        "end-to-end ASYNC_FLUSH",
        "end-to-end SYNC_FLUSH",
        "loopback TCP echo, 64 in flight",
        "remoting echo, 1 in flight",
        "raw 64 records per write + fdatasync, repeated",
        "### Ratios",
        "ASYNC / remoting echo",
        "### Targets",
        "Not judged in a --quick run",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("valid JSON");
    // 2 sizes x 2 in-flight counts x (TCP echo + remoting echo + group commit + 2 flush modes)
    // + 2 end-to-end probes.
    let medians = report["medians"].as_array().expect("medians");
    assert_eq!(medians.len(), 22, "{medians:?}");
    for row in medians {
        assert!(
            row["figures"]["msgs_per_s"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{row}"
        );
    }
    assert_eq!(report["verdicts"].as_array().map(Vec::len), Some(2));

    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listing")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("results.json")]);
}

#[test]
fn broker_invalid_arguments_fail_cleanly() {
    for (args, mentions) in [
        (&["--in-process", "--sizes", "0"][..], "--sizes"),
        (&["--broker-addr", "127.0.0.1:1"][..], "--broker-addr"),
        (&["--in-process", "--in-flight", "0"][..], "--in-flight"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
            .arg("broker")
            .args(args)
            .output()
            .expect("running tern-bench");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    }
}

/// `tern-bench http --baseline-only` end to end: the bare-server child starts, the load runs
/// against it, the report and the JSON have the row, and nothing is left behind. (The gateway
/// belongs to another package, so a test of this one cannot rely on it being built.)
#[test]
fn http_baseline_quick_run_prints_a_report() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let json = dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
        .args(["http", "--quick", "--baseline-only", "--duration", "0.2"])
        .args(["--warmup", "0.05", "--connections", "1,8", "--size", "256"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running tern-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tern-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "bare hyper server, 1 connections",
        "bare hyper server, 8 connections",
        "### Ratios",
        "### Target",
        "not judged in a --quick run",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("valid JSON");
    let medians = report["medians"].as_array().expect("medians");
    assert_eq!(medians.len(), 2, "{medians:?}");
    for row in medians {
        assert!(
            row["figures"]["msgs_per_s"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{row}"
        );
        assert_eq!(row["errors"], 0, "{row}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listing")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("results.json")]);
}

#[test]
fn http_invalid_arguments_fail_cleanly() {
    for (args, mentions) in [
        (
            &["--baseline-only", "--connections", "0"][..],
            "--connections",
        ),
        (
            &["--gateway-url", "https://127.0.0.1:1"][..],
            "--gateway-url",
        ),
        (
            &["--baseline-only", "--gateway-url", "http://127.0.0.1:1"][..],
            "--gateway-url",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
            .arg("http")
            .args(args)
            .output()
            .expect("running tern-bench");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    }
}
