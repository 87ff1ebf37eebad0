//! Where the servers under test run: a child process (the default, like production), inside this
//! process on a runtime of their own (`--in-process`, for profiling), or elsewhere
//! (`--broker-addr`).
//!
//! Everything started here is stopped and deleted by `Drop`, so an error half-way, a panic or
//! Ctrl-C (turned into an error by the caller) never leaves a broker running or a store on disk.
//! Children get their own process group so that a Ctrl-C typed at the terminal reaches only the
//! benchmark, which then stops them itself, instead of killing the broker under a running scenario
//! and reporting a confusing "connection closed".

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tern_core::broker::{Broker, BrokerConfig};
use tern_core::protocol::ServerHandle;
use tern_core::store::StoreConfig;
use tokio::runtime::Runtime;

use super::Flush;
use super::echo;
use crate::error::{BenchError, Context, Result};

/// How long a server may take to print its address.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped child may take to exit cleanly before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker runs, as the command line chose.
#[derive(Debug, Clone)]
pub enum Hosting {
    /// `tern-broker` (at this path) as a child process.
    Child { broker_bin: PathBuf },
    /// In this process, on a runtime of its own.
    InProcess,
    /// An already running broker; the benchmark starts nothing and cleans nothing.
    External { addr: String },
}

/// A child process that is terminated (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct ChildProcess {
    child: Child,
    name: String,
    /// The write end of the child's stdin, for children that exit when it closes (the echo
    /// server): then even a SIGKILLed benchmark leaves no echo server behind.
    _stdin: Option<ChildStdin>,
}

