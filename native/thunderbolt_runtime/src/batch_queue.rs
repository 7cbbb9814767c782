//! A thread-safe queue that groups requests into batches.
//!
//! Callers [`submit`](BatchQueue::submit) requests under a batch key; worker
//! threads block in [`take_batch`](BatchQueue::take_batch) until some key's
//! requests are worth running together. It knows nothing of ONNX Runtime or
//! the BEAM: the key and the payload are the user's types.
//!
//! # When a batch leaves
//!
//! A key's requests leave together, oldest first, up to `batch_size` rows (a
//! request larger than `batch_size` leaves alone and is never split), as soon
//! as one of these holds:
//!
//! * the key has `batch_size` rows waiting;
//! * its oldest request has waited `batch_timeout`;
//! * no batch is running: a worker that would wait has nothing else to do,
//!   and the caller nothing to wait for, so a lone caller goes at once.
//!
//! Waits use [`Condvar::wait_timeout`], so `batch_timeout` is honoured to the
//! microsecond (give or take the OS's wake-up latency).
//!
//! # Answers
//!
//! Every accepted request is answered exactly once, by exactly one party:
//!
//! * the worker that ran it, after [`Batch::claim`] says it is still wanted;
//! * nobody, when the caller [`cancel`](BatchQueue::cancel)s it first (the
//!   caller then knows no answer will come);
//! * whoever [`close`](BatchQueue::close)s the queue, for requests still
//!   queued then;
//! * the next worker, for requests of a batch that was dropped without being
//!   claimed (its worker panicked): [`take_batch`](BatchQueue::take_batch)
//!   hands them out as [`Taken::Orphans`] so that they can be failed.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a queue forms batches and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The most rows in one batch (a single larger request runs alone).
    pub batch_size: usize,
    /// How long a request may wait for others to join it.
    pub batch_timeout: Duration,
    /// How many requests may wait before `submit` refuses more.
    pub max_queue: usize,
}

/// Why `submit` refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// `max_queue` requests are waiting already.
    Overloaded,
    /// The queue was closed.
    Closed,
}

/// What `cancel` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// The request was withdrawn: it will never be answered.
    Withdrawn,
    /// Too late: its answer has been or is being delivered.
    TooLate,
}

/// One request, as the queue hands it back.
#[derive(Debug)]
pub struct Entry<P> {
    pub id: u64,
    pub rows: usize,
    pub payload: P,
}

/// What `take_batch` found.
#[derive(Debug)]
pub enum Taken<'q, K: Eq + Hash + Clone, P> {
    /// A batch to run; its requests must be [`claim`](Batch::claim)ed
    /// before they are answered.
    Batch(Batch<'q, K, P>),
    /// Requests of a batch whose worker gave up on it without answering;
    /// they are the taker's to fail.
    Orphans(Vec<Entry<P>>),
    /// Nothing became ready within the wait.
    Idle,
    /// The queue is closed.
    Closed,
}

/// Counters and gauges, read together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Requests accepted by `submit`.
    pub requests: u64,
    /// Requests refused as overloaded.
    pub rejected: u64,
    /// Requests withdrawn by `cancel`.
    pub cancelled: u64,
    /// Queued requests dropped before they ran: withdrawn, or refused by
    /// `take_batch`'s `wanted` filter.
    pub skipped: u64,
    /// Requests waiting now.
    pub pending: usize,
    /// Batches taken and not yet claimed or dropped.
    pub running: usize,
}

struct Queued<P> {
    entry: Entry<P>,
    since: Instant,
}

struct Group<P> {
    rows: usize,
    requests: VecDeque<Queued<P>>,
}

struct State<K, P> {
    groups: HashMap<K, Group<P>>,
    pending: usize,
    /// Ids taken into a batch and not yet claimed or cancelled.
    in_flight: HashSet<u64>,
    running: usize,
    orphans: Vec<Entry<P>>,
    /// Threads blocked in `take_batch`, so `submit` only signals when
    /// someone listens.
    waiting: usize,
    closed: bool,
    next_id: u64,
    stats: QueueStats,
}

