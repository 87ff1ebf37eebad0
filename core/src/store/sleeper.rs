//! A background thread that sleeps until there is work, and the cheap way to wake it.
//!
//! Appenders wake the dispatcher, the flushers and the prefaulter after every append. An
//! unconditional `Thread::unpark` is a futex system call whenever the thread is parked, which at
//! hundreds of thousands of appends a second is a real cost. So the thread announces that it is
//! going to sleep, and wakers only unpark a thread that announced it. The announcement and the
//! work are ordered by `SeqCst` fences on both sides (the Dekker pattern): either the waker sees
//! the announcement and unparks, or the sleeper sees the work and does not park. A missed wake-up
//! is impossible; a timeout bounds the damage of any bug here anyway.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread::Thread;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Sleeper {
    thread: OnceLock<Thread>,
    sleeping: AtomicBool,
}

impl Sleeper {
    /// Wakes the thread if it is asleep or about to sleep. Call after the work is visible.
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// Sleeps up to `timeout`, unless `has_work` says there is work once the sleep is announced.
    /// The first call binds the sleeper to the calling thread; only that thread may call it. The
    /// binding happens before the announcement, so a waker that sees the announcement finds the
    /// thread to unpark.
    pub(crate) fn sleep(&self, timeout: Duration, has_work: impl FnOnce() -> bool) {
        let me = self.thread.get_or_init(std::thread::current);
        debug_assert_eq!(
            me.id(),
            std::thread::current().id(),
            "a Sleeper serves one thread"
        );
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// A producer bumps a counter and wakes; the consumer sleeps with a long timeout whenever it
    /// has seen everything. A lost wake-up would show as a 10 s stall.
    #[test]
    fn no_wake_up_is_lost() {
        let sleeper = Arc::new(Sleeper::default());
        let produced = Arc::new(AtomicU64::new(0));
        let consumer = {
            let (sleeper, produced) = (sleeper.clone(), produced.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while seen < 20_000 {
                    let now = produced.load(Ordering::Acquire);
                    if now > seen {
                        seen = now;
                        continue;
                    }
                    sleeper.sleep(Duration::from_secs(10), || {
                        produced.load(Ordering::Acquire) > seen
                    });
                }
            })
        };
        let start = Instant::now();
        for _ in 0..20_000 {
            produced.fetch_add(1, Ordering::Release);
            sleeper.wake();
        }
        consumer.join().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(9),
            "a wake-up was lost"
        );
    }
}