impl ChildProcess {
    /// Starts `command` in its own process group with stderr going to `log`, and waits for its
    /// first stdout line that starts with `ready_prefix` (earlier lines are skipped: a process
    /// that hosts several servers, like `tern-gateway --local`, may announce the others first);
    /// returns the rest of that line. With `stdin_pipe`, the child's stdin is a pipe held open
    /// until this is dropped.
    pub(crate) fn spawn(
        mut command: Command,
        name: &str,
        ready_prefix: &str,
        log: &Path,
        stdin_pipe: bool,
    ) -> Result<(ChildProcess, String)> {
        let stderr = File::create(log).context(|| format!("creating {}", log.display()))?;
        command
            .process_group(0)
            .stdin(if stdin_pipe {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .context(|| format!("starting {name} ({command:?})"))?;
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        let process = ChildProcess {
            child,
            name: name.to_owned(),
            _stdin: stdin,
        };
        // Ok(rest of the ready line), or Err(the lines printed before stdout closed).
        let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<String, Vec<String>>>();
        if let Some(stdout) = stdout {
            let ready_prefix = ready_prefix.to_owned();
            // Reads until EOF, so the child never writes into a closed pipe; only the ready line
            // is of interest.
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let mut before = Vec::new();
                let ready = loop {
                    match lines.next() {
                        Some(Ok(line)) => match line.strip_prefix(&ready_prefix) {
                            Some(rest) => break Ok(rest.trim().to_owned()),
                            None if before.len() < 20 => before.push(line),
                            None => {}
                        },
                        _ => break Err(before),
                    }
                };
                let _ = tx.send(ready);
                for _ in lines {}
            });
        }
        let fail = |why: String| {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log_text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            BenchError::Invalid(format!("{name} {why}; its log:\n{}", tail.join("\n")))
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(rest)) => Ok((process, rest)),
            Ok(Err(printed)) => Err(fail(format!(
                "closed its output without printing `{ready_prefix} <address>` (it printed \
                 {printed:?})"
            ))),
            Err(_) => Err(fail(format!(
                "did not print its address within {READY_TIMEOUT:?}"
            ))),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first: a broker shuts down cleanly on it, which is what a real deployment does.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!(
            "{} did not stop within {STOP_TIMEOUT:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A runtime for servers hosted in this process: as many workers as CPUs, like the
/// `#[tokio::main]` of `tern-broker`, and separate from the load generator's runtime so that the
/// two sides keep their own threads as two processes would.
fn server_runtime(name: &str) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .context(|| format!("starting the {name} runtime"))
}

enum BrokerInner {
    /// Held for its `Drop`, which stops the broker.
    Child {
        _process: ChildProcess,
    },
    InProcess {
        runtime: Runtime,
        broker: Option<Broker>,
    },
    External,
}

/// A broker with a fresh store, stopped and deleted when dropped.
pub struct BrokerServer {
    pub addr: String,
    /// The broker's process when it is a child (for CPU accounting and `perf -p`).
    pub pid: Option<u32>,
    inner: BrokerInner,
    /// Declared after `inner`, so the broker has stopped before its store is deleted.
    _store: Option<TempDir>,
}

impl BrokerServer {
    /// Starts a broker with a fresh store in a new directory under `work` (nothing is started
    /// for [`Hosting::External`]).
    pub fn start(hosting: &Hosting, work: &Path, flush: Flush) -> Result<BrokerServer> {
        if let Hosting::External { addr } = hosting {
            return Ok(BrokerServer {
                addr: addr.clone(),
                pid: None,
                inner: BrokerInner::External,
                _store: None,
            });
        }
        let store = tempfile::Builder::new()
            .prefix(&format!("broker-{}-", flush.short()))
            .tempdir_in(work)
            .context(|| format!("creating a store directory in {}", work.display()))?;
        let store_path = store.path().join("store");
        match hosting {
            Hosting::Child { broker_bin } => {
                let mut command = Command::new(broker_bin);
                command
                    .arg("--listen")
                    .arg("127.0.0.1:0")
                    .arg("--namesrv")
                    .arg("")
                    .arg("--store-path")
                    .arg(&store_path)
                    .arg("--flush-disk-type")
                    .arg(flush.name());
                let log = store.path().join("broker.log");
                let (child, addr) = ChildProcess::spawn(
                    command,
                    "tern-broker",
                    "tern-broker listening on",
                    &log,
                    false,
                )?;
                Ok(BrokerServer {
                    addr,
                    pid: Some(child.pid()),
                    inner: BrokerInner::Child { _process: child },
                    _store: Some(store),
                })
            }
            Hosting::InProcess => {
                let runtime = server_runtime("broker")?;
                let config = BrokerConfig {
                    listen: "127.0.0.1:0".into(),
                    namesrv_addrs: Vec::new(),
                    store: StoreConfig {
                        store_path,
                        flush_disk_type: flush.into(),
                        ..StoreConfig::default()
                    },
                    ..BrokerConfig::default()
                };
                let broker = runtime
                    .block_on(Broker::start(config))
                    .context(|| "starting the in-process broker".to_owned())?;
                Ok(BrokerServer {
                    addr: broker.addr().to_owned(),
                    pid: None,
                    inner: BrokerInner::InProcess {
                        runtime,
                        broker: Some(broker),
                    },
                    _store: Some(store),
                })
            }
            Hosting::External { .. } => unreachable!("handled above"),
        }
    }

    /// Stops the broker, reporting an in-process shutdown error (a child's is in its log).
    pub fn stop(mut self) -> Result<()> {
        if let BrokerInner::InProcess { runtime, broker } = &mut self.inner
            && let Some(broker) = broker.take()
        {
            runtime
                .block_on(broker.shutdown())
                .context(|| "stopping the in-process broker".to_owned())?;
        }
        Ok(())
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        if let BrokerInner::InProcess { runtime, broker } = &mut self.inner
            && let Some(broker) = broker.take()
        {
            let _ = runtime.block_on(broker.shutdown());
        }
    }
}

/// The two echo servers of the loopback baselines.
pub struct EchoServers {
    /// Raw TCP: length-prefixed frames in, a canned response frame out per frame.
    pub tcp: String,
    /// The remoting stack (`serve` + [`echo::EchoHandler`]): full decode, canned response.
    pub remoting: String,
    pub pid: Option<u32>,
    _inner: EchoInner,
}

/// Held for their `Drop`, which stops the servers.
enum EchoInner {
    Child {
        _process: ChildProcess,
    },
    /// Dropping the runtime stops every server task.
    InProcess {
        _runtime: Runtime,
        _remoting: ServerHandle,
    },
}

/// How the line an echo-server child prints starts; `tcp <addr> remoting <addr>` follows.
pub const ECHO_READY: &str = "tern-bench echo-server";

impl EchoServers {
    /// Starts both echo servers the way the broker is hosted: a child process (this executable's
    /// hidden `echo-server` subcommand) unless `--in-process`.
    pub fn start(hosting: &Hosting, work: &Path) -> Result<EchoServers> {
        if let Hosting::InProcess = hosting {
            let runtime = server_runtime("echo")?;
            let (tcp, remoting) = runtime.block_on(echo::start_servers())?;
            return Ok(EchoServers {
                tcp: tcp.to_string(),
                remoting: remoting.local_addr().to_string(),
                pid: None,
                _inner: EchoInner::InProcess {
                    _runtime: runtime,
                    _remoting: remoting,
                },
            });
        }
        let exe = std::env::current_exe().context(|| "finding tern-bench itself".to_owned())?;
        let mut command = Command::new(exe);
        command.arg("echo-server");
        let log = work.join("echo-server.log");
        let (child, line) = ChildProcess::spawn(command, "echo server", ECHO_READY, &log, true)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, tcp, _, remoting] = words[..] else {
            return Err(BenchError::Invalid(format!(
                "echo server printed {line:?}, expected `tcp <addr> remoting <addr>`"
            )));
        };
        Ok(EchoServers {
            tcp: tcp.to_owned(),
            remoting: remoting.to_owned(),
            pid: Some(child.pid()),
            _inner: EchoInner::Child { _process: child },
        })
    }
}

/// `tern-broker` next to this executable (both land in `target/<profile>/`).
pub fn default_broker_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context(|| "finding tern-bench itself".to_owned())?;
    let bin = exe.with_file_name("tern-broker");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(BenchError::Args(format!(
            "{} not found: build it with `cargo build --release -p tern-core --bin tern-broker` \
             (or pass --broker-bin, --in-process or --broker-addr)",
            bin.display()
        )))
    }
}

/// The hidden `echo-server` subcommand: serves until stdin closes (the parent dropped its end or
/// died) or a SIGTERM arrives (default action: exit).
pub fn run_echo_server() -> Result<()> {
    let runtime = server_runtime("echo")?;
    let (tcp, remoting) = runtime.block_on(echo::start_servers())?;
    println!("{ECHO_READY} tcp {tcp} remoting {}", remoting.local_addr());
    let _ = std::io::stdout().flush();
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    Ok(())
}
