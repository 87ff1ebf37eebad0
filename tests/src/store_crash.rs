//! The contract between the `store_crash_writer` child and the `store_crash` test that SIGKILLs it.
//!
//! **Everything about a message is a pure function of its [`MessageKey`]** (run, writer, sequence
//! number): topic, queue, body and `UNIQ_KEY`. The key is carried in the `UNIQ_KEY` property and
//! at the start of the body, so the test can check *any* record it finds in the store, including
//! the ones whose acknowledgement died with the child, and a torn, shifted or overwritten record
//! can never pass for a good one.
//!
//! The child reports on stdout, one line per event (see [`Report`]):
//!
//! ```text
//! READY pid=4242
//! ACK run=3 writer=1 seq=17 topic=CrashB queue=2 qoff=40 phys=1048576 size=2113
//! TIMEOUT run=3 writer=0 seq=9
//! ```
//!
//! `READY` means the store is open (the child holds its lock from then on); `ACK` means the put
//! returned `PutStatus::Ok`, i.e. the message is as durable as the flush mode promises; `TIMEOUT`
//! means the put returned `FlushDiskTimeout` (appended, durability not promised).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use tern_core::store::{FlushDiskType, Message, StoreConfig, property};

/// The topics the child writes to.
pub const TOPICS: [&str; 2] = ["CrashA", "CrashB"];
/// Queues per topic; messages spread over `TOPICS.len() * QUEUES_PER_TOPIC` queues.
pub const QUEUES_PER_TOPIC: i32 = 4;
/// Body lengths vary in `MIN_BODY_LEN..=MAX_BODY_LEN`, so records straddle pages and segment ends.
pub const MIN_BODY_LEN: usize = 50;
pub const MAX_BODY_LEN: usize = 4000;
/// Writer id the test process itself uses for the messages it appends after a recovery.
/// Children use ids below it.
pub const TEST_PROCESS_WRITER: u32 = 1_000;
/// CommitLog segment size of the crash tests' store: small, so that a child rolls into a new
/// segment several times before it is killed.
pub const SEGMENT_SIZE: u64 = 256 * 1024;
/// Largest body the store accepts (above what the child writes; `StoreConfig::validate` requires
/// the largest possible record to fit in a segment).
pub const MAX_MESSAGE_SIZE: u32 = 16 * 1024;

/// The flush mode the child runs its store with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    Sync,
    Async,
}

impl FlushMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushMode::Sync => "sync",
            FlushMode::Async => "async",
        }
    }

    pub fn disk_type(self) -> FlushDiskType {
        match self {
            FlushMode::Sync => FlushDiskType::SyncFlush,
            FlushMode::Async => FlushDiskType::AsyncFlush,
        }
    }
}

impl FromStr for FlushMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(FlushMode::Sync),
            "async" => Ok(FlushMode::Async),
            other => Err(format!("flush mode must be sync or async, got {other:?}")),
        }
    }
}

/// The store configuration both the child and the test open the store with (they must agree on
/// the segment size, or the store refuses to open).
///
/// A child lives for well under a second, so the background intervals are shortened from their
/// defaults (0.5–60 s) to a few tens of milliseconds: the ASYNC_FLUSH flusher, the ConsumeQueue
/// flusher and the checkpoint writer all run, and get killed, while the child appends. Otherwise
/// only the test's clean shutdowns would ever write a checkpoint.
pub fn store_config(dir: &Path, mode: FlushMode) -> StoreConfig {
    let mut config = StoreConfig::for_tests(dir);
    config.flush_disk_type = mode.disk_type();
    config.commit_log_segment_size = SEGMENT_SIZE;
    config.max_message_size = MAX_MESSAGE_SIZE;
    config.flush_interval_commit_log_ms = 20;
    config.flush_commit_log_thorough_interval_ms = 100;
    config.flush_interval_consume_queue_ms = 20;
    config.flush_consume_queue_thorough_interval_ms = 100;
    config
}

/// Names one message: the `seq`-th message of writer task `writer` in child run `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey {
    pub run: u32,
    pub writer: u32,
    pub seq: u64,
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} writer {} seq {}",
            self.run, self.writer, self.seq
        )
    }
}

impl MessageKey {
    /// Which of the `TOPICS.len() * QUEUES_PER_TOPIC` queues the message goes to. Round robin per
    /// writer, so every writer touches every queue and concurrent writers interleave in each.
    fn slot(&self) -> u64 {
        (u64::from(self.writer) + self.seq) % (TOPICS.len() as u64 * QUEUES_PER_TOPIC as u64)
    }

