//! [`Txn`]: one transaction, coordinated by the gateway node it runs on. It reads every shard
//! at one snapshot (`read_ts`, from the oracle at its first read), sees its own buffered
//! writes, and records what it read (spans) so that commit can check nothing it read changed.
//!
//! Commit ([`Txn::commit`]):
//! - nothing written: nothing to do (a snapshot is a serializable read-only transaction);
//! - everything read and written on one shard: one `TxnOp::Commit` (1PC), which validates the
//!   reads and writes the versions in one Raft entry;
//! - otherwise two-phase: `Prepare` on every written shard in parallel (the anchor, the first,
//!   also creates the record); the commit timestamp `C` is the highest prepare stamp; the reads
//!   on shards not validated at or above `C` are validated at `C` (`ShardRead::Validate`,
//!   which also keeps later writes above `C`); `End(Commit(C))` on the anchor is the commit
//!   point; then every other shard's locks are resolved and the record forgotten.
//!
//! Any failure before the commit point leaves the transaction certainly uncommitted: it is
//! aborted (record first, then locks) and reported as 40001, even when a prepare's reply was
//! lost. Only the commit point itself can end unknown.
//!
//! No command carries more than [`CHUNK_BYTES`] of keys, values and read spans, nor more than
//! [`CHUNK_ITEMS`] of them: a shard's part larger than that prepares in several `Prepare`
//! commands one after another (the first on the anchor creates the record, each validates its
//! share of the reads and locks its share of the writes), validates and resolves in chunks
//! too, and a one-shard commit that does not fit one command goes two-phase. So no Raft entry
//! outgrows what an AppendEntries carries in time, whatever the statement's size; the writes
//! are still buffered in the gateway's memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raftable_common::{
    Decision, Error, NodeId, Result, Row, ShardClient, ShardId, ShardRead, Span, Ts, TxnId, TxnMeta, TxnOp, TxnWrite,
};

use crate::settle::{briefly_unlocked, pause, until_unlocked};

/// Most bytes of keys, values and read spans in one transaction command (one Raft entry):
/// openraft gives an AppendEntries one heartbeat interval, and `cluster::network` sends 1 MiB
/// of entries per AppendEntries.
pub const CHUNK_BYTES: usize = 512 << 10;

/// Most writes, keys or spans in one transaction command: its apply time grows with them (a
/// command of keys alone fits many in its bytes), and a long apply on a busy node delays its
/// Raft heartbeats into elections.
pub const CHUNK_ITEMS: usize = 4096;

/// Starts transactions on one gateway node.
pub struct Coordinator {
    client: Arc<dyn ShardClient>,
    node: NodeId,
    seq: AtomicU64,
    chunk: usize,
}

impl Coordinator {
    pub fn new(client: Arc<dyn ShardClient>, node: NodeId) -> Arc<Self> {
        Self::with_chunks(client, node, CHUNK_BYTES)
    }

    /// A coordinator whose commands carry at most `chunk` bytes (tests use small ones).
    pub fn with_chunks(client: Arc<dyn ShardClient>, node: NodeId, chunk: usize) -> Arc<Self> {
        // Ids stay unique across restarts of the node: the sequence starts at the clock.
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Arc::new(Self { client, node, seq: AtomicU64::new(micros), chunk: chunk.max(1) })
    }

    pub fn begin(self: &Arc<Self>) -> Txn {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        Txn {
            coordinator: self.clone(),
            id: TxnId((u128::from(self.node) << 64) | u128::from(seq)),
            read_ts: tokio::sync::OnceCell::new(),
            state: Mutex::default(),
        }
    }
}

/// A transaction's buffered writes: per shard, per key, the new value or a deletion.
type Writes = BTreeMap<ShardId, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// What a transaction read, per shard.
type Reads = BTreeMap<ShardId, Vec<Span>>;

/// The written keys that must hold no row when the commit applies (`Txn::insert`), per shard.
type Inserts = BTreeMap<ShardId, BTreeSet<Vec<u8>>>;

/// A point to roll a transaction's writes back to (`SAVEPOINT`).
#[derive(Debug, Clone)]
pub struct Savepoint(Writes, Inserts);

/// One transaction (see the module docs). Shared by the reads of one statement (a query's scan
/// partitions run concurrently): its state sits behind a lock never held across an await.
pub struct Txn {
    coordinator: Arc<Coordinator>,
    id: TxnId,
    read_ts: tokio::sync::OnceCell<Ts>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    writes: Writes,
    inserts: Inserts,
    reads: Reads,
}

