//! Crash tests: SIGKILL a real process while it appends to the store, reopen the store, and check
//! that every acknowledged append survived intact, that no partial record is visible, and that
//! appending continues at the right offsets. Repeated for many kill points over one store
//! directory, so each recovery runs on top of the previous ones.
//!
//! # Why a child process and SIGKILL
//!
//! A crash cannot be faked inside the test process: dropping a store shuts it down cleanly, and no
//! in-process trick stops every store thread at an arbitrary instruction. SIGKILL does exactly
//! that (mid-`memcpy` into a segment, mid-roll, mid-checkpoint, mid-recovery) without running any
//! destructor. What it does not do is lose the page cache: the kernel keeps a killed process's
//! writes to its file mappings. So under SYNC_FLUSH *and* ASYNC_FLUSH every append the child
//! acknowledged must be there afterwards; at most the put in flight in each writer may be lost.
//! (A power cut, which does lose unflushed pages, is not simulated here.)
//!
//! # One iteration
//!
//! 1. Start `store_crash_writer` (see [`child`]) on the store: it recovers the store, prints
//!    `READY`, and its writer tasks append deterministic messages, printing an `ACK` line after
//!    each put that returned.
//! 2. While it holds the store, opening the store here must fail with `StoreError::Locked`.
//! 3. SIGKILL it at a random point: during start-up (that is, during recovery), or while it
//!    appends, after a random time or number of acknowledgements. Only complete lines count.
//! 4. On most iterations, open the store here and check it (see [`verify`]), append to every
//!    queue, and shut it down cleanly. On the others the next child has to recover from the crash.
//!
//! Acknowledgements accumulate in a [`ledger`] over all iterations and every verification checks
//! all of them. After the last kill the store is verified twice: after the crash, and after the
//! clean shutdown that verification ends with.
//!
//! Two self-tests damage a store the way a durability or recovery bug would and check that the
//! verification fails, with a message that names the damage. One more test guards a recovery bug
//! this harness found: a ConsumeQueue rebuild interrupted by a kill must be resumed.
//!
//! # Knobs
//!
//! - `TERN_CRASH_ITERATIONS`: child runs of the SYNC_FLUSH test (default 24); the ASYNC_FLUSH test
//!   does a third as many.
//! - `TERN_CRASH_SEED`: seed of the kill points and verification choices. Each test prints the
//!   seed it used; the same seed gives the same plan (thread timing still varies).
//! - `TERN_CRASH_KEEP_DIR`: keep the store directories for inspection (their paths are printed).

// The helpers live next to this file in `store_crash/` (a crate root looks for modules beside
// itself, and Cargo does not take files in subdirectories of `tests/` for test targets).
#[path = "store_crash/child.rs"]
mod child;
#[path = "store_crash/ledger.rs"]
mod ledger;
#[path = "store_crash/scenario.rs"]
mod scenario;
#[path = "store_crash/verify.rs"]
mod verify;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use tern_core::store::CONSUME_QUEUE_ENTRY_SIZE;
use tern_tests::store_crash::{Ack, FlushMode, SEGMENT_SIZE};

use scenario::Scenario;

const DEFAULT_ITERATIONS: u32 = 24;

#[test]
fn sync_flush_acknowledged_appends_survive_sigkill() {
    Scenario::new(FlushMode::Sync, iterations()).run();
}

#[test]
fn async_flush_acknowledged_appends_survive_sigkill() {
    Scenario::new(FlushMode::Async, iterations().div_ceil(3)).run();
}

/// The checks are only worth something if they can fail. Lose an acknowledged append the way a
/// recovery bug would (its record fails the CRC check, so recovery ends the log before it) and make
/// sure verification says so.
#[test]
fn verification_notices_a_lost_acknowledged_append() {
    let mut scenario = Scenario::new(FlushMode::Sync, 1);
    scenario.crash_child_for_self_test(400);
    let last = scenario
        .ledger()
        .acked()
        .max_by_key(|ack| ack.physical_offset)
        .expect("the child acknowledged appends")
        .clone();
    damage_body(scenario.store_path(), &last);
    let failure = panic_message(|| scenario.verify());
    let expected = format!(
        "acknowledged {} (CommitLog offset {}",
        last.key, last.physical_offset
    );
    assert!(
        failure.contains(&expected) && failure.contains("is lost"),
        "unexpected failure: {failure}"
    );
}