    pub fn topic(&self) -> &'static str {
        TOPICS[(self.slot() / QUEUES_PER_TOPIC as u64) as usize]
    }

    pub fn queue_id(&self) -> i32 {
        (self.slot() % QUEUES_PER_TOPIC as u64) as i32
    }

    /// The `UNIQ_KEY` property value.
    pub fn uniq_key(&self) -> String {
        format!("crash-{}-{}-{}", self.run, self.writer, self.seq)
    }

    /// Inverse of [`MessageKey::uniq_key`].
    pub fn from_uniq_key(value: &str) -> Option<MessageKey> {
        let mut parts = value.strip_prefix("crash-")?.split('-');
        let key = MessageKey {
            run: parts.next()?.parse().ok()?,
            writer: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(key)
    }

    /// A well-mixed 64-bit hash of the key (splitmix64 finaliser).
    fn hash(&self) -> u64 {
        let combined = (u64::from(self.run) << 32 | u64::from(self.writer))
            ^ self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        splitmix64(combined)
    }

    /// How the body starts: `"<run>/<writer>/<seq>|"`.
    pub fn body_header(&self) -> String {
        format!("{}/{}/{}|", self.run, self.writer, self.seq)
    }

    /// The body: [`MessageKey::body_header`] followed by pseudo-random bytes, 50..=4000 bytes long.
    pub fn body(&self) -> Vec<u8> {
        let mut state = self.hash();
        let span = (MAX_BODY_LEN - MIN_BODY_LEN + 1) as u64;
        let len = MIN_BODY_LEN + (state % span) as usize;
        let mut body = Vec::with_capacity(len + 8);
        body.extend_from_slice(self.body_header().as_bytes());
        while body.len() < len {
            state = splitmix64(state);
            body.extend_from_slice(&state.to_le_bytes());
        }
        body.truncate(len);
        body
    }

    /// The message the child appends for this key.
    pub fn message(&self) -> Message {
        Message::new(self.topic(), self.queue_id(), self.body())
            .with_property(property::UNIQ_KEY, self.uniq_key())
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An acknowledged append: the put returned `PutStatus::Ok` with this placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub key: MessageKey,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    /// Size of the whole record in the CommitLog.
    pub size: u32,
}

/// One line of the child's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The store is open and the child holds its lock.
    Ready {
        pid: u32,
    },
    Ack(Ack),
    /// The put returned `FlushDiskTimeout`: appended, but not promised to be durable.
    Timeout(MessageKey),
}

impl fmt::Display for Report {
    /// The line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Ready { pid } => write!(f, "READY pid={pid}"),
            Report::Ack(a) => write!(
                f,
                "ACK run={} writer={} seq={} topic={} queue={} qoff={} phys={} size={}",
                a.key.run,
                a.key.writer,
                a.key.seq,
                a.topic,
                a.queue_id,
                a.queue_offset,
                a.physical_offset,
                a.size
            ),
            Report::Timeout(key) => write!(
                f,
                "TIMEOUT run={} writer={} seq={}",
                key.run, key.writer, key.seq
            ),
        }
    }
}

impl FromStr for Report {
    type Err = String;

    /// Parses one complete line (without its newline).
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let mut tokens = line.split_whitespace();
        let kind = tokens.next().ok_or("empty line")?;
        let mut fields = HashMap::new();
        for token in tokens {
            let (name, value) = token
                .split_once('=')
                .ok_or_else(|| format!("{token:?} is not name=value"))?;
            fields.insert(name, value);
        }
        let fields = Fields(fields);
        let key = || -> Result<MessageKey, String> {
            Ok(MessageKey {
                run: fields.get("run")?,
                writer: fields.get("writer")?,
                seq: fields.get("seq")?,
            })
        };
        match kind {
            "READY" => Ok(Report::Ready {
                pid: fields.get("pid")?,
            }),
            "ACK" => Ok(Report::Ack(Ack {
                key: key()?,
                topic: fields.get("topic")?,
                queue_id: fields.get("queue")?,
                queue_offset: fields.get("qoff")?,
                physical_offset: fields.get("phys")?,
                size: fields.get("size")?,
            })),
            "TIMEOUT" => Ok(Report::Timeout(key()?)),
            other => Err(format!("unknown report {other:?}")),
        }
    }
}

struct Fields<'a>(HashMap<&'a str, &'a str>);

impl Fields<'_> {
    fn get<T: FromStr>(&self, name: &str) -> Result<T, String> {
        let value = self
            .0
            .get(name)
            .ok_or_else(|| format!("no {name}= field"))?;
        value
            .parse()
            .map_err(|_| format!("{name}={value} cannot be parsed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let key = MessageKey {
            run: 3,
            writer: 1,
            seq: 17,
        };
        let reports = [
            Report::Ready { pid: 42 },
            Report::Ack(Ack {
                key,
                topic: key.topic().to_owned(),
                queue_id: key.queue_id(),
                queue_offset: 40,
                physical_offset: 1 << 20,
                size: 2113,
            }),
            Report::Timeout(key),
        ];
        for report in reports {
            assert_eq!(report.to_string().parse::<Report>(), Ok(report));
        }
        assert!("ACK run=1".parse::<Report>().is_err());
        assert!("HELLO".parse::<Report>().is_err());
    }

    #[test]
    fn everything_derives_from_the_key() {
        let key = MessageKey {
            run: 7,
            writer: 2,
            seq: 123,
        };
        assert_eq!(MessageKey::from_uniq_key(&key.uniq_key()), Some(key));
        assert_eq!(MessageKey::from_uniq_key("crash-1-2"), None);
        assert_eq!(MessageKey::from_uniq_key("crash-1-2-3-4"), None);
        let body = key.body();
        assert!(body.starts_with(b"7/2/123|"));
        assert!((MIN_BODY_LEN..=MAX_BODY_LEN).contains(&body.len()));
        assert_eq!(body, key.body(), "deterministic");
        let other = MessageKey { seq: 124, ..key };
        assert_ne!(body, other.body());
        let lengths: std::collections::HashSet<usize> = (0..100)
            .map(|seq| MessageKey { seq, ..key }.body().len())
            .collect();
        assert!(lengths.len() > 50, "lengths vary");
    }

    #[test]
    fn every_writer_visits_every_queue() {
        let mut seen = std::collections::HashSet::new();
        for seq in 0..8 {
            let key = MessageKey {
                run: 0,
                writer: TEST_PROCESS_WRITER,
                seq,
            };
            seen.insert((key.topic(), key.queue_id()));
        }
        assert_eq!(seen.len(), TOPICS.len() * QUEUES_PER_TOPIC as usize);
    }

    #[test]
    fn config_is_valid() {
        for mode in [FlushMode::Sync, FlushMode::Async] {
            store_config(Path::new("/tmp/x"), mode).validate().unwrap();
        }
    }
}
