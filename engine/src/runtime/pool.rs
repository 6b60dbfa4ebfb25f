//! The bounded pool of threads that runs blocking actuators.
//!
//! `threads` workers take jobs from one channel. A job whose lease ended before it
//! returned (its deadline passed, or shutdown) is *abandoned*: the runtime starts a
//! replacement worker at once, so the pool keeps its capacity, and the abandoned thread
//! exits when (if ever) its actuator returns; nobody joins it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::{unbounded, Receiver, Sender};
use tokio::sync::mpsc::UnboundedSender;

use super::{record_outcome, Done, Stats};
use crate::actuation::{ActuationContext, OwnedView};
use crate::actuator::{Outcome, TaskKind};
use crate::sched::LeaseId;

/// A blocking actuator for the runtime's thread pool: the [`crate::Actuator`] contract
/// with an owned view and a context (attempt, deadline, cancellation).
pub trait BlockingActuator: Send + Sync + 'static {
    /// Brings the backend to `object`'s declarative state.
    fn sync(&self, cx: ActuationContext, object: OwnedView) -> Outcome;

    /// Removes `object` from the backend. Default: nothing to remove, `Ok`.
    fn delete(&self, cx: ActuationContext, object: OwnedView) -> Outcome {
        let _ = (cx, object);
        Outcome::ok()
    }
}

struct Job {
    actuator: Arc<dyn BlockingActuator>,
    cx: ActuationContext,
    view: OwnedView,
    lease: LeaseId,
    span: tracing::Span,
    tx: UnboundedSender<Done>,
    /// Set by whoever comes first: the worker when it finishes, the runtime when it
    /// abandons the job.
    ended: Arc<AtomicBool>,
}

pub(super) struct Pool {
    jobs: Option<Sender<Job>>,
    rx: Receiver<Job>,
    stats: Arc<Stats>,
}

impl Pool {
    pub(super) fn new(threads: usize, stats: Arc<Stats>) -> Pool {
        let (jobs, rx) = unbounded();
        let pool = Pool {
            jobs: Some(jobs),
            rx,
            stats,
        };
        for _ in 0..threads {
            pool.replace();
        }
        pool
    }

    /// Starts one more worker (at start, and to replace an abandoned one).
    pub(super) fn replace(&self) {
        let rx = self.rx.clone();
        let stats = self.stats.clone();
        std::thread::Builder::new()
            .name("syncore-blocking".into())
            .spawn(move || worker(rx, stats))
            .expect("spawn a pool thread");
    }

    /// Queues a job; returns its `ended` flag.
    pub(super) fn run(
        &self,
        actuator: Arc<dyn BlockingActuator>,
        cx: ActuationContext,
        view: OwnedView,
        lease: LeaseId,
        span: tracing::Span,
        tx: UnboundedSender<Done>,
    ) -> Arc<AtomicBool> {
        let ended = Arc::new(AtomicBool::new(false));
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job {
                actuator,
                cx,
                view,
                lease,
                span,
                tx,
                ended: ended.clone(),
            });
        }
        ended
    }

    /// No more jobs: idle workers exit; busy ones exit after their job.
    pub(super) fn close(&mut self) {
        self.jobs = None;
    }
}

fn worker(rx: Receiver<Job>, stats: Arc<Stats>) {
    while let Ok(job) = rx.recv() {
        if job.ended.load(Ordering::SeqCst) {
            continue; // abandoned before it started (shutdown)
        }
        let _enter = job.span.enter();
        let model = job.view.model().to_string();
        let kind = job.view.kind();
        let (a, cx, view) = (job.actuator, job.cx, job.view);
        let result = catch_unwind(AssertUnwindSafe(move || match kind {
            TaskKind::Sync => a.sync(cx, view),
            TaskKind::Delete => a.delete(cx, view),
        }));
        let (outcome, panicked) = match result {
            Ok(o) => (o, false),
            Err(p) => (
                Outcome::failed(format!(
                    "actuator for {model} panicked: {}",
                    super::panic_text(p.as_ref())
                )),
                true,
            ),
        };
        record_outcome(&job.span, &outcome);
        let abandoned = job.ended.swap(true, Ordering::SeqCst);
        let _ = job.tx.send(Done {
            lease: job.lease,
            outcome,
            panicked,
        });
        if abandoned {
            // A replacement took this thread's place.
            let _ = &stats;
            return;
        }
    }
}
