//! Precise delays for the latency fault.
//!
//! tokio's timer counts in whole milliseconds and fires on the event loop's millisecond
//! timeout, so `tokio::time::sleep(20 ms)` answered after 21.2-21.5 ms: a backend asked to
//! answer in 20 ms answered about 7% late. One thread here sleeps until the earliest
//! requested instant (the kernel's high-resolution timers: tens of microseconds late) and
//! wakes the tasks whose instant has come.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The alarm thread and the instants it waits for; the thread ends when this is dropped.
pub(crate) struct Alarms {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    due: BinaryHeap<Reverse<Due>>,
    /// Breaks ties between equal instants (first set, first woken).
    next: u64,
    stopped: bool,
}

struct Due {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Due) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Alarms {
    /// Starts the alarm thread (named after `port`).
    pub(crate) fn start(port: u16) -> std::io::Result<Alarms> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let ringing = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("syncore-inventory-{port}-alarms"))
            .spawn(move || ringing.run())?;
        Ok(Alarms {
            inner,
            thread: Some(thread),
        })
    }

    /// Waits `delay` (at least; a few tens of microseconds more, not a millisecond).
    pub(crate) async fn sleep(&self, delay: Duration) {
        let (wake, woken) = oneshot::channel();
        {
            let mut state = self.inner.lock();
            let seq = state.next;
            state.next += 1;
            state.due.push(Reverse(Due {
                at: Instant::now() + delay,
                seq,
                wake,
            }));
        }
        self.inner.changed.notify_one();
        // A stopped thread drops the sender: the delay ends with the service.
        let _ = woken.await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut state = self.lock();
        while !state.stopped {
            let now = Instant::now();
            match state.due.peek() {
                Some(Reverse(due)) if due.at <= now => {
                    let Some(Reverse(due)) = state.due.pop() else {
                        continue;
                    };
                    let _ = due.wake.send(());
                }
                Some(Reverse(due)) => {
                    let wait = due.at - now;
                    state = self
                        .changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        state.due.clear();
    }
}

impl Drop for Alarms {
    fn drop(&mut self) {
        self.inner.lock().stopped = true;
        self.inner.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    #[test]
    fn delays_end_in_order_and_within_a_few_milliseconds_of_their_instant() {
        let alarms = Alarms::start(0).expect("alarms");
        let order = Mutex::new(Vec::new());
        let start = Instant::now();
        let delay = |ms: u64| {
            let (alarms, order) = (&alarms, &order);
            async move {
                alarms.sleep(Duration::from_millis(ms)).await;
                order.lock().unwrap().push(ms);
                (ms, start.elapsed())
            }
        };
        let took = runtime().block_on(async { tokio::join!(delay(30), delay(10), delay(20)) });
        for (ms, took) in [took.0, took.1, took.2] {
            assert!(
                took >= Duration::from_millis(ms),
                "{ms} ms ended early: {took:?}"
            );
            // Generous for a loaded machine (idle, it is tens of microseconds).
            assert!(
                took < Duration::from_millis(ms + 15),
                "{ms} ms took {took:?}"
            );
        }
        assert_eq!(*order.lock().unwrap(), [10, 20, 30]);
    }

    #[test]
    fn a_stopped_thread_ends_pending_delays() {
        let alarms = Alarms::start(0).expect("alarms");
        let rt = runtime();
        let pending = {
            let inner = alarms.inner.clone();
            let (wake, woken) = oneshot::channel();
            inner.lock().due.push(Reverse(Due {
                at: Instant::now() + Duration::from_secs(3600),
                seq: 0,
                wake,
            }));
            inner.changed.notify_one();
            woken
        };
        drop(alarms);
        assert!(
            rt.block_on(pending).is_err(),
            "the sender went with the thread"
        );
    }
}
