//! Commit timestamps of table-shard writes, chosen by the shard's leader before it proposes
//! (docs/transactions.md, "leader-assigned timestamps"), and the node's view of the timestamp
//! oracle that they derive from.
//!
//! [`NodeClock`] fetches fresh oracle values for the whole node, one call in flight: callers
//! that arrive while a call runs share the next one (its value was handed out after they
//! arrived, which is what "fresh" promises). It remembers the newest value it received
//! (`node_ts`), refreshed in the background every few milliseconds while writes use it.
//!
//! [`ShardClock`] is one group's leader-side state (in memory, dropped with leadership): the
//! timestamp of its last write and the oracle value its current window derives from. A write's
//! timestamp is `max(last write, node_ts) + 1`, kept inside the window `[value, value + STEP)`
//! of an oracle value already handed out; when it would leave it, the leader takes a fresh
//! value first. This is **I1**: every commit timestamp is an oracle value plus less than
//! `STEP`, so any oracle value handed out after a write was stamped is larger than it (a
//! snapshot taken later sees the write). A new term starts from a fresh value (`floor`),
//! which is above every timestamp any earlier leader of the group chose.
//!
//! Proposals are sent to openraft under the shard clock's lock, so one leader's log holds its
//! writes in timestamp order; apply pushes a write above a newer version of a key it writes
//! anyway (deterministically), which only a bug here would make happen.
//!
//! Reads at a timestamp `r` ([`ShardClock::before_read`]) keep snapshots repeatable: a write
//! stamped but not yet applied holds a latch on its keys, and a read at `r` waits for the
//! latches at or below `r` on the keys it reads (else it would miss the write now and see it
//! later); and the highest `r` read (`read_max`, the shard-wide timestamp cache) bounds every
//! later stamp from below, so no write lands at or below a timestamp already read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use raftable_common::{Error, Result, ShardRead, Ts};

use crate::tso::STEP;

/// Where fresh oracle values come from: the router (the meta group's leader), or a test fake.
#[async_trait::async_trait]
pub(crate) trait Oracle: Send + Sync {
    /// One value handed out after this call began.
    async fn fresh(&self) -> Result<Ts>;
}

/// How old `node_ts` may grow under traffic before a write triggers a background refresh.
const REFRESH: Duration = Duration::from_millis(10);

/// The node's link to the timestamp oracle.
#[derive(Default)]
pub struct NodeClock {
    oracle: OnceLock<Weak<dyn Oracle>>,
    /// The newest oracle value this node received (`node_ts`).
    newest: AtomicU64,
    /// The newest commit timestamp of a table write acknowledged through this node.
    observed: AtomicU64,
    /// Calls to the oracle started so far.
    started: AtomicU64,
    /// The last call: (its position in `started`, its value). Held while a call runs.
    last: tokio::sync::Mutex<(u64, Ts)>,
    refreshed: Mutex<Option<Instant>>,
    refreshing: AtomicBool,
}

impl NodeClock {
    /// Connects the clock to its oracle (once; the router, when it is built).
    pub(crate) fn connect(&self, oracle: Weak<dyn Oracle>) {
        let _ = self.oracle.set(oracle);
    }

    /// The newest oracle value this node received (`Ts::MIN` before the first).
    pub fn newest(&self) -> Ts {
        Ts(self.newest.load(Ordering::SeqCst))
    }

    /// The newest commit timestamp of a table write acknowledged through this node: the
    /// causality token its next writes carry.
    pub fn observed(&self) -> Ts {
        Ts(self.observed.load(Ordering::SeqCst))
    }

    /// Records a table write's commit timestamp, acknowledged through this node.
    pub(crate) fn observe(&self, ts: Ts) {
        self.observed.fetch_max(ts.0, Ordering::SeqCst);
    }

