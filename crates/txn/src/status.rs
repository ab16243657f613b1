//! A transaction's status by id: what PostgreSQL's `txid_current()` and `txid_status()` (and
//! `pg_current_xact_id()` / `pg_xact_status()`) give a client, so that a COMMIT whose answer
//! was lost (the connection broke, the gateway died) is settled, not guessed.
//!
//! A transaction that asked for its id ([`xid_of`]) commits one more write with its others,
//! atomically: an unread insert of its status row ([`crate::Txn::insert_at_commit`]; where
//! the row lives is the caller's choice, `sql::xact`), holding [`COMMITTED`]. [`status`]
//! answers from that row:
//! - the row is there: the transaction committed (or was fenced, below);
//! - the row is locked: the transaction is committing; the lock is settled as any other
//!   (`settle`: waited for, pushed once expired), and the row read again;
//! - the row is not there: the transaction has not committed, but its coordinator may still
//!   hold its writes and commit later. So [`status`] fences it: it writes the row itself,
//!   holding [`ABORTED`], in a transaction of its own. The transaction's own insert of the row
//!   then fails as a duplicate, so it can never commit, and the answer "aborted" stays true.
//!
//! Consequence, unlike PostgreSQL: asking for the status of a transaction still running
//! (in another session) aborts it; there is no "in progress" answer but for the asking
//! session's own transaction (`sql::session`). Clients ask after they lost the connection.
//!
//! An id tells when its transaction began (its low bits are the coordinator's clock in
//! microseconds), so status rows are kept for [`RETENTION`] and then deleted by their own
//! node ([`collect`]); the status of an older id is not known (NULL, as PostgreSQL answers
//! once it no longer keeps an id's status), never fenced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftable_common::{Error, Result, ShardId, ShardRead, TxnId};

use crate::coordinator::micros;
use crate::settle::pause;
use crate::Coordinator;

/// What a status row holds.
pub const COMMITTED: &[u8] = b"c";
pub const ABORTED: &[u8] = b"a";

/// How long a transaction's status is kept.
pub const RETENTION: Duration = Duration::from_secs(3600);

/// Status rows are deleted this long after [`RETENTION`] has passed, so that a node whose
/// clock runs behind the deleting node's by less than this still finds the row rather than
/// fencing. Also how far ahead an id may be before it is "in the future".
const CLOCK_MARGIN: Duration = Duration::from_secs(600);

/// How long [`status`] keeps trying: a settle may wait out a lock's [`crate::settle::EXPIRY`] (several times
/// over), a fence can lose races.
const STATUS_DEADLINE: Duration = Duration::from_secs(30);

/// A transaction's outcome, as `txid_status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XactStatus {
    Committed,
    Aborted,
}

impl XactStatus {
    pub fn name(self) -> &'static str {
        match self {
            XactStatus::Committed => "committed",
            XactStatus::Aborted => "aborted",
        }
    }
}

/// The key of transaction `xid`'s status row, under the status rows' `prefix`: ordered by
/// node, then by when the transaction began.
pub fn status_key(prefix: &[u8], xid: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&xid.to_be_bytes());
    key
}

const SEQ_BITS: u32 = 56;

/// Node ids that fit an id's top byte (the sign bit stays clear).
const NODES: u64 = 1 << (63 - SEQ_BITS);

/// When transaction `xid` began, about: microseconds since the Unix epoch.
fn began_micros(xid: i64) -> u64 {
    xid as u64 & ((1 << SEQ_BITS) - 1)
}

/// The 64-bit id of transaction `id` (a positive bigint, as `txid_current()` returns): the
/// gateway node's id in the top byte, the low 56 bits of the node's sequence below it. Node
/// sequences follow the clock in microseconds, so 56 bits last millennia.
pub fn xid_of(id: TxnId) -> Result<i64> {
    let node = (id.0 >> 64) as u64;
    let seq = id.0 as u64 & ((1 << SEQ_BITS) - 1);
    if node >= NODES {
        return Err(Error::Unsupported(format!("transaction ids need node ids below {NODES}, not {node}")));
    }
    Ok(((node << SEQ_BITS) | seq) as i64)
}