/// Likewise for a damaged record that recovery does not look at (a clean start only scans the last
/// segment): the CRC-checked walk over the whole log must catch it.
#[test]
fn verification_notices_a_corrupt_record_recovery_did_not_scan() {
    let mut scenario = Scenario::new(FlushMode::Sync, 1);
    scenario.crash_child_for_self_test(800);
    scenario.verify();
    let first = scenario
        .ledger()
        .acked()
        .min_by_key(|ack| ack.physical_offset)
        .expect("the child acknowledged appends")
        .clone();
    damage_body(scenario.store_path(), &first);
    let failure = panic_message(|| scenario.verify());
    let expected = format!(
        "CommitLog offset {}: torn or corrupt record: body CRC",
        first.physical_offset
    );
    assert!(failure.contains(&expected), "unexpected failure: {failure}");
}

/// A ConsumeQueue the store finds unusable (here: a file one entry short, as after changing
/// `consume_queue_entries_per_file`) is deleted and rebuilt by replaying the whole CommitLog. If the
/// process is killed during that replay, the next start must still rebuild the queue completely.
///
/// This failed while the decision to replay from the start of the log lived only in memory: after
/// the kill the directory was missing or half rebuilt, nothing on disk said a rebuild was pending,
/// and crash recovery replayed only from the checkpoint, so the queue lost its first messages (its
/// min offset jumped, or a gap was padded). `MessageStore::open` now resets the checkpoint's queue
/// promise to 0 before deleting anything, so the next start replays the whole log again.
#[test]
fn interrupted_consume_queue_rebuild_is_resumed_after_a_crash() {
    let mut scenario = Scenario::new(FlushMode::Async, 1);
    scenario.crash_child_for_self_test(3_000);
    // Let the messages age past the 3 s margin of crash recovery, so that a crash replay starts
    // after them rather than at the start of the log.
    std::thread::sleep(Duration::from_millis(3_500));
    scenario.verify();
    let queue_dir = scenario.store_path().join("consumequeue/CrashA/0");
    shorten_file(
        &queue_dir.join(format!("{:020}", 0)),
        CONSUME_QUEUE_ENTRY_SIZE,
    );
    // The child deletes the unusable queue, then replays the log to rebuild it: kill it then.
    scenario.kill_child_when(|| !queue_dir.exists());
    scenario.verify();
}

/// Flips one byte of `ack`'s body in its segment file, as a torn write or a bad recovery would
/// leave it. The store must be closed.
fn damage_body(store_path: &Path, ack: &Ack) {
    let base = ack.physical_offset / SEGMENT_SIZE * SEGMENT_SIZE;
    let path = store_path.join("commitlog").join(format!("{base:020}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut record = vec![0; ack.size as usize];
    let start = ack.physical_offset - base;
    file.read_exact_at(&mut record, start)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let header = ack.key.body_header();
    let body_at = record
        .windows(header.len())
        .position(|w| w == header.as_bytes())
        .unwrap_or_else(|| panic!("the body of {} is not where it was acknowledged", ack.key));
    let at = start + (body_at + header.len()) as u64;
    let byte = record[body_at + header.len()] ^ 0xFF;
    file.write_all_at(&[byte], at)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Cuts `by` bytes off the end of the file at `path`.
fn shorten_file(path: &Path, by: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let len = file
        .metadata()
        .unwrap_or_else(|e| panic!("reading the size of {}: {e}", path.display()))
        .len();
    file.set_len(len - by)
        .unwrap_or_else(|e| panic!("shortening {}: {e}", path.display()));
}

/// Runs `f`, which must panic, and returns its panic message.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .expect_err("verification passed on a damaged store");
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

fn iterations() -> u32 {
    match std::env::var("TERN_CRASH_ITERATIONS") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("TERN_CRASH_ITERATIONS={value:?} is not a number")),
        Err(_) => DEFAULT_ITERATIONS,
    }
}