/// The queue. See the module docs.
pub struct BatchQueue<K, P> {
    config: QueueConfig,
    state: Mutex<State<K, P>>,
    ready: Condvar,
}

impl<K, P> std::fmt::Debug for BatchQueue<K, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Pick<K> {
    Ready(K),
    /// Nothing ready; the earliest time something will be, if any.
    Wait(Option<Instant>),
}

impl<K: Eq + Hash + Clone, P> BatchQueue<K, P> {
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config: QueueConfig {
                batch_size: config.batch_size.max(1),
                max_queue: config.max_queue.max(1),
                ..config
            },
            state: Mutex::new(State {
                groups: HashMap::new(),
                pending: 0,
                in_flight: HashSet::new(),
                running: 0,
                orphans: Vec::new(),
                waiting: 0,
                closed: false,
                next_id: 1,
                stats: QueueStats::default(),
            }),
            ready: Condvar::new(),
        }
    }

    pub fn config(&self) -> QueueConfig {
        self.config
    }

    // Nothing in this module panics while holding the lock, but a payload's
    // Drop or the user's `wanted` filter might; the state stays consistent
    // at every point where they run, so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, State<K, P>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request of `rows` rows under `key` and returns its id.
    pub fn submit(&self, key: K, rows: usize, payload: P) -> Result<u64, SubmitError> {
        self.submit_waking(key, rows, payload).map(|(id, _)| id)
    }

    /// Like `submit`, and also says whether this request changed what an
    /// idle worker waits for (a new key, a full key, or nothing running),
    /// for workers that park outside the queue instead of in `take_batch`.
    pub fn submit_waking(
        &self,
        key: K,
        rows: usize,
        payload: P,
    ) -> Result<(u64, bool), SubmitError> {
        let mut st = self.lock();
        if st.closed {
            return Err(SubmitError::Closed);
        }
        if st.pending >= self.config.max_queue {
            st.stats.rejected += 1;
            return Err(SubmitError::Overloaded);
        }
        let id = st.next_id;
        st.next_id += 1;
        st.pending += 1;
        st.stats.requests += 1;
        let queued = Queued {
            entry: Entry { id, rows, payload },
            since: Instant::now(),
        };
        // Wake a worker only when this request changes what it waits for: a
        // new key (a worker may sleep with no deadline, or a later one), a
        // key that is now full, or nothing running (the request goes at once).
        // A request joining a partial key while batches run changes nothing.
        let wake = match st.groups.entry(key) {
            MapEntry::Occupied(mut group) => {
                let group = group.get_mut();
                group.rows += rows;
                group.requests.push_back(queued);
                group.rows >= self.config.batch_size
            }
            MapEntry::Vacant(slot) => {
                slot.insert(Group {
                    rows,
                    requests: VecDeque::from([queued]),
                });
                true
            }
        } || st.running == 0;
        if wake && st.waiting > 0 {
            self.ready.notify_one();
        }
        Ok((id, wake))
    }

    /// The rows of the batch `take_batch` would take now, if one is ready:
    /// an upper bound, since requests whose callers are gone are dropped
    /// when it is taken. Lets a worker judge a batch's cost before taking it.
    pub fn ready_rows(&self) -> Option<usize> {
        let st = self.lock();
        let Pick::Ready(key) = self.pick(&st, Instant::now()) else {
            return None;
        };
        let mut rows = 0;
        for queued in &st.groups.get(&key)?.requests {
            let n = queued.entry.rows;
            if rows > 0 && rows + n > self.config.batch_size {
                break;
            }
            rows += n;
        }
        Some(rows)
    }

    /// How long until something becomes ready (`Some(ZERO)` when something
    /// is ready now), or `None` when nothing is queued.
    pub fn next_ready_in(&self) -> Option<Duration> {
        let st = self.lock();
        let now = Instant::now();
        match self.pick(&st, now) {
            Pick::Ready(_) => Some(Duration::ZERO),
            Pick::Wait(until) => until.map(|t| t.saturating_duration_since(now)),
        }
    }

    /// Blocks for at most `wait` until a batch is ready, and takes it.
    /// Requests for which `wanted` returns false (say, their caller died)
    /// are dropped from the queue and counted as skipped instead.
    pub fn take_batch(
        &self,
        wait: Duration,
        mut wanted: impl FnMut(&P) -> bool,
    ) -> Taken<'_, K, P> {
        let give_up = Instant::now() + wait;
        let mut st = self.lock();
        loop {
            if !st.orphans.is_empty() {
                return Taken::Orphans(std::mem::take(&mut st.orphans));
            }
            if st.closed {
                return Taken::Closed;
            }
            let now = Instant::now();
            match self.pick(&st, now) {
                Pick::Ready(key) => {
                    if let Some(batch) = self.take_from(&mut st, key, &mut wanted) {
                        return Taken::Batch(batch);
                    }
                    // Every request of that key was unwanted; look again.
                }
                Pick::Wait(until) => {
                    if now >= give_up {
                        return Taken::Idle;
                    }
                    let until = until.map_or(give_up, |t| t.min(give_up));
                    st.waiting += 1;
                    st = self
                        .ready
                        .wait_timeout(st, until.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    st.waiting -= 1;
                }
            }
        }
    }

    fn pick(&self, st: &State<K, P>, now: Instant) -> Pick<K> {
        let mut ready: Option<(&K, Instant)> = None;
        let mut earliest: Option<Instant> = None;
        for (key, group) in &st.groups {
            let Some(head) = group.requests.front() else {
                continue;
            };
            let due = head.since + self.config.batch_timeout;
            if group.rows >= self.config.batch_size || due <= now || st.running == 0 {
                if ready.is_none_or(|(_, since)| head.since < since) {
                    ready = Some((key, head.since));
                }
            } else {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        match ready {
            Some((key, _)) => Pick::Ready(key.clone()),
            None => Pick::Wait(earliest),
        }
    }

    fn take_from<'q>(
        &'q self,
        st: &mut State<K, P>,
        key: K,
        wanted: &mut impl FnMut(&P) -> bool,
    ) -> Option<Batch<'q, K, P>> {
        let MapEntry::Occupied(mut slot) = st.groups.entry(key) else {
            return None;
        };
        let group = slot.get_mut();
        let mut entries = Vec::new();
        let mut rows = 0;
        let mut removed = 0;
        let mut skipped = 0;
        while let Some(head) = group.requests.front() {
            let n = head.entry.rows;
            if !entries.is_empty() && rows + n > self.config.batch_size {
                break;
            }
            let queued = group.requests.pop_front().expect("front exists");
            group.rows -= n;
            removed += 1;
            if wanted(&queued.entry.payload) {
                rows += n;
                entries.push(queued.entry);
            } else {
                skipped += 1;
            }
        }
        let key = slot.key().clone();
        if slot.get().requests.is_empty() {
            slot.remove();
        }
        st.pending -= removed;
        st.stats.skipped += skipped;
        if entries.is_empty() {
            return None;
        }
        st.in_flight.extend(entries.iter().map(|e| e.id));
        st.running += 1;
        Some(Batch {
            queue: self,
            key,
            entries,
            rows,
            claimed: false,
        })
    }

    /// Withdraws a request that is queued, or running and not yet claimed.
    pub fn cancel(&self, id: u64) -> Cancel {
        let mut st = self.lock();
        let st = &mut *st;
        let mut found = None;
        for (key, group) in st.groups.iter_mut() {
            if let Some(i) = group.requests.iter().position(|q| q.entry.id == id) {
                let queued = group.requests.remove(i).expect("position is valid");
                group.rows -= queued.entry.rows;
                found = Some((key.clone(), group.requests.is_empty()));
                break;
            }
        }
        let withdrawn = if let Some((key, empty)) = found {
            if empty {
                st.groups.remove(&key);
            }
            st.pending -= 1;
            st.stats.skipped += 1;
            true
        } else if st.in_flight.remove(&id) {
            true
        } else if let Some(i) = st.orphans.iter().position(|e| e.id == id) {
            st.orphans.swap_remove(i);
            true
        } else {
            false
        };
        if withdrawn {
            st.stats.cancelled += 1;
            Cancel::Withdrawn
        } else {
            Cancel::TooLate
        }
    }

    /// Closes the queue: `submit` refuses from now on, waiting workers wake
    /// up to [`Taken::Closed`], and the requests still queued (and orphans
    /// not yet handed out) are returned for the caller to answer. Batches
    /// already running finish and are answered by their workers.
    pub fn close(&self) -> Vec<Entry<P>> {
        let mut st = self.lock();
        st.closed = true;
        let mut drained = std::mem::take(&mut st.orphans);
        let mut queued: Vec<Queued<P>> = st
            .groups
            .drain()
            .flat_map(|(_, group)| group.requests)
            .collect();
        queued.sort_by_key(|q| q.entry.id);
        drained.extend(queued.into_iter().map(|q| q.entry));
        st.pending = 0;
        self.ready.notify_all();
        drained
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn stats(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            pending: st.pending,
            running: st.running,
            ..st.stats
        }
    }

    fn finish(&self, entries: &[Entry<P>]) -> Vec<bool> {
        let mut st = self.lock();
        let wanted = entries.iter().map(|e| st.in_flight.remove(&e.id)).collect();
        self.batch_done(&mut st);
        wanted
    }

    fn abandon(&self, entries: Vec<Entry<P>>) {
        let mut st = self.lock();
        for entry in entries {
            if st.in_flight.remove(&entry.id) {
                st.orphans.push(entry);
            }
        }
        self.batch_done(&mut st);
        if !st.orphans.is_empty() {
            self.ready.notify_all();
        }
    }

    fn batch_done(&self, st: &mut State<K, P>) {
        st.running -= 1;
        // With nothing running, a partial batch need not wait any more.
        if st.running == 0 && st.pending > 0 && st.waiting > 0 {
            self.ready.notify_one();
        }
    }
}

