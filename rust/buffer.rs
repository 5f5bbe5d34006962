//! The bounded, lock-free queue between request threads and the flusher.
//!
//! Request threads push finished spans and never block or wait: when the queue is full the new
//! span is dropped and counted. The flusher drains it in batches. Correct without a GIL
//! (crossbeam's `ArrayQueue` is a lock-free MPMC ring), so free-threaded Python is fine.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::error::{Error, Result};
use crate::fork;

/// What happened to a pushed item.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<T> {
    /// Queued; this many items have been accepted so far (this one included).
    Accepted(u64),
    /// The queue was full: the item is handed back, and counted as dropped.
    Full(T),
    /// The process forked since this buffer was made: it belongs to the parent. The item is
    /// handed back (not counted) so the caller can build a fresh pipeline and push it there.
    Forked(T),
    /// The buffer was closed (its pipeline shut down): the item is handed back and counted.
    Closed(T),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub accepted: u64,
    pub dropped: u64,
    pub drained: u64,
    pub rejected_closed: u64,
    pub len: usize,
    pub capacity: usize,
}

pub struct SpanBuffer<T> {
    // Never dropped in a forked child: a thread that was mid-push in the parent when it forked
    // does not exist in the child, and may have left a slot reserved but unwritten.
    queue: ManuallyDrop<ArrayQueue<T>>,
    generation: u64,
    accepted: AtomicU64,
    dropped: AtomicU64,
    drained: AtomicU64,
    rejected_closed: AtomicU64,
    closed: AtomicBool,
    /// Producers wake the consumer when the queue reaches this length.
    wake_at: AtomicUsize,
    wake_requested: AtomicBool,
    signal: (Mutex<()>, Condvar),
}

/// The ring is allocated up front, so its size is bounded (about 200 MB of slots at most).
pub const MAX_CAPACITY: usize = 1 << 22;

impl<T> SpanBuffer<T> {
    pub fn new(capacity: usize) -> Result<Self> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(Error::InvalidConfig(format!(
                "buffer capacity must be between 1 and {MAX_CAPACITY}, got {capacity}"
            )));
        }
        Ok(SpanBuffer {
            queue: ManuallyDrop::new(ArrayQueue::new(capacity)),
            generation: fork::generation(),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            rejected_closed: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            wake_at: AtomicUsize::new(capacity),
            wake_requested: AtomicBool::new(false),
            signal: (Mutex::new(()), Condvar::new()),
        })
    }

    /// True when this buffer was made in this process (not inherited through `fork()`).
    pub fn is_owned_by_this_process(&self) -> bool {
        fork::generation() == self.generation
    }

    pub fn push(&self, item: T) -> Push<T> {
        if !self.is_owned_by_this_process() {
            return Push::Forked(item);
        }
        if self.closed.load(Ordering::Relaxed) {
            self.rejected_closed.fetch_add(1, Ordering::Relaxed);
            return Push::Closed(item);
        }
        match self.queue.push(item) {
            Ok(()) => {
                let accepted = self.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                // Wake the consumer once per batch's worth of pushes. Counted with the
                // producers' own counter: the queue's length would read the consumer's cache
                // line on every push.
                let wake_at = self.wake_at.load(Ordering::Relaxed) as u64;
                if accepted.is_multiple_of(wake_at) && !self.wake_requested.load(Ordering::Relaxed)
                {
                    self.wake();
                }
                Push::Accepted(accepted)
            }
            Err(item) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Push::Full(item)
            }
        }
    }

    /// Takes up to `max` items, oldest first. Empty in a forked child.
    pub fn drain(&self, max: usize) -> Vec<T> {
        if !self.is_owned_by_this_process() {
            return Vec::new();
        }
        let mut batch = Vec::with_capacity(max.min(self.queue.len()));
        while batch.len() < max {
            match self.queue.pop() {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        self.drained
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch
    }

    /// Wake the consumer once the queue holds `len` items (a batch).
    pub fn set_wake_at(&self, len: usize) {
        self.wake_at.store(len.max(1), Ordering::Relaxed);
    }

    /// Wake a consumer blocked in `wait` now (a flush, a shutdown, or a full batch).
    pub fn wake(&self) {
        self.wake_requested.store(true, Ordering::Release);
        let _guard = self.signal.0.lock().unwrap_or_else(PoisonError::into_inner);
        self.signal.1.notify_all();
    }

    /// Blocks until a batch is ready, `wake` is called, or `timeout` passes. Returns whether it
    /// was woken (as opposed to timing out).
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.signal.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (_guard, result) = self
            .signal
            .1
            .wait_timeout_while(guard, timeout, |()| {
                !self.wake_requested.load(Ordering::Acquire)
                    && !self.closed.load(Ordering::Relaxed)
                    && self.queue.len() < self.wake_at.load(Ordering::Relaxed)
            })
            .unwrap_or_else(PoisonError::into_inner);
        self.wake_requested.store(false, Ordering::Release);
        !result.timed_out()
    }

    /// Refuse new items from now on (they are counted as `rejected_closed`), and wake the
    /// consumer so it drains what is left.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            accepted: self.accepted.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
            rejected_closed: self.rejected_closed.load(Ordering::Relaxed),
            len: self.queue.len(),
            capacity: self.queue.capacity(),
        }
    }
}

