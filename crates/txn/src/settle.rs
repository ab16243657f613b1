//! Settling a lock that a read or write met (`Error::Locked`): the lock's transaction is
//! committing through another gateway, or its gateway died between prepare and resolution.
//! The one who met the lock waits a little and tries again; once the lock is older than
//! [`EXPIRY`] it pushes: it asks the transaction's record (on the anchor shard) to abort, which
//! succeeds unless the transaction committed, and resolves the lock by what the record says.
//! So a dead coordinator's locks block others for about [`EXPIRY`], and its outcome is decided
//! once, by the record.

use std::future::Future;
use std::time::{Duration, Instant};

use raftable_common::{Decision, Error, Result, ShardClient, ShardId, Ts, TxnMeta, TxnOp};

/// How long a prepared transaction may hold its locks before others abort it. Writes are
/// buffered until COMMIT, so locks live for one commit (a few Raft rounds); only a stalled or
/// dead coordinator holds them longer. Ages are measured in oracle time (physical ms).
pub const EXPIRY: Duration = Duration::from_secs(5);

/// A lock met on `shard`, as `Error::Locked` describes it.
#[derive(Debug, Clone)]
pub struct LockInfo {
    pub shard: ShardId,
    pub key: Vec<u8>,
    pub txn: TxnMeta,
    pub ts: Ts,
}

impl LockInfo {
    /// The lock `e` reports, if it is an `Error::Locked` met on `shard`.
    pub fn from_error(shard: ShardId, e: &Error) -> Option<Self> {
        match e {
            Error::Locked { key, txn, ts } => Some(Self { shard, key: key.clone(), txn: txn.clone(), ts: *ts }),
            _ => None,
        }
    }
}

/// Makes progress on `lock`: waits `pause` if its transaction may still be committing, else
/// aborts the transaction unless it committed and resolves the lock by its outcome. The caller
/// then sends its request again.
pub async fn settle(client: &dyn ShardClient, lock: &LockInfo, pause: Duration) -> Result<()> {
    let now = client.snapshot().await?;
    let age_ms = now.physical_ms().saturating_sub(lock.ts.physical_ms());
    if u128::from(age_ms) < EXPIRY.as_millis() {
        tokio::time::sleep(pause).await;
        return Ok(());
    }
    tracing::debug!(txn = %lock.txn.id, age_ms, "pushing an expired transaction");
    push(client, lock).await
}

/// Aborts `lock`'s transaction unless it committed (the record decides), and resolves by the
/// outcome every lock it holds on the lock's shard (`TxnOp::ResolveAll`: a dead coordinator of
/// a large transaction leaves many, and the one who met the first one, a scan perhaps, would
/// meet the next).
async fn push(client: &dyn ShardClient, lock: &LockInfo) -> Result<()> {
    let end = TxnOp::End { txn: lock.txn.clone(), decision: Decision::Abort, keys: Vec::new() };
    let outcome = client.txn(lock.txn.anchor, end).await?;
    let commit = (outcome.version > 0).then_some(Ts(outcome.version));
    let resolve = TxnOp::ResolveAll { txn: lock.txn.id, commit };
    client.txn(lock.shard, resolve).await?;
    Ok(())
}

/// The pause before the `attempt`-th retry of a request that met a lock: 1 ms doubling to 64.
pub fn pause(attempt: u32) -> Duration {
    Duration::from_millis(1 << attempt.min(6))
}

/// Runs `request` (to `shard`) until it meets no lock, settling each lock it meets; gives up
/// with `Error::TxnConflict` after twice [`EXPIRY`] (by then every lock it met has expired and
/// been pushed, so only a stream of new transactions on the same keys keeps it waiting).
pub async fn until_unlocked<T, F, Fut>(client: &dyn ShardClient, shard: ShardId, request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + EXPIRY * 2;
    let waited = format!("for longer than {:?}", EXPIRY * 2);
    retry_locked(client, shard, |_| Instant::now() >= deadline, &waited, request).await
}

/// Like [`until_unlocked`], for a request of a transaction that holds locks itself: it waits
/// only briefly (five settles, about 30 ms, pushing expired locks), since two such could wait
/// for each other; then it fails with `Error::TxnConflict`.
pub async fn briefly_unlocked<T, F, Fut>(client: &dyn ShardClient, shard: ShardId, request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_locked(client, shard, |attempt| attempt >= 5, "while committing", request).await
}

/// Runs `request` until it meets no lock, settling each lock it meets, until `give_up(attempt)`
/// says to stop: then the lock is reported as a conflict (`waited` says how long it was met).
async fn retry_locked<T, F, Fut>(
    client: &dyn ShardClient,
    shard: ShardId,
    give_up: impl Fn(u32) -> bool,
    waited: &str,
    mut request: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        let e = match request().await {
            Err(e @ Error::Locked { .. }) => e,
            other => return other,
        };
        if give_up(attempt) {
            return Err(Error::TxnConflict(format!("{e}, {waited}")));
        }
        let lock = LockInfo::from_error(shard, &e).expect("a lock error");
        settle(client, &lock, pause(attempt)).await?;
        attempt += 1;
    }
}
