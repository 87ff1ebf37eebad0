//! One crash scenario: a store directory, the children run on it, and the ledger of what they
//! acknowledged. [`Scenario::run`] is the loop described in the test's module docs; the other
//! methods are its steps, which the self-tests also use one by one.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;
use tern_core::store::{MessageStore, StoreConfig, StoreError};
use tern_tests::store_crash::{FlushMode, Report, store_config};

use crate::child::{Next, WriterProcess};
use crate::ledger::{Ledger, RunKind};
use crate::verify;

/// Concurrent appender tasks in each child.
const WRITERS: u32 = 4;
/// Chance that the test verifies the store after a kill; otherwise the next child recovers it.
const VERIFY_PROBABILITY: f64 = 0.7;
/// Chance that a kill aims at the child's start-up (recovery) rather than at its appending.
const STARTUP_KILL_PROBABILITY: f64 = 0.2;
/// How long after `READY` an appending child is killed, in milliseconds...
const APPENDING_KILL_MS: RangeInclusive<u64> = 20..=400;
/// ...or after how many acknowledgements, whichever comes first.
const APPENDING_KILL_ACKS: RangeInclusive<usize> = 1..=3_000;
/// A child that is not `READY` by then is taken to be stuck in recovery.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn seed() -> u64 {
    match std::env::var("TERN_CRASH_SEED") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("TERN_CRASH_SEED={value:?} is not a number")),
        Err(_) => rand::rng().random(),
    }
}

fn writer_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_store_crash_writer"))
}

/// When to SIGKILL a child.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// This long after the spawn, which is while it opens and recovers the store.
    Startup { after: Duration },
    /// While appending: this long after `READY` or at this many acknowledgements, whichever is
    /// first.
    Appending { after: Duration, acks: usize },
}

/// The store directory; deleted at the end unless `TERN_CRASH_KEEP_DIR` is set.
struct StoreDir {
    _temp: Option<TempDir>,
    path: PathBuf,
}

impl StoreDir {
    fn new(mode: FlushMode) -> StoreDir {
        let temp = tempfile::Builder::new()
            .prefix(&format!("tern-store-crash-{}-", mode.as_str()))
            .tempdir()
            .expect("creating a temporary directory");
        if std::env::var_os("TERN_CRASH_KEEP_DIR").is_some() {
            let path = temp.keep();
            println!("keeping the store directory {}", path.display());
            StoreDir { _temp: None, path }
        } else {
            let path = temp.path().to_owned();
            StoreDir {
                _temp: Some(temp),
                path,
            }
        }
    }
}

/// How the store was last left, which decides what `previous_run_crashed` must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastClose {
    /// Shut down cleanly (a verification), or never opened.
    Clean,
    /// A child that had the store open was killed.
    Crashed,
    /// After a clean shutdown, children were killed while starting, and nothing tells whether they
    /// got as far as opening the store (creating `abort`).
    Unknown,
}

#[derive(Debug, Default)]
struct Stats {
    startup_kills: u32,
    appending_kills: u32,
    child_acks: usize,
    torn_lines: u32,
    verifications: u32,
}

pub struct Scenario {
    mode: FlushMode,
    iterations: u32,
    seed: u64,
    rng: StdRng,
    config: StoreConfig,
    ledger: Ledger,
    /// Run ids are unique across children and the test process's own appends.
    next_run: u32,
    /// How long the last child took to become ready: start-up kills aim within it.
    last_startup: Duration,
    last_close: LastClose,
    stats: Stats,
    runtime: tokio::runtime::Runtime,
    // Last, so that it is deleted after everything that may still use it.
    _dir: StoreDir,
}