impl Txn {
    pub fn id(&self) -> TxnId {
        self.id
    }

    fn client(&self) -> &dyn ShardClient {
        self.coordinator.client.as_ref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("transaction state lock")
    }

    /// The snapshot every read of the transaction sees, taken at the first call.
    pub async fn read_ts(&self) -> Result<Ts> {
        self.read_ts.get_or_try_init(|| self.client().snapshot()).await.copied()
    }

    /// Reads `shard` at the transaction's snapshot, with its own writes applied, and records
    /// what the read covered. `Get`, `MultiGet` and `Scan` only; a scan names its end (an
    /// empty end means the end of the keyspace, and its span would leave the shard).
    pub async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        let ts = self.read_ts().await?;
        let own = self.own_writes(shard, &read);
        // A scan over keys this transaction wrote reads as many more rows as it deleted there
        // (its own deletions may hide that many), then merges: the first `limit` merged rows
        // all lie within what the shard returned.
        let sent = match &read {
            ShardRead::Scan { start, end, reverse, limit } if !own.is_empty() => {
                let deleted = own.values().filter(|v| v.is_none()).count() as u64;
                let limit = limit.map(|l| l.saturating_add(deleted));
                ShardRead::Scan { start: start.clone(), end: end.clone(), limit, reverse: *reverse }
            }
            ShardRead::Validate { .. } => return Err(Error::InvalidInput("a validation is not a read".into())),
            other => other.clone(),
        };
        let client = self.coordinator.client.clone();
        let rows = until_unlocked(client.as_ref(), shard, || client.read_at(shard, sent.clone(), ts)).await?;
        let rows = merge(&own, &read, rows);
        self.state().reads.entry(shard).or_default().extend(covered(&read, &rows));
        Ok(rows)
    }

    /// The buffered writes of `shard` that `read` reads.
    fn own_writes(&self, shard: ShardId, read: &ShardRead) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        let state = self.state();
        let Some(writes) = state.writes.get(&shard) else { return BTreeMap::new() };
        let pick = |k: &Vec<u8>| writes.get(k).map(|v| (k.clone(), v.clone()));
        match read {
            ShardRead::Get { key } => pick(key).into_iter().collect(),
            ShardRead::MultiGet { keys } => keys.iter().filter_map(pick).collect(),
            ShardRead::Scan { start, end, .. } => writes
                .range(start.clone()..)
                .take_while(|(k, _)| in_range(k, start, end))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ShardRead::Validate { .. } => BTreeMap::new(),
        }
    }

    /// Buffers a write of `key` on `shard`: its new value, or `None` to delete it.
    pub fn write(&self, shard: ShardId, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut state = self.state();
        if let Some(inserts) = state.inserts.get_mut(&shard) {
            inserts.remove(&key);
        }
        state.writes.entry(shard).or_default().insert(key, value);
    }

    /// Buffers an insert of `key` on `shard`: the commit fails with `Error::DuplicateKey` if
    /// the key holds a row then. What an INSERT that read nothing does instead of reading
    /// first (it is its own transaction: the duplicate is reported by its commit).
    pub fn insert(&self, shard: ShardId, key: Vec<u8>, value: Vec<u8>) {
        let mut state = self.state();
        state.inserts.entry(shard).or_default().insert(key.clone());
        state.writes.entry(shard).or_default().insert(key, Some(value));
    }

    pub fn is_read_only(&self) -> bool {
        self.state().writes.is_empty()
    }

    /// Whether the transaction read anything yet.
    pub fn has_read(&self) -> bool {
        !self.state().reads.is_empty()
    }

    pub fn savepoint(&self) -> Savepoint {
        let state = self.state();
        Savepoint(state.writes.clone(), state.inserts.clone())
    }

    /// Undoes the writes buffered since `savepoint` (its reads stay: they happened).
    pub fn rollback_to(&self, savepoint: &Savepoint) {
        let mut state = self.state();
        state.writes = savepoint.0.clone();
        state.inserts = savepoint.1.clone();
    }

    /// Commits what was buffered (and forgets it): `Ok(Some(commit timestamp))`, `Ok(None)`
    /// for a read-only transaction. `Error::TxnConflict` / `Error::TxnAborted` mean nothing
    /// applied; `Error::Unknown` that the commit point's reply was lost.
    pub async fn commit(&self) -> Result<Option<Ts>> {
        let State { writes, inserts, mut reads } = std::mem::take(&mut *self.state());
        if writes.is_empty() {
            return Ok(None);
        }
        let read_ts = self.read_ts.get().copied().unwrap_or(Ts::MIN);
        let one_shard = writes.len() == 1 && reads.keys().all(|s| writes.contains_key(s));
        let fits = || {
            let written: usize = writes.values().flat_map(|w| w.iter()).map(|(k, v)| write_size(k, v)).sum();
            let read: usize = reads.values().flatten().map(span_size).sum();
            let items = writes.values().map(BTreeMap::len).sum::<usize>() + reads.values().map(Vec::len).sum::<usize>();
            written + read <= self.coordinator.chunk && items <= CHUNK_ITEMS
        };
        if one_shard && fits() {
            let (&shard, shard_writes) = writes.iter().next().expect("one shard");
            let op = TxnOp::Commit {
                txn: self.id,
                read_ts,
                reads: reads.remove(&shard).unwrap_or_default(),
                writes: to_writes(shard_writes, inserts.get(&shard)),
            };
            let client = self.coordinator.client.clone();
            let outcome = until_unlocked(client.as_ref(), shard, || client.txn(shard, op.clone())).await?;
            return Ok(Some(Ts(outcome.version)));
        }
        Commit { txn: self, writes: &writes, inserts: &inserts, reads: &reads, read_ts }.two_phase().await.map(Some)
    }
}

