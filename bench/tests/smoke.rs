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