impl Scenario {
    pub fn new(mode: FlushMode, iterations: u32) -> Scenario {
        assert!(iterations > 0, "at least one iteration");
        let seed = seed();
        let dir = StoreDir::new(mode);
        Scenario {
            mode,
            iterations,
            seed,
            rng: StdRng::seed_from_u64(seed),
            config: store_config(&dir.path.join("store"), mode),
            ledger: Ledger::default(),
            next_run: 1,
            last_startup: Duration::from_millis(50),
            last_close: LastClose::Clean,
            stats: Stats::default(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the tokio runtime"),
            _dir: dir,
        }
    }

    pub fn run(mut self) {
        println!(
            "store crash test, {} flush: {} iterations, seed {} (reproduce the plan with \
             TERN_CRASH_SEED={})",
            self.mode.as_str(),
            self.iterations,
            self.seed,
            self.seed
        );
        let started = Instant::now();
        for iteration in 1..=self.iterations {
            let kill = self.choose_kill_point();
            self.crash_child(iteration, kill);
            if iteration < self.iterations && self.rng.random_bool(VERIFY_PROBABILITY) {
                self.verify();
            }
        }
        // Recover from the last kill, then check that the clean shutdown ending that verification
        // is recognised as one.
        self.verify();
        assert_eq!(self.last_close, LastClose::Clean);
        self.verify();
        println!("done in {:?}: {:?}", started.elapsed(), self.stats);
        assert!(
            self.stats.child_acks > 0,
            "no child ever acknowledged an append: nothing was tested"
        );
    }

    fn choose_kill_point(&mut self) -> KillPoint {
        if self.rng.random_bool(STARTUP_KILL_PROBABILITY) {
            let window = self.last_startup.as_micros() as u64;
            KillPoint::Startup {
                after: Duration::from_micros(self.rng.random_range(0..=window)),
            }
        } else {
            KillPoint::Appending {
                after: Duration::from_millis(self.rng.random_range(APPENDING_KILL_MS)),
                acks: self.rng.random_range(APPENDING_KILL_ACKS),
            }
        }
    }

    fn start_run(&mut self) -> u32 {
        let run = self.next_run;
        self.next_run += 1;
        run
    }

    /// Runs one child until the kill point, SIGKILLs it and records what it acknowledged.
    fn crash_child(&mut self, iteration: u32, kill: KillPoint) {
        let run = self.start_run();
        self.ledger
            .start_run(run, RunKind::Child { writers: WRITERS });
        let mut child = WriterProcess::spawn(
            writer_exe(),
            &self.config.store_path,
            self.mode,
            WRITERS,
            run,
        );
        let spawned = Instant::now();
        let (mut deadline, ack_limit) = match kill {
            KillPoint::Startup { after } => (spawned + after, usize::MAX),
            KillPoint::Appending { acks, .. } => (spawned + READY_TIMEOUT, acks),
        };
        let mut ready_after = None;
        let mut acks = 0;
        loop {
            match child.next_report(deadline) {
                Next::Report(Report::Ready { .. }) => {
                    ready_after = Some(spawned.elapsed());
                    if let Err(problem) = check_locked(&self.config) {
                        // Unless the child died by itself meanwhile: then `kill` fails first, with
                        // its exit status and stderr, which is the real story.
                        child.kill();
                        panic!("run {run}: {problem}");
                    }
                    if let KillPoint::Appending { after, .. } = kill {
                        deadline = Instant::now() + after;
                    }
                }
                Next::Report(report) => {
                    self.ledger.record(&report);
                    acks += usize::from(matches!(report, Report::Ack(_)));
                    if acks >= ack_limit {
                        break;
                    }
                }
                Next::Deadline => {
                    assert!(
                        ready_after.is_some() || matches!(kill, KillPoint::Startup { .. }),
                        "run {run}: the child was not ready within {READY_TIMEOUT:?}; \
                         is recovery stuck?"
                    );
                    break;
                }
                // It died by itself: `kill` reports how, with its stderr.
                Next::Closed => break,
            }
        }
        let lived = spawned.elapsed();
        let killed = child.kill();
        for report in &killed.remaining {
            self.ledger.record(report);
            acks += usize::from(matches!(report, Report::Ack(_)));
        }
        self.stats.child_acks += acks;
        match kill {
            KillPoint::Startup { .. } => self.stats.startup_kills += 1,
            KillPoint::Appending { .. } => self.stats.appending_kills += 1,
        }
        if let Some(torn) = &killed.torn_line {
            self.stats.torn_lines += 1;
            println!("  ignoring the torn last line {torn:?}");
        }
        if let Some(ready) = ready_after {
            self.last_startup = ready;
            self.last_close = LastClose::Crashed;
        } else if self.last_close == LastClose::Clean {
            self.last_close = LastClose::Unknown;
        }
        println!(
            "iteration {iteration}/{} (run {run}): {kill:?}, ready after {ready_after:?}, \
             killed after {lived:?}; {acks} acknowledged ({} in all)",
            self.iterations,
            self.ledger.acked_count()
        );
    }

    /// One child killed after `acks` acknowledgements (or a few seconds), for the self-tests.
    pub fn crash_child_for_self_test(&mut self, acks: usize) {
        let kill = KillPoint::Appending {
            after: Duration::from_secs(5),
            acks,
        };
        self.crash_child(1, kill);
        assert!(
            self.ledger.acked_count() > 0,
            "the child acknowledged nothing"
        );
    }

    /// Starts a child and SIGKILLs it as soon as `condition` holds (polled every 100 µs).
    /// `condition` must only hold once the child has opened the store, so the kill is a crash.
    pub fn kill_child_when(&mut self, mut condition: impl FnMut() -> bool) {
        let run = self.start_run();
        self.ledger
            .start_run(run, RunKind::Child { writers: WRITERS });
        let child = WriterProcess::spawn(
            writer_exe(),
            &self.config.store_path,
            self.mode,
            WRITERS,
            run,
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "run {run}: the kill condition never held"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        for report in &child.kill().remaining {
            self.ledger.record(report);
        }
        self.last_close = LastClose::Crashed;
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn store_path(&self) -> &Path {
        &self.config.store_path
    }

    /// Whether the store must report that its previous run crashed.
    fn expect_crashed(&self) -> bool {
        match self.last_close {
            LastClose::Clean => false,
            LastClose::Crashed => true,
            // `abort` exists exactly while the store is open or after it crashed.
            LastClose::Unknown => self.config.store_path.join("abort").exists(),
        }
    }

    /// Opens the store here, checks it against the ledger and shuts it down cleanly.
    pub fn verify(&mut self) {
        let expect_crashed = self.expect_crashed();
        let run = self.start_run();
        let started = Instant::now();
        let summary = verify::verify_store(
            &self.config,
            &mut self.ledger,
            run,
            expect_crashed,
            &self.runtime,
            &mut self.rng,
        );
        self.stats.verifications += 1;
        self.last_close = LastClose::Clean;
        println!(
            "  verified in {:?} (run {run}): {} records, {} KiB of log, {} acknowledged \
             ({} puts timed out), {} complete but never acknowledged",
            started.elapsed(),
            summary.records,
            summary.log_bytes / 1024,
            self.ledger.acked_count(),
            self.ledger.timeouts(),
            summary.unacknowledged,
        );
    }
}

/// While a child holds the store, opening it must fail with `StoreError::Locked`.
fn check_locked(config: &StoreConfig) -> Result<(), String> {
    match MessageStore::open(config.clone()) {
        Err(StoreError::Locked { .. }) => Ok(()),
        Err(e) => Err(format!(
            "opening the store while a child holds it failed with {e:?}, expected \
             StoreError::Locked"
        )),
        Ok(store) => {
            // Never let this store shut down into the child's files: the failure is the finding.
            std::mem::forget(store);
            Err("the store opened while a child holds it: the store lock does not work".into())
        }
    }
}
