//! The timestamp oracle (TSO): the meta group's leader hands out [`Ts`] values that increase in
//! real-time order across the whole cluster, leader changes included. Transactions and
//! multi-shard reads take their timestamps from it (docs/transactions.md).
//!
//! Why it is safe without trusting clocks: every value is handed out by a replica that has
//! just confirmed it leads the meta group (a linearizable read: the leader lease, else a
//! read-index round), and only below a limit persisted through the meta group's Raft log (key
//! `0x00 'c' "tso"`). A new leader reads that limit before serving and starts above it, so it
//! starts above every value any earlier leader handed out; within one Raft term (one leader)
//! values continue from the last one, below the limit. A node that led before and leads again
//! in a later term starts above the limit too: its own last value says nothing of the terms
//! between. The wall clock only feeds the physical part of new values (a clock that jumps back
//! does not make values go back: the last value or the persisted limit bound them from below);
//! the limit runs [`WINDOW_MS`] ahead of it, so persisting costs one Raft write every few
//! seconds, not one per call.
//!
//! Values have their low 8 bits zero ([`STEP`]): a shard leader may add up to 255 to one to
//! order its own writes, and any value handed out later is still larger.

use raftable_common::{Error, Expect, Result, ShardRead, ShardWrite, Ts, WriteOp};

use crate::group::Group;
use crate::meta;
use crate::placement::now_ms;

/// The distance between consecutive TSO values.
pub const STEP: u64 = 256;

/// The most timestamps one call hands out.
pub const MAX_BATCH: u32 = 1024;

/// How far ahead of the wall clock a persisted limit runs.
const WINDOW_MS: u64 = 3_000;

/// The oracle's state on one node; it serves only while the node leads the meta group.
#[derive(Default)]
pub(crate) struct Oracle {
    /// Calls are served one at a time.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The meta group's Raft term in which this node last handed out values. In another term
    /// another node may have led since, and only the persisted limit bounds what it handed out.
    term: u64,
    /// The next value this node would hand out in `term`.
    next: Ts,
}

impl Oracle {
    /// Hands out `count` timestamps if this node leads the meta group `meta`: the first is
    /// returned, the others follow it at steps of [`STEP`]. Every one is larger than any value
    /// handed out (by any node) before this call began.
    pub(crate) async fn allocate(&self, meta: &Group, count: u32) -> Result<Ts> {
        if count == 0 || count > MAX_BATCH {
            return Err(Error::InvalidInput(format!("between 1 and {MAX_BATCH} timestamps per call, not {count}")));
        }
        let mut state = self.state.lock().await;
        let term = || meta.raft.metrics().borrow().current_term;
        let before = term();
        // Confirms leadership, and sees every limit an earlier leader persisted.
        let rows = meta.read(ShardRead::Get { key: meta::tso_key() }).await?;
        if term() != before {
            return Err(Error::Retry("the meta group changed terms".into()));
        }
        let (limit, expect) = match rows.first() {
            Some(row) => (Ts(meta::decode_u64(&row.value)?), Expect::Version(row.version)),
            None => (Ts::MIN, Expect::Absent),
        };
        // Leading since the last call: continue below the limit; newly leading: start above it
        // (it is above everything this node handed out before, too).
        let floor = if state.term == before { state.next } else { limit };
        let first = align(floor.max(Ts::new(now_ms(), 0)));
        let end = Ts(first.0 + u64::from(count) * STEP);
        if end > limit {
            let new_limit = Ts::new(end.physical_ms() + WINDOW_MS, 0);
            let op = WriteOp::CompareAndPut { key: meta::tso_key(), value: new_limit.0.to_be_bytes().to_vec(), expect };
            // Either way nothing was handed out: a retry reads the limit again.
            meta.write(ShardWrite::new(vec![op]), Ts::MIN).await.map_err(|e| match e {
                Error::ConditionFailed { .. } | Error::Unknown(_) => {
                    Error::Retry(format!("the timestamp limit moved while it was extended: {e}"))
                }
                e => e,
            })?;
        }
        *state = State { term: before, next: end };
        Ok(first)
    }
}

/// The smallest multiple of [`STEP`] at or above `ts`.
fn align(ts: Ts) -> Ts {
    Ts(ts.0.div_ceil(STEP) * STEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_aligned_to_the_step() {
        assert_eq!(align(Ts(0)), Ts(0));
        assert_eq!(align(Ts(1)), Ts(STEP));
        assert_eq!(align(Ts(STEP)), Ts(STEP));
        assert_eq!(align(Ts(STEP + 1)), Ts(2 * STEP));
    }
}
