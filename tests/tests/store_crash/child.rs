//! Running the `store_crash_writer` child: spawning it, following its reports, and killing it.
//!
//! [`WriterProcess`] is a guard: whatever happens in the test (a failed assertion included), its
//! `Drop` SIGKILLs and reaps the child and joins the threads reading its pipes, so no process
//! outlives the test and nothing keeps writing into a store directory that is being deleted.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use tern_tests::store_crash::{FlushMode, Report};

/// SIGKILL's signal number (the same on every Unix Rust supports).
const SIGKILL: i32 = 9;

/// What [`WriterProcess::next_report`] got.
pub enum Next {
    Report(Report),
    /// The deadline passed first.
    Deadline,
    /// The child closed its stdout: it died or exited.
    Closed,
}

/// What the child said from start to death.
pub struct Killed {
    /// Every complete line received after the caller stopped reading, in order.
    pub remaining: Vec<Report>,
    /// A last line cut short by the kill (no newline), ignored: it acknowledges nothing.
    pub torn_line: Option<String>,
}

enum Line {
    Complete(Report),
    /// A complete line that is not a report: a protocol bug.
    Bad {
        line: String,
        error: String,
    },
    /// The last line, cut short by the kill.
    Torn(String),
}

impl Line {
    /// The report of a complete line; panics on a bad one.
    fn into_report(self) -> Result<Report, String> {
        match self {
            Line::Complete(report) => Ok(report),
            Line::Bad { line, error } => {
                panic!("store_crash_writer printed a bad report line {line:?}: {error}")
            }
            Line::Torn(text) => Err(text),
        }
    }
}

/// A running `store_crash_writer`.
pub struct WriterProcess {
    child: Child,
    lines: Receiver<Line>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
    torn_line: Option<String>,
    reaped: bool,
}

impl WriterProcess {
    pub fn spawn(exe: &Path, store_dir: &Path, mode: FlushMode, writers: u32, run: u32) -> Self {
        let mut child = Command::new(exe)
            .arg(store_dir)
            .arg(mode.as_str())
            .arg(writers.to_string())
            .arg(run.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        WriterProcess {
            child,
            lines,
            stdout_reader: Some(spawn_thread("crash-child-stdout", move || {
                read_reports(stdout, tx)
            })),
            stderr_reader: Some(spawn_thread("crash-child-stderr", move || read_all(stderr))),
            torn_line: None,
            reaped: false,
        }
    }

    /// The next complete report line, waiting at most until `deadline`.
    pub fn next_report(&mut self, deadline: Instant) -> Next {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(timeout).map(Line::into_report) {
            Ok(Ok(report)) => Next::Report(report),
            // A torn line can only be the last one; the channel closes right after it.
            Ok(Err(torn)) => {
                self.torn_line = Some(torn);
                Next::Closed
            }
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
            Err(RecvTimeoutError::Timeout) => Next::Deadline,
        }
    }

    /// SIGKILLs the child, reaps it and collects the lines it wrote before dying. Panics, with the
    /// child's stderr, if it had already exited on its own: the writer only stops when killed.
    pub fn kill(mut self) -> Killed {
        // `Child::kill` sends SIGKILL on Unix. If the child already exited this is a no-op and the
        // exit status below tells how it ended.
        let _ = self.child.kill();
        let status = self.reap();
        let stderr = self.join_readers();
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "store_crash_writer ended by itself ({status}) instead of being killed; stderr:\n{stderr}"
        );
        let mut killed = Killed {
            remaining: Vec::new(),
            torn_line: self.torn_line.take(),
        };
        // The stdout reader has finished: everything it saw is in the channel.
        for line in self.lines.try_iter() {
            match line.into_report() {
                Ok(report) => killed.remaining.push(report),
                Err(torn) => killed.torn_line = Some(torn),
            }
        }
        killed
    }

    fn reap(&mut self) -> ExitStatus {
        let status = self.child.wait().expect("waiting for store_crash_writer");
        self.reaped = true;
        status
    }

    /// Joins the pipe readers (they end once the child is dead) and returns the child's stderr.
    fn join_readers(&mut self) -> String {
        if let Some(reader) = self.stdout_reader.take() {
            reader.join().expect("the stdout reader panicked");
        }
        match self.stderr_reader.take() {
            Some(reader) => reader.join().expect("the stderr reader panicked"),
            None => String::new(),
        }
    }
}

impl Drop for WriterProcess {
    /// Kills and reaps the child if the test did not get to (a panic on the way), so it neither
    /// outlives the test nor keeps writing while the store directory is deleted.
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
        // Do not panic inside drop (possibly while unwinding): ignore reader failures here.
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }
}

fn spawn_thread<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .unwrap_or_else(|e| panic!("starting thread {name}: {e}"))
}

/// Forwards the child's stdout line by line until it closes. Only lines ending in a newline are
/// reports; a final fragment (the kill cut the line short) is passed on as torn.
fn read_reports(stdout: ChildStdout, tx: Sender<Line>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .expect("reading store_crash_writer's stdout");
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let line = match text.strip_suffix('\n') {
            Some(complete) => match complete.parse() {
                Ok(report) => Line::Complete(report),
                Err(error) => Line::Bad {
                    line: complete.to_owned(),
                    error,
                },
            },
            None => Line::Torn(text),
        };
        if tx.send(line).is_err() {
            return; // the test stopped listening
        }
    }
}

fn read_all(mut stderr: ChildStderr) -> String {
    let mut text = String::new();
    if let Err(e) = stderr.read_to_string(&mut text) {
        text.push_str(&format!("\n(reading stderr failed: {e})"));
    }
    text
}
