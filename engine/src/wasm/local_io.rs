//! The synchronous call's own I/O: a current-thread tokio runtime per calling thread.
//!
//! A synchronous call ([`Actuator`](crate::Actuator)) of a plugin granted outbound HTTP runs
//! the plugin's asynchronous side on the calling thread: [`block_on`] of that thread's
//! runtime drives the guest's fiber, the request tasks, the connections' drivers and the
//! sockets, all on the one thread. Through wasmtime-wasi's shared runtime each blocking
//! `wasi:io` call of the guest (write the body, wait for the answer, read it) was a hand-off
//! to a worker thread and a wake-up back. The thread keeps its connections in its own share
//! of the plugin's pool (`conn.rs`), since only its runtime drives them. The runtime lives as
//! long as the thread.
//!
//! A thread already inside a tokio runtime (a task of the embedder's) must not block on
//! another, and a thread an executor run spawned for itself ends with the run, taking its
//! connections along: there the call takes the synchronous bindings on wasmtime-wasi's
//! shared runtime and the plugin's shared connections ([`available`]).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

thread_local! {
    /// This thread's runtime, built on first use.
    static RUNTIME: RefCell<Option<Rc<tokio::runtime::Runtime>>> = const { RefCell::new(None) };
    /// Whether this thread is inside [`block_on`] now.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread may block on its own runtime and should: it is in no tokio
/// runtime, and it outlives the call (not a thread an executor run spawned for itself,
/// whose connections would die with it after one run; those calls keep the shared ones).
pub(crate) fn available() -> bool {
    !ACTIVE.get() && !crate::exec::on_run_thread() && tokio::runtime::Handle::try_current().is_err()
}

/// Whether the calling thread is inside [`block_on`] (its runtime drives what it spawns).
pub(crate) fn active() -> bool {
    ACTIVE.get()
}

/// Clears [`ACTIVE`] however `block_on` ends.
struct Active;

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.set(false);
    }
}

/// Runs `future` to completion on the calling thread's runtime (see [`available`]).
///
/// # Errors
/// The runtime could not be built (the operating system refused its I/O driver).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    let runtime = RUNTIME.with_borrow_mut(|slot| match slot {
        Some(runtime) => Ok::<_, String>(runtime.clone()),
        None => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the call's I/O runtime: {e}"))?;
            Ok(slot.insert(Rc::new(runtime)).clone())
        }
    })?;
    ACTIVE.set(true);
    let _active = Active;
    Ok(runtime.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_runs_spawned_tasks_on_the_calling_thread() {
        assert!(available());
        let caller = std::thread::current().id();
        let ran_on = block_on(async {
            assert!(active() && !available());
            tokio::spawn(async { std::thread::current().id() })
                .await
                .unwrap()
        })
        .unwrap();
        assert_eq!(ran_on, caller);
        assert!(!active() && available());
    }
}
