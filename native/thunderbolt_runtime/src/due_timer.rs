//! A one-shot timer with sub-millisecond precision, on a thread of its own.
//!
//! A serving's runner that parks while a partial batch waits for its
//! timeout needs waking when that timeout falls due. BEAM timers count
//! whole milliseconds, and a 200 µs batch timeout came out at 2.1 ms; this
//! thread sleeps on a condition variable until the deadline instead, which
//! Linux honours to within tens of microseconds.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// Calls `on_due` once each armed deadline passes. Arming while a deadline
/// is pending keeps the earlier of the two. Dropping the timer stops its
/// thread.
pub struct DueTimer {
    shared: Arc<Shared>,
    // In a mutex only so that the timer is `RefUnwindSafe`, as NIF
    // resources must be; nothing else locks it.
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    deadline: Option<Instant>,
    stopped: bool,
}

impl Shared {
    // Nothing panics while holding the lock, but `on_due` runs outside it
    // and may; a poisoned lock still holds consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DueTimer {
    /// Starts the timer's thread, named `name`.
    pub fn start(name: &str, mut on_due: impl FnMut() + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let shared = thread_shared;
                tighten_timer_slack();
                let mut state = shared.lock();
                loop {
                    if state.stopped {
                        return;
                    }
                    match state.deadline {
                        None => {
                            state = shared
                                .changed
                                .wait(state)
                                .unwrap_or_else(|p| p.into_inner());
                        }
                        Some(deadline) => {
                            let now = Instant::now();
                            if now >= deadline {
                                state.deadline = None;
                                drop(state);
                                on_due();
                                state = shared.lock();
                            } else {
                                state = shared
                                    .changed
                                    .wait_timeout(state, deadline - now)
                                    .unwrap_or_else(|p| p.into_inner())
                                    .0;
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Calls `on_due` at `at` (at once if it has passed), or earlier if an
    /// earlier deadline is already armed.
    pub fn arm(&self, at: Instant) {
        let mut state = self.shared.lock();
        if state.deadline.is_none_or(|pending| at < pending) {
            state.deadline = Some(at);
            self.shared.changed.notify_one();
        }
    }
}

// Linux lets a sleeping thread wake up to 50 µs late by default, to batch
// wake-ups: a quarter of a 200 µs batch timeout. With a slack of 1 ns the
// partial-batch wait of bench/partial_batch_bench.exs was p50 351-418 µs,
// against 418-515 µs with the default (three runs each).
#[cfg(target_os = "linux")]
fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the
    // calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

#[cfg(not(target_os = "linux"))]
fn tighten_timer_slack() {}

impl Drop for DueTimer {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_one();
        let thread = self.thread.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    // Generous bounds: these check that the timer fires, and never early,
    // not how precisely it fires on a loaded machine.
    const PATIENCE: Duration = Duration::from_secs(5);

    fn timer() -> (DueTimer, mpsc::Receiver<Instant>) {
        let (tx, rx) = mpsc::channel();
        let timer = DueTimer::start("test-timer", move || {
            let _ = tx.send(Instant::now());
        })
        .expect("thread");
        (timer, rx)
    }

    #[test]
    fn fires_once_after_the_deadline_and_never_before() {
        let (timer, fired) = timer();
        let deadline = Instant::now() + Duration::from_micros(300);
        timer.arm(deadline);
        let at = fired.recv_timeout(PATIENCE).expect("the timer fired");
        assert!(at >= deadline, "fired {:?} early", deadline - at);
        assert!(fired.recv_timeout(Duration::from_millis(20)).is_err());
    }

    #[test]
    fn an_earlier_deadline_replaces_a_later_one_and_not_the_reverse() {
        let (timer, fired) = timer();
        let now = Instant::now();
        timer.arm(now + Duration::from_secs(3600));
        timer.arm(now + Duration::from_millis(1));
        timer.arm(now + Duration::from_secs(7200));
        fired
            .recv_timeout(PATIENCE)
            .expect("the earlier deadline fired");
    }

    #[test]
    fn a_passed_deadline_fires_at_once_and_the_timer_can_be_armed_again() {
        let (timer, fired) = timer();
        timer.arm(Instant::now() - Duration::from_millis(1));
        fired.recv_timeout(PATIENCE).expect("fired");
        timer.arm(Instant::now());
        fired.recv_timeout(PATIENCE).expect("fired again");
    }

    #[test]
    fn dropping_the_timer_stops_its_thread_without_firing() {
        let (timer, fired) = timer();
        timer.arm(Instant::now() + Duration::from_secs(3600));
        drop(timer);
        // The thread has ended, so the callback and its sender are gone.
        assert_eq!(
            fired.recv_timeout(PATIENCE),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
