//! Long synchronous steps of a statement (DataFusion's planning and optimization) run off the
//! runtime's worker rotation, so that one slow statement cannot stall the node.
//!
//! Why: a tokio worker running a step that never yields holds its thread; when the worker that
//! last polled the I/O and timer driver is the one stuck, no other worker takes the driver over
//! until the step ends. Planning some long expression chains takes DataFusion minutes (see
//! docs/sql.md, "Limits"): meanwhile the node read no socket and fired no timer (Raft
//! heartbeats, other sessions, even SIGTERM went unanswered). [`blocking`] runs such a step
//! with `tokio::task::block_in_place`, which hands the worker's queue and the driver to another
//! thread first.

use std::future::Future;

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `step` (synchronous, possibly long) without holding a runtime worker: on a
/// multi-threaded runtime through `block_in_place`, elsewhere (a current-thread runtime in
/// tests, no runtime) as is.
pub(crate) fn blocking<T>(step: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(step),
        _ => step(),
    }
}

/// Runs `future` (a planning step that awaits little and computes much) to completion the same
/// way: on a multi-threaded runtime without holding a worker; elsewhere awaited as is.
pub(crate) async fn planning<T>(future: impl Future<Output = T>) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => future.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_step_without_a_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }

    #[tokio::test]
    async fn runs_the_step_on_a_current_thread_runtime() {
        assert_eq!(blocking(|| 7), 7);
        assert_eq!(planning(async { 8 }).await, 8);
    }

    /// While one worker is inside a step that does not yield, timers still fire and other
    /// tasks still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_tasks_run_while_a_step_blocks() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let step = tokio::spawn(async move {
            planning(async move {
                // Blocks until the timer task below has run.
                rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the timer task ran");
            })
            .await
        });
        let timer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.send(()).unwrap();
        });
        timer.await.unwrap();
        step.await.unwrap();
    }
}