/// Requests taken together. Dropping a batch without [`claim`](Self::claim)
/// (its worker panicked, say) makes its unanswered requests orphans, which
/// the next `take_batch` hands out, so no caller waits forever.
#[derive(Debug)]
pub struct Batch<'q, K: Eq + Hash + Clone, P> {
    queue: &'q BatchQueue<K, P>,
    key: K,
    entries: Vec<Entry<P>>,
    rows: usize,
    claimed: bool,
}

impl<K: Eq + Hash + Clone, P> Batch<'_, K, P> {
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The requests, oldest first.
    pub fn entries(&self) -> &[Entry<P>] {
        &self.entries
    }

    /// The rows of all requests together.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Takes the right to answer each request, in order: `false` for those
    /// cancelled meanwhile, which must not be answered. Call once, when the
    /// answers are ready to go out without anything left that can fail.
    pub fn claim(&mut self) -> Vec<bool> {
        if self.claimed {
            return vec![false; self.entries.len()];
        }
        self.claimed = true;
        self.queue.finish(&self.entries)
    }
}

impl<K: Eq + Hash + Clone, P> Drop for Batch<'_, K, P> {
    fn drop(&mut self) {
        if !self.claimed {
            self.queue.abandon(std::mem::take(&mut self.entries));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    type Queue = BatchQueue<&'static str, u32>;

    fn queue(batch_size: usize, timeout_us: u64, max_queue: usize) -> Queue {
        BatchQueue::new(QueueConfig {
            batch_size,
            batch_timeout: Duration::from_micros(timeout_us),
            max_queue,
        })
    }

    fn all(_: &u32) -> bool {
        true
    }

    fn ids<K: Eq + Hash + Clone>(batch: &Batch<'_, K, u32>) -> Vec<u64> {
        batch.entries().iter().map(|e| e.id).collect()
    }

    /// Takes a batch and keeps it running (unclaimed) so that the queue
    /// sees a busy worker.
    fn hold<'q>(q: &'q Queue, key: &'static str) -> Batch<'q, &'static str, u32> {
        q.submit(key, 1, 0).unwrap();
        match q.take_batch(Duration::from_secs(5), all) {
            Taken::Batch(b) => b,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn submit_waking_says_when_a_parked_worker_has_something_new() {
        let q = queue(3, 60_000_000, 16);
        assert_eq!(q.next_ready_in(), None);
        // Nothing runs: the request could go at once.
        assert!(q.submit_waking("a", 1, 0).unwrap().1);
        assert_eq!(q.next_ready_in(), Some(Duration::ZERO));
        let _running = match q.take_batch(Duration::ZERO, all) {
            Taken::Batch(b) => b,
            other => panic!("expected a batch, got {other:?}"),
        };
        // A batch runs: a new key brings a new deadline, a joiner that
        // leaves its key partial changes nothing, a full key is ready.
        assert!(q.submit_waking("b", 1, 0).unwrap().1);
        let wait = q.next_ready_in().expect("b is queued");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(!q.submit_waking("b", 1, 0).unwrap().1);
        assert!(q.submit_waking("b", 1, 0).unwrap().1);
        assert_eq!(q.next_ready_in(), Some(Duration::ZERO));
    }

    #[test]
    fn ready_rows_is_what_a_take_would_take() {
        let q = queue(4, 60_000_000, 16);
        assert_eq!(q.ready_rows(), None);
        q.submit("a", 3, 0).unwrap();
        q.submit("a", 2, 0).unwrap();
        // Nothing runs, so "a" is ready; 3 + 2 would pass batch_size.
        assert_eq!(q.ready_rows(), Some(3));
        let Taken::Batch(batch) = q.take_batch(Duration::ZERO, all) else {
            panic!("expected a batch");
        };
        assert_eq!(batch.rows(), 3);
        // One batch runs and "a" holds 2 of 4 rows: not ready yet.
        assert_eq!(q.ready_rows(), None);
    }

    #[test]
    fn a_lone_request_goes_at_once_when_nothing_runs() {
        let q = queue(32, 60_000_000, 16);
        let id = q.submit("a", 1, 7).unwrap();
        let started = Instant::now();
        let Taken::Batch(mut b) = q.take_batch(Duration::from_secs(30), all) else {
            panic!("expected a batch");
        };
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(ids(&b), vec![id]);
        assert_eq!(b.entries()[0].payload, 7);
        assert_eq!(b.claim(), vec![true]);
    }

    #[test]
    fn while_a_batch_runs_a_partial_one_waits_for_its_timeout() {
        let q = queue(4, 50_000, 16);
        let running = hold(&q, "busy");
        for i in 0..3 {
            q.submit("a", 1, i).unwrap();
        }
        // Three rows of four, 50 ms timeout: a 5 ms wait finds nothing.
        assert!(matches!(
            q.take_batch(Duration::from_millis(5), all),
            Taken::Idle
        ));
        let started = Instant::now();
        let Taken::Batch(mut b) = q.take_batch(Duration::from_secs(30), all) else {
            panic!("expected the batch at its deadline");
        };
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(b.rows(), 3);
        b.claim();
        drop(running);
    }

    #[test]
    fn a_full_batch_goes_at_once_while_another_runs() {
        let q = queue(4, 60_000_000, 16);
        let _running = hold(&q, "busy");
        for i in 0..3 {
            q.submit("a", 1, i).unwrap();
        }
        assert!(matches!(
            q.take_batch(Duration::from_millis(1), all),
            Taken::Idle
        ));
        let waiter = thread::scope(|s| {
            let waiter = s.spawn(|| match q.take_batch(Duration::from_secs(30), all) {
                Taken::Batch(mut b) => {
                    let rows = b.rows();
                    b.claim();
                    rows
                }
                other => panic!("expected a batch, got {other:?}"),
            });
            // Let the waiter block first, then complete the batch.
            while q.lock().waiting == 0 {
                thread::yield_now();
            }
            q.submit("a", 1, 3).unwrap();
            waiter.join().unwrap()
        });
        assert_eq!(waiter, 4);
    }

    #[test]
    fn a_partial_batch_goes_when_the_running_one_finishes() {
        let q = queue(4, 60_000_000, 16);
        let mut running = hold(&q, "busy");
        q.submit("a", 1, 1).unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| match q.take_batch(Duration::from_secs(30), all) {
                Taken::Batch(mut b) => {
                    b.claim();
                    b.rows()
                }
                other => panic!("expected a batch, got {other:?}"),
            });
            while q.lock().waiting == 0 {
                thread::yield_now();
            }
            running.claim();
            assert_eq!(waiter.join().unwrap(), 1);
        });
    }

    #[test]
    fn the_timeout_counts_in_microseconds() {
        // 300 µs, not rounded to a whole millisecond either way: the batch
        // leaves after its deadline and well before a 1 s idle wait ends.
        let q = queue(32, 300, 16);
        let _running = hold(&q, "busy");
        let submitted = Instant::now();
        q.submit("a", 1, 1).unwrap();
        let Taken::Batch(mut b) = q.take_batch(Duration::from_secs(1), all) else {
            panic!("expected a batch");
        };
        let waited = submitted.elapsed();
        assert!(waited >= Duration::from_micros(300), "{waited:?}");
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        b.claim();
    }

    #[test]
    fn batches_take_the_oldest_first_up_to_batch_size_rows() {
        let q = queue(5, 0, 16);
        let a = q.submit("k", 2, 0).unwrap();
        let b = q.submit("k", 2, 1).unwrap();
        let c = q.submit("k", 2, 2).unwrap();
        let Taken::Batch(mut first) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!(ids(&first), vec![a, b]);
        assert_eq!(first.rows(), 4);
        first.claim();
        let Taken::Batch(mut second) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!(ids(&second), vec![c]);
        second.claim();
    }

    #[test]
    fn a_request_larger_than_batch_size_runs_alone_and_whole() {
        let q = queue(4, 0, 16);
        let big = q.submit("k", 10, 0).unwrap();
        let small = q.submit("k", 1, 1).unwrap();
        let Taken::Batch(mut b) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!((ids(&b), b.rows()), (vec![big], 10));
        b.claim();
        let Taken::Batch(mut b) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!(ids(&b), vec![small]);
        b.claim();
    }

    #[test]
    fn different_keys_never_share_a_batch_and_the_oldest_key_goes_first() {
        let q = queue(8, 0, 16);
        let a1 = q.submit("a", 1, 0).unwrap();
        let b1 = q.submit("b", 1, 1).unwrap();
        let a2 = q.submit("a", 1, 2).unwrap();
        let Taken::Batch(mut first) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!((*first.key(), ids(&first)), ("a", vec![a1, a2]));
        first.claim();
        let Taken::Batch(mut second) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!((*second.key(), ids(&second)), ("b", vec![b1]));
        second.claim();
    }

    #[test]
    fn unwanted_requests_are_skipped() {
        let q = queue(8, 0, 16);
        q.submit("a", 1, 1).unwrap();
        let keep = q.submit("a", 1, 2).unwrap();
        q.submit("b", 1, 1).unwrap();
        let Taken::Batch(mut b) = q.take_batch(Duration::ZERO, |p| *p != 1) else {
            panic!()
        };
        assert_eq!(ids(&b), vec![keep]);
        b.claim();
        // "b" held only an unwanted request: nothing is left.
        assert!(matches!(
            q.take_batch(Duration::ZERO, |p| *p != 1),
            Taken::Idle
        ));
        let stats = q.stats();
        assert_eq!((stats.skipped, stats.pending, stats.running), (2, 0, 0));
    }

    #[test]
    fn a_full_queue_refuses_with_overloaded_and_takes_again_once_drained() {
        let q = queue(8, 0, 2);
        q.submit("a", 1, 0).unwrap();
        q.submit("a", 1, 1).unwrap();
        assert_eq!(q.submit("a", 1, 2), Err(SubmitError::Overloaded));
        let Taken::Batch(mut b) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        b.claim();
        assert!(q.submit("a", 1, 3).is_ok());
        let stats = q.stats();
        assert_eq!((stats.requests, stats.rejected, stats.pending), (3, 1, 1));
    }

    #[test]
    fn cancel_withdraws_queued_and_unclaimed_requests_but_not_answered_ones() {
        let q = queue(8, 0, 16);
        let queued = q.submit("a", 1, 0).unwrap();
        assert_eq!(q.cancel(queued), Cancel::Withdrawn);
        assert_eq!(q.stats().pending, 0);
        assert!(matches!(q.take_batch(Duration::ZERO, all), Taken::Idle));

        let running = q.submit("a", 1, 1).unwrap();
        let answered = q.submit("a", 1, 2).unwrap();
        let Taken::Batch(mut b) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!(q.cancel(running), Cancel::Withdrawn);
        assert_eq!(b.claim(), vec![false, true]);
        assert_eq!(q.cancel(answered), Cancel::TooLate);
        assert_eq!(q.cancel(12345), Cancel::TooLate);
        let stats = q.stats();
        assert_eq!((stats.cancelled, stats.skipped), (2, 1));
    }

    #[test]
    fn close_returns_the_queued_requests_wakes_waiters_and_refuses_more() {
        let q = queue(8, 60_000_000, 16);
        let mut running = hold(&q, "busy");
        let a = q.submit("a", 1, 1).unwrap();
        let b = q.submit("b", 1, 2).unwrap();
        let drained = thread::scope(|s| {
            let waiter = s.spawn(|| q.take_batch(Duration::from_secs(30), all));
            while q.lock().waiting == 0 {
                thread::yield_now();
            }
            let drained = q.close();
            assert!(matches!(waiter.join().unwrap(), Taken::Closed));
            drained
        });
        assert_eq!(drained.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(q.submit("a", 1, 3), Err(SubmitError::Closed));
        // The batch that was running is still answered by its worker.
        assert_eq!(running.claim(), vec![true]);
        assert_eq!(q.cancel(a), Cancel::TooLate);
    }

    #[test]
    fn a_batch_dropped_unclaimed_comes_back_as_orphans_once() {
        let q = queue(8, 0, 16);
        let a = q.submit("a", 1, 0).unwrap();
        let b = q.submit("a", 1, 1).unwrap();
        let c = q.submit("a", 1, 2).unwrap();
        let Taken::Batch(batch) = q.take_batch(Duration::ZERO, all) else {
            panic!()
        };
        assert_eq!(q.cancel(b), Cancel::Withdrawn);
        // A worker that panics mid-batch drops it without claiming.
        let result = thread::scope(|s| {
            s.spawn(move || {
                let _batch = batch;
                panic!("injected failure mid-batch");
            })
            .join()
        });
        assert!(result.is_err());
        let Taken::Orphans(orphans) = q.take_batch(Duration::ZERO, all) else {
            panic!("expected orphans")
        };
        // b was cancelled: its caller expects nothing.
        assert_eq!(orphans.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, c]);
        assert!(matches!(q.take_batch(Duration::ZERO, all), Taken::Idle));
        assert_eq!(q.stats().running, 0);
        assert_eq!(q.cancel(a), Cancel::TooLate);
    }

    #[test]
    fn orphans_wake_a_waiting_worker() {
        let q = queue(8, 60_000_000, 16);
        let batch = hold(&q, "a");
        thread::scope(|s| {
            let waiter = s.spawn(|| q.take_batch(Duration::from_secs(30), all));
            while q.lock().waiting == 0 {
                thread::yield_now();
            }
            drop(batch);
            assert!(matches!(waiter.join().unwrap(), Taken::Orphans(o) if o.len() == 1));
        });
    }

    /// Many submitters and workers, random cancels and injected worker
    /// failures: every accepted request is answered exactly once, by a
    /// worker, a failure handler, or its own cancel.
    #[test]
    fn under_contention_no_request_is_lost_or_answered_twice() {
        const SUBMITTERS: u32 = 8;
        const PER_SUBMITTER: u32 = 2_000;
        let q = Arc::new(BatchQueue::<u8, (u32, u32)>::new(QueueConfig {
            batch_size: 16,
            batch_timeout: Duration::from_micros(100),
            max_queue: 4_096,
        }));
        let answers = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
        let done = Arc::new(AtomicBool::new(false));
        let answer = |answers: &Mutex<HashMap<u64, u32>>, id: u64| {
            *answers.lock().unwrap().entry(id).or_insert(0) += 1;
        };

        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (q, answers, done) = (q.clone(), answers.clone(), done.clone());
                thread::spawn(move || {
                    let mut n = 0u32;
                    loop {
                        match q.take_batch(Duration::from_millis(2), |_| true) {
                            Taken::Batch(mut b) => {
                                n += 1;
                                assert!(b.entries().iter().all(|e| e.payload.0 == *b.key() as u32));
                                assert!(b.rows() <= 16 || b.entries().len() == 1);
                                if (n + w).is_multiple_of(17) {
                                    // Injected failure: the batch is dropped
                                    // unclaimed, as if the worker panicked.
                                    drop(b);
                                    continue;
                                }
                                let wanted = b.claim();
                                for (e, ok) in b.entries().iter().zip(wanted) {
                                    if ok {
                                        answer(&answers, e.id);
                                    }
                                }
                            }
                            Taken::Orphans(orphans) => {
                                for e in orphans {
                                    answer(&answers, e.id);
                                }
                            }
                            Taken::Idle if done.load(Ordering::SeqCst) => {
                                if q.stats().pending == 0 && q.stats().running == 0 {
                                    return;
                                }
                            }
                            Taken::Idle => {}
                            Taken::Closed => return,
                        }
                    }
                })
            })
            .collect();

        let accepted: Vec<Vec<u64>> = thread::scope(|s| {
            let handles: Vec<_> = (0..SUBMITTERS)
                .map(|t| {
                    let (q, answers) = (q.clone(), answers.clone());
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..PER_SUBMITTER {
                            let key = ((t + i) % 3) as u8;
                            let rows = (i % 4 + 1) as usize;
                            if let Ok(id) = q.submit(key, rows, (key as u32, i)) {
                                mine.push(id);
                                if i % 50 == 0 && q.cancel(id) == Cancel::Withdrawn {
                                    answer(&answers, id);
                                }
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        done.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().unwrap();
        }

        let answers = answers.lock().unwrap();
        let accepted: Vec<u64> = accepted.into_iter().flatten().collect();
        assert!(!accepted.is_empty());
        for id in &accepted {
            assert_eq!(answers.get(id), Some(&1), "request {id}");
        }
        assert_eq!(answers.len(), accepted.len());
        let stats = q.stats();
        assert_eq!((stats.pending, stats.running), (0, 0));
        assert_eq!(stats.requests as usize, accepted.len());
    }
}