    /// An oracle value handed out after this call began. Calls arriving while one is in flight
    /// wait for it to end and share the next one.
    pub async fn fresh(&self) -> Result<Ts> {
        let arrived = self.started.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if last.0 > arrived {
            // A call that started after this one arrived has ended meanwhile.
            return Ok(last.1);
        }
        let position = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let oracle = self.oracle.get().and_then(Weak::upgrade);
        let oracle = oracle.ok_or_else(|| Error::Retry("the timestamp oracle is not reachable yet".into()))?;
        let value = oracle.fresh().await?;
        *last = (position, value);
        self.newest.fetch_max(value.0, Ordering::SeqCst);
        *self.refreshed.lock().expect("refreshed lock") = Some(Instant::now());
        Ok(value)
    }

    /// Starts a background refresh of `node_ts` if it is older than [`REFRESH`] and none runs.
    fn refresh_if_stale(self: &Arc<Self>) {
        let stale = self.refreshed.lock().expect("refreshed lock").is_none_or(|at| at.elapsed() >= REFRESH);
        if stale && !self.refreshing.swap(true, Ordering::SeqCst) {
            let clock = self.clone();
            tokio::spawn(async move {
                if let Err(e) = clock.fresh().await {
                    tracing::debug!(error = %e, "background timestamp refresh failed");
                }
                clock.refreshing.store(false, Ordering::SeqCst);
            });
        }
    }
}

/// One group's leader-side timestamp state.
pub(crate) struct ShardClock {
    node: Arc<NodeClock>,
    leading: Arc<tokio::sync::Mutex<Leading>>,
    latches: Arc<LatchTable>,
}

/// The latches of a shard's stamped writes, shared with each [`WriteLatch`] (which may outlive
/// the call that stamped its write: see `Group::stamped`).
#[derive(Default)]
struct LatchTable {
    state: Mutex<Latches>,
    /// Signalled whenever a write latch is released.
    released: tokio::sync::Notify,
}

/// Writes stamped and not yet applied, and the highest timestamp read.
#[derive(Default)]
struct Latches {
    read_max: Ts,
    next: u64,
    writes: HashMap<u64, (Ts, Vec<Vec<u8>>)>,
}

/// A stamped write's latch on its keys, released when dropped (after the write applied or
/// failed).
pub(crate) struct WriteLatch {
    leading: Arc<tokio::sync::Mutex<Leading>>,
    latches: Arc<LatchTable>,
    id: u64,
}

impl WriteLatch {
    /// The write applied at `version` in `term` (above its stamp if apply pushed it there):
    /// later stamps of the term go above it. Then the latch is released.
    pub(crate) async fn applied(self, term: u64, version: Ts) {
        let mut leading = self.leading.lock().await;
        if leading.term == term && version > leading.max_ts {
            leading.max_ts = version;
        }
    }
}

impl Drop for WriteLatch {
    fn drop(&mut self) {
        self.latches.state.lock().expect("latches lock").writes.remove(&self.id);
        self.latches.released.notify_waiters();
    }
}

/// What the leader chose in `term`; reset from a fresh oracle value in a new term.
#[derive(Default)]
pub(crate) struct Leading {
    term: u64,
    /// The oracle value the current window starts at.
    window: Ts,
    /// The largest timestamp chosen or applied in this term.
    max_ts: Ts,
}

impl ShardClock {
    pub(crate) fn new(node: Arc<NodeClock>) -> Self {
        Self { node, leading: Arc::default(), latches: Arc::default() }
    }

    /// Locks the leader state for stamping one write of `term` (the caller checked it leads in
    /// it): the caller proposes while holding the guard, so proposals enter the log in
    /// timestamp order.
    pub(crate) async fn lock(&self) -> tokio::sync::OwnedMutexGuard<Leading> {
        self.leading.clone().lock_owned().await
    }

