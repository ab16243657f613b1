//! Shared read-index rounds. A linearizable read on the leader needs one round of heartbeats
//! proving it is still leader (`Raft::ensure_linearizable`). Reads arriving while a round is in
//! flight wait for the next round, which then serves all of them: N concurrent reads cost one
//! round, not N. (A read cannot join a round that began before it arrived: that round proves
//! leadership only up to its own start.)

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
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().expect("read index lock");
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(self.clone().run(raft.clone()));
        }
        rx.await.map_err(|_| Error::Retry("read index round abandoned".into()))?
    }

    /// Read-index rounds run so far.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn run(self, raft: openraft::Raft<TypeConfig>) {
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
            let result = raft.ensure_linearizable().await.map(|_| ()).map_err(crate::group::read_error);
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}