/// Refuses what cannot be a transaction id (zero or negative), before anything is looked up.
pub fn check(xid: i64) -> Result<()> {
    if xid <= 0 {
        return Err(Error::InvalidInput(format!("transaction ID {xid} is invalid")));
    }
    Ok(())
}

/// The outcome of transaction `xid`, whose status rows live under `prefix` on `shard`:
/// committed, or aborted (fencing it if it had not ended; see the module docs), or None if it
/// began longer than [`RETENTION`] ago. Errors if the shard cannot be reached for
/// [`STATUS_DEADLINE`].
pub async fn status(
    coordinator: &Arc<Coordinator>,
    xid: i64,
    shard: ShardId,
    prefix: &[u8],
) -> Result<Option<XactStatus>> {
    check(xid)?;
    let (began, now) = (began_micros(xid), micros());
    if began > now + CLOCK_MARGIN.as_micros() as u64 {
        return Err(Error::InvalidInput(format!("transaction ID {xid} is in the future")));
    }
    if now.saturating_sub(began) > RETENTION.as_micros() as u64 {
        return Ok(None);
    }
    let key = status_key(prefix, xid);
    let deadline = Instant::now() + STATUS_DEADLINE;
    let mut attempt = 0;
    loop {
        match settle_once(coordinator, xid, shard, &key).await {
            Ok(status) => return Ok(Some(status)),
            // Lost a race with the transaction's commit (or an answer), or the status shard
            // is electing a leader: read again.
            Err(e) if Instant::now() < deadline && again(&e) => {
                tracing::debug!(xid, error = %e, "transaction status: trying again");
                tokio::time::sleep(pause(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn again(e: &Error) -> bool {
    e.is_retryable() || matches!(e, Error::TxnConflict(_) | Error::TxnAborted(_) | Error::Unknown(_))
}

/// One try: reads the status row, and fences the transaction if there is none.
async fn settle_once(coordinator: &Arc<Coordinator>, xid: i64, shard: ShardId, key: &[u8]) -> Result<XactStatus> {
    let fence = coordinator.begin();
    let rows = fence.read(shard, ShardRead::Get { key: key.to_vec() }).await?;
    if let Some(row) = rows.first() {
        return match row.value.as_slice() {
            COMMITTED => Ok(XactStatus::Committed),
            ABORTED => Ok(XactStatus::Aborted),
            other => Err(Error::InvalidData(format!("status row of transaction {xid}: {other:?}"))),
        };
    }
    fence.write(shard, key.to_vec(), Some(ABORTED.to_vec()));
    fence.commit().await?;
    Ok(XactStatus::Aborted)
}

/// Deletes this node's status rows (those of the transactions it coordinated, and fences of
/// them) older than [`RETENTION`] and the clock margin, a page at a time. Returns how many.
pub async fn collect(coordinator: &Arc<Coordinator>, shard: ShardId, prefix: &[u8]) -> Result<usize> {
    let node = coordinator.node();
    if node >= NODES {
        return Ok(0);
    }
    let horizon = micros().saturating_sub((RETENTION + CLOCK_MARGIN).as_micros() as u64);
    let start = status_key(prefix, (node << SEQ_BITS) as i64);
    let end = status_key(prefix, ((node << SEQ_BITS) | horizon) as i64);
    let mut deleted = 0;
    loop {
        let txn = coordinator.begin();
        let page = ShardRead::Scan { start: start.clone(), end: end.clone(), limit: Some(1024), reverse: false };
        let rows = txn.read(shard, page).await?;
        if rows.is_empty() {
            return Ok(deleted);
        }
        deleted += rows.len();
        for row in rows {
            txn.write(shard, row.key, None);
        }
        txn.commit().await?;
    }
}