    /// The commit timestamp of the next write proposed in `term`, which writes `keys` and must
    /// commit above `after` (a causality token: a commit timestamp acknowledged before the
    /// write began), and its latch on the keys (hold it until the write applied or failed).
    pub(crate) async fn stamp(
        &self,
        leading: &mut Leading,
        term: u64,
        keys: Vec<Vec<u8>>,
        after: Ts,
    ) -> Result<(Ts, WriteLatch)> {
        if leading.term != term {
            // New leadership: start above everything an earlier leader chose.
            let floor = self.node.fresh().await?;
            *leading = Leading { term, window: floor, max_ts: floor };
        }
        self.node.refresh_if_stale();
        loop {
            let newest = self.node.newest();
            if newest > leading.window {
                leading.window = newest;
            }
            // A commit timestamp lies within STEP of the oracle value it derives from (I1),
            // which was handed out: the token's window may be this one's.
            let token_window = Ts(after.0 / STEP * STEP);
            if token_window > leading.window {
                leading.window = token_window;
            }
            {
                let mut latches = self.latches.state.lock().expect("latches lock");
                let read_max = latches.read_max;
                // A read timestamp from the oracle (a multiple of STEP) was handed out: it may
                // start the window.
                if read_max > leading.window && read_max.0.is_multiple_of(STEP) {
                    leading.window = read_max;
                }
                let ts = leading.max_ts.max(newest).max(read_max).max(after).next();
                if ts.0 < leading.window.0 + STEP {
                    leading.max_ts = ts;
                    let id = latches.next;
                    latches.next += 1;
                    latches.writes.insert(id, (ts, keys));
                    let latch = WriteLatch { leading: self.leading.clone(), latches: self.latches.clone(), id };
                    return Ok((ts, latch));
                }
            }
            // The next timestamp would leave the window: take a fresh oracle value (above
            // every timestamp read or chosen so far) and start a new one.
            leading.window = self.node.fresh().await?;
        }
    }

    /// Prepares a read at `ts`: later stamps go above `ts`, and the writes stamped at or below
    /// `ts` that touch what `read` reads are waited for until applied (or failed).
    pub(crate) async fn before_read(&self, read: &ShardRead, ts: Ts) {
        loop {
            let released = self.latches.released.notified();
            {
                let mut latches = self.latches.state.lock().expect("latches lock");
                latches.read_max = latches.read_max.max(ts);
                let blocked = latches.writes.values().any(|(w, keys)| *w <= ts && keys.iter().any(|k| reads(read, k)));
                if !blocked {
                    return;
                }
            }
            released.await;
        }
    }

    /// The largest timestamp chosen or applied in `term`, if this replica stamped writes in it.
    pub(crate) async fn newest(&self, term: u64) -> Option<Ts> {
        let leading = self.leading.lock().await;
        (leading.term == term).then_some(leading.max_ts)
    }
}