impl<T> Drop for SpanBuffer<T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // In a forked child the inherited queue is leaked on purpose (see the field's comment).
        if self.is_owned_by_this_process() {
            // SAFETY: `queue` is dropped exactly once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.queue) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn capacity_out_of_range_is_a_config_error() {
        for capacity in [0, MAX_CAPACITY + 1, usize::MAX] {
            assert!(matches!(
                SpanBuffer::<u32>::new(capacity),
                Err(Error::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn full_buffer_drops_and_counts() {
        let buffer = SpanBuffer::new(2).unwrap();
        assert_eq!(buffer.push(1), Push::Accepted(1));
        assert_eq!(buffer.push(2), Push::Accepted(2));
        assert_eq!(buffer.push(3), Push::Full(3));
        assert_eq!(buffer.drain(10), vec![1, 2]);
        let stats = buffer.stats();
        assert_eq!(
            (stats.accepted, stats.dropped, stats.drained, stats.len),
            (2, 1, 2, 0)
        );
    }

    #[test]
    fn closed_buffer_rejects_and_counts() {
        let buffer = SpanBuffer::new(4).unwrap();
        assert_eq!(buffer.push(1), Push::Accepted(1));
        buffer.close();
        assert_eq!(buffer.push(2), Push::Closed(2));
        assert_eq!(buffer.drain(10), vec![1]);
        assert_eq!(buffer.stats().rejected_closed, 1);
    }

    #[test]
    fn a_full_batch_wakes_the_consumer() {
        let buffer = Arc::new(SpanBuffer::new(100).unwrap());
        buffer.set_wake_at(3);
        let consumer = {
            let buffer = Arc::clone(&buffer);
            std::thread::spawn(move || buffer.wait(Duration::from_secs(30)))
        };
        for i in 0..3 {
            buffer.push(i);
        }
        assert!(
            consumer.join().unwrap(),
            "woken by the batch, not by the timeout"
        );
        // The batch is still there: a new wait returns at once; once drained, it times out
        // (the wake was consumed, not left pending).
        assert!(
            buffer.wait(Duration::from_secs(30)),
            "a ready batch wakes at once"
        );
        assert_eq!(buffer.drain(10), vec![0, 1, 2]);
        assert!(
            !buffer.wait(Duration::from_millis(20)),
            "nothing ready: times out"
        );
    }

    #[test]
    fn wait_times_out_when_idle() {
        let buffer = SpanBuffer::<u8>::new(10).unwrap();
        buffer.set_wake_at(5);
        assert!(!buffer.wait(Duration::from_millis(20)));
        buffer.wake();
        assert!(buffer.wait(Duration::from_secs(30)));
    }

    #[test]
    fn drains_in_batches_oldest_first() {
        let buffer = SpanBuffer::new(10).unwrap();
        for i in 0..7 {
            buffer.push(i);
        }
        assert_eq!(buffer.drain(3), vec![0, 1, 2]);
        assert_eq!(buffer.drain(3), vec![3, 4, 5]);
        assert_eq!(buffer.drain(3), vec![6]);
        assert!(buffer.drain(3).is_empty());
    }

    #[test]
    fn concurrent_producers_lose_nothing_under_capacity() {
        let buffer = Arc::new(SpanBuffer::new(40_000).unwrap());
        let producers: Vec<_> = (0..4)
            .map(|t| {
                let buffer = Arc::clone(&buffer);
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        assert!(matches!(buffer.push(t * 10_000 + i), Push::Accepted(_)));
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 40_000 {
            seen.extend(buffer.drain(512));
            if producers.iter().all(std::thread::JoinHandle::is_finished) {
                seen.extend(buffer.drain(usize::MAX));
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..40_000).collect::<Vec<_>>());
        assert_eq!(buffer.stats().dropped, 0);
    }
}
