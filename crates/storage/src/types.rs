//! The openraft type configuration shared by the storage and cluster layers. It lives here
//! because the storage traits are implemented for it; `cluster` only uses it.

use raftable_common::{Error, ShardCommand, WriteOutcome};
use serde::{Deserialize, Serialize};

/// What a replica knows about a node: where to reach it. Stored in Raft memberships, so a group
/// can reach its peers even before the node registry is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// host:port of the node's gRPC server.
    pub rpc_addr: String,
    /// host:port of the node's Postgres wire-protocol listener.
    pub pg_addr: String,
}

/// The result of applying one [`ShardCommand`]: deterministic errors (duplicate key, failed
/// condition) are results, identical on every replica.
pub type WriteResult = Result<WriteOutcome, Error>;

openraft::declare_raft_types!(
    /// Raft types of every raftable group: the meta group and all shards.
    pub TypeConfig:
        D = ShardCommand,
        R = WriteResult,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = Runtime,
);

/// The shortest time openraft may give any call before it times it out.
///
/// openraft 0.9 gives every AppendEntries one heartbeat interval (100 ms), follower fsync
/// included, then sends the same entries again: on a loaded machine a batch of a big
/// statement's commands then times out, is sent again on top of the first copy still being
/// written, and the group can stall for seconds (a 1,000,000-row DELETE failed that way after
/// 10 s without an answer). With this floor a slow follower answers the first copy. Nothing
/// waits on it for liveness: a follower's own election timer, not this, detects a dead leader,
/// and a leader needs only a quorum of answers.
pub const RPC_TIMEOUT_FLOOR: std::time::Duration = std::time::Duration::from_secs(1);

/// openraft's Tokio runtime, with every timeout it sets raised to at least
/// [`RPC_TIMEOUT_FLOOR`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Runtime;

type Tokio = openraft::TokioRuntime;

impl openraft::AsyncRuntime for Runtime {
    type JoinError = <Tokio as openraft::AsyncRuntime>::JoinError;
    type JoinHandle<T: openraft::OptionalSend + 'static> = <Tokio as openraft::AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as openraft::AsyncRuntime>::Sleep;
    type Instant = <Tokio as openraft::AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as openraft::AsyncRuntime>::TimeoutError;
    type Timeout<R, T: std::future::Future<Output = R> + openraft::OptionalSend> =
        <Tokio as openraft::AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Tokio as openraft::AsyncRuntime>::ThreadLocalRng;
    type OneshotSender<T: openraft::OptionalSend> = <Tokio as openraft::AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as openraft::AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: openraft::OptionalSend> = <Tokio as openraft::AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: std::future::Future + openraft::OptionalSend + 'static,
        T::Output: openraft::OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: std::time::Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: std::future::Future<Output = R> + openraft::OptionalSend>(
        duration: std::time::Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration.max(RPC_TIMEOUT_FLOOR), future)
    }

    fn timeout_at<R, F: std::future::Future<Output = R> + openraft::OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        let floor = <Self::Instant as openraft::Instant>::now() + RPC_TIMEOUT_FLOOR;
        Tokio::timeout_at(deadline.max(floor), future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Tokio::thread_rng()
    }

    fn oneshot<T: openraft::OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        Tokio::oneshot()
    }
}

/// A Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