/// Whether `read` reads `key`.
fn reads(read: &ShardRead, key: &[u8]) -> bool {
    match read {
        ShardRead::Get { key: k } => k == key,
        ShardRead::MultiGet { keys } => keys.iter().any(|k| k == key),
        ShardRead::Scan { start, end, .. } => key >= start.as_slice() && (end.is_empty() || key < end.as_slice()),
        ShardRead::Validate { spans, .. } => spans.iter().any(|s| s.contains(key)),
        ShardRead::Unsettled { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An oracle handing out multiples of `STEP`, counting its calls.
    #[derive(Default)]
    struct Fake {
        next: AtomicU64,
        calls: AtomicU64,
    }

    #[async_trait::async_trait]
    impl Oracle for Fake {
        async fn fresh(&self) -> Result<Ts> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(Ts(self.next.fetch_add(STEP, Ordering::SeqCst) + STEP))
        }
    }

    fn clock() -> (Arc<Fake>, Arc<NodeClock>) {
        let fake = Arc::new(Fake::default());
        let node = Arc::new(NodeClock::default());
        let oracle: Arc<dyn Oracle> = fake.clone();
        node.connect(Arc::downgrade(&oracle));
        (fake, node)
    }

    /// Every timestamp is within STEP of an oracle value handed out before it was chosen, and
    /// timestamps increase; a new term starts above the old one's.
    #[tokio::test]
    async fn stamps_stay_in_their_window_and_increase() {
        let (fake, node) = clock();
        let shard = ShardClock::new(node.clone());
        let mut last = Ts::MIN;
        for i in 0..1000 {
            let term = if i < 600 { 1 } else { 2 };
            let mut leading = shard.lock().await;
            let (ts, _latch) = shard.stamp(&mut leading, term, vec![vec![1]], Ts::MIN).await.unwrap();
            assert!(ts > last, "{ts} after {last}");
            let handed_out = fake.next.load(Ordering::SeqCst);
            assert!(
                ts.0 < handed_out + STEP && !ts.0.is_multiple_of(STEP),
                "I1 broken: {ts} with oracle at {handed_out}"
            );
            if i == 600 {
                assert_eq!(ts.0 % STEP, 1, "a new term starts from a fresh value: {ts}");
            }
            last = ts;
        }
        // About one oracle call per STEP - 1 writes, plus background refreshes.
        assert!(fake.calls.load(Ordering::SeqCst) >= 1000 / STEP);
    }

    /// A read at `r` waits for a write stamped at or below `r` on a key it reads, until the
    /// write's latch is released; reads of other keys, and reads below the write, do not wait;
    /// and a write stamped after the read goes above `r`.
    #[tokio::test]
    async fn reads_wait_for_latched_writes_below_them_and_push_later_ones_above() {
        let (_fake, node) = clock();
        let shard = ShardClock::new(node.clone());
        let get = |k: u8| ShardRead::Get { key: vec![k] };
        let (ts, latch) = {
            let mut leading = shard.lock().await;
            shard.stamp(&mut leading, 1, vec![vec![1], vec![2]], Ts::MIN).await.unwrap()
        };
        let at = Ts(ts.0 + 5);
        // Other keys, or below the write: no wait.
        shard.before_read(&get(3), at).await;
        shard.before_read(&get(1), Ts(ts.0 - 1)).await;
        let scan = ShardRead::Scan { start: vec![3], end: vec![], limit: None, reverse: false };
        shard.before_read(&scan, at).await;
        // Key 2 at or above the write waits for the latch.
        let two = get(2);
        let read = shard.before_read(&two, at);
        tokio::pin!(read);
        assert!(futures::poll!(read.as_mut()).is_pending(), "the read must wait for the write");
        drop(latch);
        read.await;
        // A write stamped now goes above every timestamp read.
        let mut leading = shard.lock().await;
        let (later, latch) = shard.stamp(&mut leading, 1, vec![vec![9]], Ts::MIN).await.unwrap();
        assert!(later > at, "{later} after a read at {at}");
        drop(latch);
        // A causality token far ahead (a commit on another shard) is respected, in its window.
        let token = Ts(later.0 + 10 * STEP + 7);
        let (after, _latch) = shard.stamp(&mut leading, 1, vec![vec![9]], token).await.unwrap();
        assert_eq!(after, token.next(), "stamped just above the token, without an oracle call");
    }

    /// Callers arriving while a call is in flight share the next one: the first caller's call
    /// is in flight when the other 49 arrive (all are polled once before it ends), so they all
    /// wait for the second call.
    #[tokio::test]
    async fn concurrent_fresh_calls_share_oracle_calls() {
        let (fake, node) = clock();
        let values = futures::future::join_all((0..50).map(|_| node.fresh())).await;
        let values: Vec<Ts> = values.into_iter().map(Result::unwrap).collect();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert_eq!(values[0], Ts(STEP));
        assert!(values[1..].iter().all(|v| *v == Ts(2 * STEP)), "{values:?}");
        assert_eq!(node.newest(), Ts(2 * STEP));
    }
}
