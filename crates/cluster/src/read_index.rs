//! Shared read-index rounds. A linearizable read on the leader needs one round of heartbeats
//! proving it is still leader (`Raft::ensure_linearizable`). Reads arriving while a round is in
//! flight wait for the next round, which then serves all of them: N concurrent reads cost one
//! round, not N. (A read cannot join a round that began before it arrived: that round proves
//! leadership only up to its own start.)

use std::future::Future;
use std::sync::{Arc, Mutex};

use raftable_common::{Error, Result};
use raftable_storage::TypeConfig;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<()>>;

/// The read-index batcher of one group.
#[derive(Clone, Default)]
pub(crate) struct ReadIndex {
    state: Arc<Mutex<State>>,
    rounds: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiter>,
    running: bool,
}

impl ReadIndex {
    /// Returns once this replica is confirmed leader and has applied everything committed
    /// before the call.
    pub(crate) async fn wait(&self, raft: &openraft::Raft<TypeConfig>) -> Result<()> {
        let raft = raft.clone();
        self.wait_with(move || {
            let raft = raft.clone();
            async move { raft.ensure_linearizable().await.map(|_| ()).map_err(crate::error::read_error) }
        })
        .await
    }

    /// [`ReadIndex::wait`] with the round itself given as `round` (a test can hold it open).
    async fn wait_with<F, Fut>(&self, round: F) -> Result<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().expect("read index lock");
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(self.clone().run(round));
        }
        rx.await.map_err(|_| Error::Retry("read index round abandoned".into()))?
    }

    /// Read-index rounds run so far.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn run<F, Fut>(self, round: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        loop {
            let batch = {
                let mut state = self.state.lock().expect("read index lock");
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            self.rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let result = round().await;
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// While one round is in flight, every read that arrives waits, and the next single round
    /// serves all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_arriving_during_a_round_share_the_next() {
        let reads = ReadIndex::default();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(AtomicU64::new(0));
        let round = {
            let (release, started) = (release.clone(), started.clone());
            move || {
                let (release, started) = (release.clone(), started.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    release.acquire().await.expect("semaphore open").forget();
                    Ok(())
                }
            }
        };
        // The first read starts round 1, which stays open until released.
        let first = tokio::spawn({
            let (reads, round) = (reads.clone(), round.clone());
            async move { reads.wait_with(round).await }
        });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // 63 reads arrive while round 1 is in flight.
        let mut later = Vec::new();
        for _ in 0..63 {
            let (reads, round) = (reads.clone(), round.clone());
            later.push(tokio::spawn(async move { reads.wait_with(round).await }));
        }
        while reads.state.lock().unwrap().waiting.len() < 63 {
            tokio::task::yield_now().await;
        }
        release.add_permits(2);
        first.await.unwrap().unwrap();
        for r in later {
            r.await.unwrap().unwrap();
        }
        assert_eq!(reads.rounds(), 2, "one round for the first read, one for the 63 that waited");
    }
}
