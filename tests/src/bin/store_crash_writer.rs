//! `store_crash_writer <store-dir> <sync|async> <writers> <run>`: the victim of the `store_crash`
//! test.
//!
//! Opens the store (recovering it if the previous child was killed), prints `READY`, then runs
//! `<writers>` concurrent appender tasks that write the deterministic messages of
//! [`tern_tests::store_crash`] forever: writer `w` appends `(run, w, 0)`, `(run, w, 1)`, … one at
//! a time, and prints an `ACK` line for each put that returned `PutStatus::Ok`. It never stops on
//! its own; the test SIGKILLs it. Any error is printed to stderr and ends the process with a
//! non-zero status, which the test reports as a failure (it expects death by SIGKILL only).
//!
//! An `ACK` is printed only after the put returned, so every acknowledged message must be in the
//! store after the kill.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tern_core::store::{MessageStore, PutStatus};
use tern_tests::store_crash::{
    Ack, FlushMode, MessageKey, Report, TEST_PROCESS_WRITER, store_config,
};

struct Args {
    dir: PathBuf,
    mode: FlushMode,
    writers: u32,
    run: u32,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut next = |name: &str| args.next().ok_or_else(|| format!("missing <{name}>"));
        let dir = PathBuf::from(next("store-dir")?);
        let mode = next("sync|async")?.parse()?;
        let writers = next("writers")?
            .parse()
            .map_err(|e| format!("<writers>: {e}"))?;
        let run = next("run")?.parse().map_err(|e| format!("<run>: {e}"))?;
        if !(1..TEST_PROCESS_WRITER).contains(&writers) {
            return Err(format!(
                "<writers> must be in 1..{TEST_PROCESS_WRITER}, got {writers}"
            ));
        }
        if args.next().is_some() {
            return Err("too many arguments".into());
        }
        Ok(Args {
            dir,
            mode,
            writers,
            run,
        })
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("store_crash_writer: {e}");
            eprintln!("usage: store_crash_writer <store-dir> <sync|async> <writers> <run>");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let error = runtime.block_on(run(args));
    eprintln!("store_crash_writer: {error}");
    // Exit at once: dropping the store would shut it down cleanly, which is not what is under test
    // and would only delay the report.
    std::process::exit(3);
}

/// Runs until killed; returns only with the first error.
async fn run(args: Args) -> String {
    let store = match MessageStore::open(store_config(&args.dir, args.mode)) {
        Ok(store) => Arc::new(store),
        Err(e) => return format!("opening the store at {}: {e}", args.dir.display()),
    };
    emit(&Report::Ready {
        pid: std::process::id(),
    });
    let mut appenders = tokio::task::JoinSet::new();
    for writer in 0..args.writers {
        appenders.spawn(append_forever(store.clone(), args.run, writer));
    }
    match appenders.join_next().await {
        Some(Ok(error)) => error,
        Some(Err(e)) => format!("an appender task failed: {e}"),
        None => "no appender task ran".to_owned(),
    }
}

/// Appends this writer's messages one after another, reporting each; returns only on an error.
async fn append_forever(store: Arc<MessageStore>, run: u32, writer: u32) -> String {
    for seq in 0.. {
        let key = MessageKey { run, writer, seq };
        let result = match store.put_message(key.message()).await {
            Ok(result) => result,
            Err(e) => return format!("appending {key}: {e}"),
        };
        let report = match result.status {
            PutStatus::Ok => Report::Ack(Ack {
                key,
                topic: key.topic().to_owned(),
                queue_id: key.queue_id(),
                queue_offset: result.record.queue_offset,
                physical_offset: result.record.physical_offset,
                size: result.record.size,
            }),
            PutStatus::FlushDiskTimeout => Report::Timeout(key),
        };
        emit(&report);
    }
    unreachable!("a u64 sequence does not run out")
}

/// Prints one report line. The line goes out in one `write` on a locked handle, so lines from
/// concurrent writers never interleave and a kill can at worst cut the last line short (the test
/// ignores a line without its newline). Blocking the executor for one small write is fine here.
fn emit(report: &Report) {
    let line = format!("{report}\n");
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // The test closed its end: nobody is listening any more.
        eprintln!("store_crash_writer: writing to stdout: {e}");
        std::process::exit(4);
    }
}