/// A two-phase commit in progress.
struct Commit<'a> {
    txn: &'a Txn,
    writes: &'a Writes,
    inserts: &'a Inserts,
    reads: &'a Reads,
    read_ts: Ts,
}

impl Commit<'_> {
    fn client(&self) -> &dyn ShardClient {
        self.txn.client()
    }

    fn chunk(&self) -> usize {
        self.txn.coordinator.chunk
    }

    async fn two_phase(&self) -> Result<Ts> {
        let (id, read_ts) = (self.txn.id, self.read_ts);
        let (&anchor, anchor_writes) = self.writes.iter().next().expect("writes");
        let anchor_key = anchor_writes.keys().next().expect("a write").clone();
        let meta = TxnMeta { id, anchor, anchor_key };
        let prepares = self.writes.iter().map(|(&shard, writes)| {
            let writes =
                chunks(to_writes(writes, self.inserts.get(&shard)), self.chunk(), |w| write_size(&w.key, &w.value));
            let reads = chunks(self.reads.get(&shard).cloned().unwrap_or_default(), self.chunk(), span_size);
            let meta = &meta;
            async move { (shard, self.prepare_chunks(shard, meta, shard == anchor, writes, reads).await) }
        });
        // Per shard, the stamp its reads were validated at (the lowest of its prepares).
        let mut validated = BTreeMap::new();
        let mut commit = Ts::MIN;
        let mut failure = None;
        for (shard, result) in futures::future::join_all(prepares).await {
            match result {
                Ok((lowest, highest)) => {
                    validated.insert(shard, lowest);
                    commit = commit.max(highest);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(self.abort(&meta, e).await);
        }
        // Reads not yet checked up to `commit`: on shards it only read, or prepared below it.
        let checks = self.reads.iter().filter(|(s, _)| validated.get(s).is_none_or(|p| *p < commit));
        let checks = checks.flat_map(|(&shard, spans)| {
            chunks(spans.clone(), self.chunk(), span_size).into_iter().map(move |spans| {
                let read = ShardRead::Validate { txn: id, since: read_ts, spans };
                self.validate(shard, read, commit)
            })
        });
        if let Some(e) = futures::future::join_all(checks).await.into_iter().find_map(Result::err) {
            return Err(self.abort(&meta, e).await);
        }
        // The commit point. Sent again if its reply is lost: the record answers the same.
        let end = TxnOp::End { txn: meta.clone(), decision: Decision::Commit(commit), keys: self.anchor_keys(anchor) };
        let mut last = None;
        for attempt in 0..3 {
            match self.client().txn(anchor, end.clone()).await {
                Ok(outcome) if outcome.version == commit.0 => {
                    last = None;
                    break;
                }
                Ok(outcome) => {
                    return Err(Error::Internal(format!("record of {id} says committed at {}", outcome.version)))
                }
                Err(e @ Error::TxnAborted(_)) => return Err(self.abort(&meta, e).await),
                Err(e) if e.is_retryable() || matches!(e, Error::Unknown(_)) => {
                    last = Some(e);
                    tokio::time::sleep(pause(attempt + 3)).await;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last {
            return Err(Error::Unknown(format!("the commit of transaction {id} was not acknowledged: {e}")));
        }
        self.resolve(&meta, Some(commit)).await;
        Ok(commit)
    }

    /// Prepares `shard`: its writes and reads in chunks, one command after another (at least
    /// one, so the anchor's record exists). Returns the lowest and the highest prepare stamp.
    async fn prepare_chunks(
        &self,
        shard: ShardId,
        meta: &TxnMeta,
        anchor: bool,
        writes: Vec<Vec<TxnWrite>>,
        reads: Vec<Vec<Span>>,
    ) -> Result<(Ts, Ts)> {
        let n = writes.len().max(reads.len()).max(1);
        let (mut writes, mut reads) = (writes.into_iter(), reads.into_iter());
        let (mut lowest, mut highest) = (Ts::MAX, Ts::MIN);
        for _ in 0..n {
            let op = TxnOp::Prepare {
                txn: meta.clone(),
                anchor,
                read_ts: self.read_ts,
                reads: reads.next().unwrap_or_default(),
                writes: writes.next().unwrap_or_default(),
            };
            let stamp = self.prepare(shard, op).await?;
            (lowest, highest) = (lowest.min(stamp), highest.max(stamp));
        }
        Ok((lowest, highest))
    }

    /// Sends one prepare; another transaction's lock is waited for only briefly
    /// (`settle::briefly_unlocked`: this one holds locks too).
    async fn prepare(&self, shard: ShardId, op: TxnOp) -> Result<Ts> {
        let client = self.client();
        let outcome = briefly_unlocked(client, shard, || client.txn(shard, op.clone())).await?;
        Ok(Ts(outcome.version))
    }

    /// Validates a read span set at the commit timestamp, waiting for locks as
    /// [`Commit::prepare`] does.
    async fn validate(&self, shard: ShardId, read: ShardRead, commit: Ts) -> Result<()> {
        let client = self.client();
        briefly_unlocked(client, shard, || client.read_at(shard, read.clone(), commit)).await.map(|_| ())
    }

    /// Aborts after a failure before the commit point: the record first (so a prepare still
    /// in flight on the anchor fails), then every lock. Returns the error to report: nothing
    /// applied, whatever `cause` was, so an unknown outcome becomes a serialization failure.
    async fn abort(&self, meta: &TxnMeta, cause: Error) -> Error {
        let end = TxnOp::End { txn: meta.clone(), decision: Decision::Abort, keys: self.anchor_keys(meta.anchor) };
        match self.client().txn(meta.anchor, end).await {
            Ok(outcome) if outcome.version == 0 => {}
            Ok(outcome) => {
                return Error::Internal(format!(
                    "transaction {} committed at {} while aborting",
                    self.txn.id, outcome.version
                ))
            }
            // Unrecorded: the transaction cannot commit (only this coordinator sends the
            // commit), and its locks expire and are pushed.
            Err(e) => tracing::debug!(txn = %self.txn.id, error = %e, "abort not recorded"),
        }
        self.resolve(meta, None).await;
        match cause {
            e @ (Error::TxnConflict(_) | Error::TxnAborted(_) | Error::SnapshotTooOld(_)) => e,
            e if e.is_deterministic() && !matches!(e, Error::Locked { .. }) => e,
            e => Error::TxnAborted(format!("transaction {} was rolled back after: {e}", self.txn.id)),
        }
    }

    /// Resolves the locks on every shard but those of the anchor that its `End` resolved (the
    /// first chunk of its keys), in chunks, then drops the record if all went well. Failures
    /// are left to the pushers.
    async fn resolve(&self, meta: &TxnMeta, commit: Option<Ts>) {
        // Shards in parallel, each shard's chunks one after another.
        let resolves = self.writes.keys().map(|&shard| async move {
            let skip = usize::from(shard == meta.anchor);
            for keys in self.key_chunks(shard).into_iter().skip(skip) {
                self.client().txn(shard, TxnOp::Resolve { txn: self.txn.id, commit, keys }).await?;
            }
            Ok::<(), Error>(())
        });
        let all = futures::future::join_all(resolves).await.into_iter().all(|r| r.is_ok());
        if all {
            // Nobody waits for the record to go.
            let client = self.txn.coordinator.client.clone();
            let (anchor, forget) = (meta.anchor, TxnOp::Forget { txn: meta.clone() });
            tokio::spawn(async move {
                if let Err(e) = client.txn(anchor, forget).await {
                    tracing::debug!(error = %e, "transaction record not forgotten");
                }
            });
        }
    }

    /// The keys `shard` holds locks on, in chunks.
    fn key_chunks(&self, shard: ShardId) -> Vec<Vec<Vec<u8>>> {
        let keys = self.writes.get(&shard).map(|w| w.keys().cloned().collect()).unwrap_or_default();
        chunks(keys, self.chunk(), |k: &Vec<u8>| k.len() + 8)
    }

    /// The anchor's keys that `End` resolves: the first chunk (the rest are resolved after).
    fn anchor_keys(&self, anchor: ShardId) -> Vec<Vec<u8>> {
        self.key_chunks(anchor).into_iter().next().unwrap_or_default()
    }
}

/// `items` cut into runs of consecutive items of at most `budget` bytes (by `size`) and
/// [`CHUNK_ITEMS`] items each; an item larger than the budget goes alone. None for no items.
fn chunks<T>(items: Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(last) if used + n <= budget && last.len() < CHUNK_ITEMS => last.push(item),
            _ => {
                out.push(vec![item]);
                used = 0;
            }
        }
        used += n;
    }
    out
}

/// Bytes a write adds to a command (key, value and framing).
fn write_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + 16
}

fn span_size(span: &Span) -> usize {
    span.start.len() + span.end.len() + 16
}

fn to_writes(writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, inserts: Option<&BTreeSet<Vec<u8>>>) -> Vec<TxnWrite> {
    let insert = |k: &Vec<u8>| inserts.is_some_and(|i| i.contains(k));
    writes.iter().map(|(k, v)| TxnWrite { key: k.clone(), value: v.clone(), insert: insert(k) }).collect()
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// `rows` as read from the shard, with the transaction's own writes `own` applied. Rows it
/// wrote carry version `u64::MAX` (not committed yet).
fn merge(own: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, read: &ShardRead, rows: Vec<Row>) -> Vec<Row> {
    if own.is_empty() {
        return rows;
    }
    let mine = |key: &[u8], value: &Vec<u8>| Row { key: key.to_vec(), value: value.clone(), version: u64::MAX };
    match read {
        ShardRead::Get { key } => match own.get(key) {
            Some(Some(v)) => vec![mine(key, v)],
            Some(None) => Vec::new(),
            None => rows,
        },
        ShardRead::MultiGet { keys } => {
            let mut stored: BTreeMap<Vec<u8>, Row> = rows.into_iter().map(|r| (r.key.clone(), r)).collect();
            keys.iter()
                .filter_map(|k| match own.get(k) {
                    Some(Some(v)) => Some(mine(k, v)),
                    Some(None) => None,
                    None => stored.remove(k),
                })
                .collect()
        }
        ShardRead::Scan { start, end, limit, reverse } => {
            let mut all: BTreeMap<Vec<u8>, Row> = rows.into_iter().map(|r| (r.key.clone(), r)).collect();
            for (k, v) in own.range(start.clone()..).take_while(|(k, _)| in_range(k, start, end)) {
                match v {
                    Some(v) => all.insert(k.clone(), mine(k, v)),
                    None => all.remove(k),
                };
            }
            let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
            if *reverse {
                all.into_values().rev().take(limit).collect()
            } else {
                all.into_values().take(limit).collect()
            }
        }
        ShardRead::Validate { .. } => rows,
    }
}

/// The spans a read covered, given the rows it returned: a scan that stopped at its limit
/// covered up to its last row.
fn covered(read: &ShardRead, rows: &[Row]) -> Vec<Span> {
    match read {
        ShardRead::Get { key } => vec![Span::point(key)],
        ShardRead::MultiGet { keys } => keys.iter().map(|k| Span::point(k)).collect(),
        ShardRead::Scan { start, end, limit, reverse } => {
            let full = limit.is_some_and(|l| rows.len() as u64 >= l);
            match rows.last() {
                Some(last) if full && *reverse => vec![Span::new(last.key.clone(), end.clone())],
                Some(last) if full => vec![Span::new(start.clone(), Span::point(&last.key).end)],
                _ => vec![Span::new(start.clone(), end.clone())],
            }
        }
        ShardRead::Validate { .. } => Vec::new(),
    }
}
