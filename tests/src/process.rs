//! Starting the real `tern-namesrv` and `tern-broker` binaries for cross-process tests.
//!
//! [`ServerProcess`] is a guard: its `Drop` SIGKILLs and reaps the child, so a failed assertion
//! never leaves a process behind. Every server listens on `127.0.0.1:0` and announces its port on
//! stdout (`… listening on <addr>`), which is how the test learns where it is.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tern_core::broker::BrokerConfig;
use tern_core::store::{FlushDiskType, StoreConfig};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of a workspace binary, next to the test executable's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build it first (`cargo build --workspace --all-targets`, which scripts/test does)",
        path.display()
    );
    path
}

/// A running server child process.
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    addr: String,
}

impl ServerProcess {
    /// Starts `binary` with `args` and waits for its `listening on <addr>` line.
    pub fn start(binary_name: &str, args: &[String]) -> ServerProcess {
        let mut child = Command::new(binary(binary_name))
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("TERN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary_name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stdout so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut process = ServerProcess {
            name: binary_name.to_string(),
            child: Some(child),
            addr: String::new(),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => process.addr = addr,
            Err(_) => {
                let status = process
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "{binary_name} did not announce its address within {START_TIMEOUT:?} (exit: {status:?})"
                );
            }
        }
        process
    }

    /// `ip:port` the server announced.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays alive with its sockets open but answers nothing (a hung
    /// broker). Dropping the guard still kills it.
    pub fn pause(&self) {
        self.signal(19);
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(15);
        let mut child = self.child.take().expect("child still running");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit within 30 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{signal} {}", child.id());
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a NameServer with a short broker timeout for tests.
pub fn start_namesrv(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    ServerProcess::start("tern-namesrv", &args)
}

/// What a test broker looks like.
pub struct BrokerSpec<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub namesrv: &'a [String],
    pub store: &'a Path,
    pub sync_flush: bool,
    /// Seconds between registrations (short in tests that watch routes change).
    pub register_interval_secs: u64,
    /// A fixed listen address (to restart on the same port), or `None` for an ephemeral one.
    pub listen: Option<&'a str>,
}

/// Starts a broker from a config file written next to its store (test-sized segments and index,
/// see `StoreConfig::for_tests`), so restarts reuse the same settings.
pub fn start_broker(spec: &BrokerSpec<'_>) -> ServerProcess {
    start_broker_with(spec, |_| {})
}

/// [`start_broker`] with further settings: `tune` edits the config before it is written.
pub fn start_broker_with(
    spec: &BrokerSpec<'_>,
    tune: impl FnOnce(&mut BrokerConfig),
) -> ServerProcess {
    let mut store = StoreConfig::for_tests(spec.store);
    store.flush_disk_type = if spec.sync_flush {
        FlushDiskType::SyncFlush
    } else {
        FlushDiskType::AsyncFlush
    };
    let mut config = BrokerConfig {
        broker_name: spec.name.into(),
        cluster_name: spec.cluster.into(),
        listen: spec.listen.unwrap_or("127.0.0.1:0").into(),
        namesrv_addrs: spec.namesrv.to_vec(),
        register_interval_ms: spec.register_interval_secs * 1000,
        store,
        ..BrokerConfig::default()
    };
    tune(&mut config);
    let file = spec.store.with_extension("toml");
    std::fs::write(&file, toml::to_string(&config).expect("config serializes"))
        .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    ServerProcess::start(
        "tern-broker",
        &["--config".to_string(), file.display().to_string()],
    )
}

/// A receipt key for this test process, as 64 hex characters (gateways of one test share it).
pub fn receipt_key() -> String {
    (0..32)
        .map(|i| format!("{:02x}", (i * 37 + 11) as u8 ^ std::process::id() as u8))
        .collect()
}

/// Starts `tern-gateway --local` with its data under `dir`, everything on ephemeral loopback
/// ports, and the embedded broker configured by `tune` (test-sized store, short pop minimum).
pub fn start_local_gateway(
    dir: &Path,
    extra: &[&str],
    tune: impl FnOnce(&mut BrokerConfig),
) -> ServerProcess {
    start_local_gateway_with_namesrv(dir, "127.0.0.1:0", extra, tune)
}

/// A free loopback address (`127.0.0.1:<port>`) for a server that does not announce its own, such
/// as the NameServer embedded in `tern-gateway --local`. The port is free when this returns; a
/// test starts its server on it at once.
pub fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").to_string()
}

/// [`start_local_gateway`] with the embedded NameServer on `namesrv_listen` (see
/// [`free_loopback_addr`]), so a test can put more gateways or clients in front of it.
pub fn start_local_gateway_with_namesrv(
    dir: &Path,
    namesrv_listen: &str,
    extra: &[&str],
    tune: impl FnOnce(&mut BrokerConfig),
) -> ServerProcess {
    let mut store = StoreConfig::for_tests(dir.join("broker"));
    // The disk guard and forced cleanup watch the whole filesystem, which tests share with
    // whatever else runs on the machine: a nearly full disk must not refuse a test's writes
    // or delete its segments.
    store.disk_clean_ratio = 1.0;
    store.disk_clean_forcibly_ratio = 1.0;
    store.disk_refuse_write_ratio = 1.0;
    let mut config = BrokerConfig {
        store,
        pop_min_invisible_ms: 100,
        ..BrokerConfig::default()
    };
    tune(&mut config);
    std::fs::create_dir_all(dir).expect("gateway dir");
    let file = dir.join("broker.toml");
    std::fs::write(&file, toml::to_string(&config).expect("config serializes"))
        .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    let mut args: Vec<String> = [
        "--local",
        "--listen",
        "127.0.0.1:0",
        "--namesrv-listen",
        namesrv_listen,
        "--broker-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--data-dir".into());
    args.push(dir.display().to_string());
    args.push("--broker-config".into());
    args.push(file.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    ServerProcess::start("tern-gateway", &args)
}

/// Starts a stateless `tern-gateway` in front of `namesrv` with receipt key `key`.
pub fn start_gateway(namesrv: &[String], key: &str, extra: &[&str]) -> ServerProcess {
    start_gateway_at("127.0.0.1:0", namesrv, key, extra)
}

/// [`start_gateway`] on a given listen address (to restart a gateway on the same port).
pub fn start_gateway_at(
    listen: &str,
    namesrv: &[String],
    key: &str,
    extra: &[&str],
) -> ServerProcess {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        listen.into(),
        "--namesrv".into(),
        namesrv.join(","),
        "--receipt-key".into(),
        key.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    ServerProcess::start("tern-gateway", &args)
}
