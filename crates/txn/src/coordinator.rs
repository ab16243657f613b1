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
//! outgrows what an AppendEntries carries in time, whatever the statement's size. The writes
//! wait in a [`Buffer`] that spills to temporary files past its memory budget, and the commit
//! streams them from there, so neither side holds a big transaction whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raftable_common::{
    Decision, Error, NodeId, Result, Row, ShardClient, ShardId, ShardRead, Span, Ts, TxnId, TxnMeta, TxnOp, TxnWrite,
};

use crate::buffer::{Buffer, Entry, Mark, Merge, SPILL_BYTES};
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
    spill: usize,
}

impl Coordinator {
    pub fn new(client: Arc<dyn ShardClient>, node: NodeId) -> Arc<Self> {
        Self::with_limits(client, node, CHUNK_BYTES, SPILL_BYTES)
    }

    /// A coordinator whose commands carry at most `chunk` bytes, and whose transactions keep
    /// at most about `spill` bytes of writes in memory (tests use small ones).
    pub fn with_limits(client: Arc<dyn ShardClient>, node: NodeId, chunk: usize, spill: usize) -> Arc<Self> {
        Arc::new(Self { client, node, seq: AtomicU64::new(0), chunk: chunk.max(1), spill })
    }

    /// The node whose transactions this coordinates.
    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn begin(self: &Arc<Self>) -> Txn {
        // The sequence follows the clock in microseconds, one more than the last when the clock
        // has not moved on: ids stay unique across restarts of the node, and tell roughly when
        // the transaction began (`status` relies on that to tell an id too old to know).
        let now = micros();
        let next = |last: u64| (last + 1).max(now);
        let last = self.seq.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(next(s)));
        let seq = last.map_or(now, next);
        Txn {
            coordinator: self.clone(),
            id: TxnId((u128::from(self.node) << 64) | u128::from(seq)),
            read_ts: tokio::sync::OnceCell::new(),
            state: Mutex::new(State::new(self.spill)),
            began: now,
        }
    }
}

/// Microseconds since the Unix epoch, by this node's clock.
pub(crate) fn micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// What a transaction read, per shard.
type Reads = BTreeMap<ShardId, Vec<Span>>;

/// A point to roll a transaction's writes back to (`SAVEPOINT`).
#[derive(Debug, Clone)]
pub struct Savepoint(Mark);

/// One transaction (see the module docs). Shared by the reads of one statement (a query's scan
/// partitions run concurrently): its state sits behind a lock never held across an await.
pub struct Txn {
    coordinator: Arc<Coordinator>,
    id: TxnId,
    read_ts: tokio::sync::OnceCell<Ts>,
    state: Mutex<State>,
    /// When it began: microseconds since the Unix epoch, by this node's clock.
    began: u64,
}

struct State {
    writes: Buffer,
    reads: Reads,
    /// An insert the commit adds, whatever savepoints roll back: the status row
    /// (`crate::status`).
    at_commit: Option<(ShardId, Vec<u8>, Vec<u8>)>,
    /// Definitions the writes were made with: object id → the oldest version used.
    uses: std::collections::BTreeMap<u32, u64>,
}

impl State {
    fn new(spill: usize) -> Self {
        Self { writes: Buffer::new(spill), reads: Reads::new(), at_commit: None, uses: Default::default() }
    }
}

impl Txn {
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// When it began, in microseconds since the Unix epoch by this node's clock (what
    /// PostgreSQL's `now()` answers throughout a transaction).
    pub fn began_micros(&self) -> u64 {
        self.began
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
        let rows = match &read {
            ShardRead::Validate { .. } | ShardRead::Unsettled { .. } => {
                return Err(Error::InvalidInput("not a read of rows".into()))
            }
            ShardRead::Scan { start, end, reverse, limit } => {
                self.scan(shard, ts, Span::new(start.clone(), end.clone()), *reverse, *limit).await?
            }
            point => {
                let rows = self.read_at(shard, point.clone(), ts).await?;
                merge_points(&self.state().writes, shard, point, rows)?
            }
        };
        self.state().reads.entry(shard).or_default().extend(covered(&read, &rows));
        Ok(rows)
    }

    /// One read of `shard` at `ts` as it stands, waiting out other transactions' locks.
    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        let client = self.coordinator.client.clone();
        until_unlocked(client.as_ref(), shard, || client.read_at(shard, read.clone(), ts)).await
    }

    /// A scan of `span` with the transaction's own writes applied: the shard's rows a page at a
    /// time, each page merged with the own writes among the keys it covers, until `limit` rows
    /// (own deletions can hide a page's rows, so it may take more than one page).
    async fn scan(
        &self,
        shard: ShardId,
        ts: Ts,
        mut span: Span,
        reverse: bool,
        limit: Option<u64>,
    ) -> Result<Vec<Row>> {
        let page =
            |span: &Span, limit| ShardRead::Scan { start: span.start.clone(), end: span.end.clone(), limit, reverse };
        if !self.state().writes.has_shard(shard) {
            return self.read_at(shard, page(&span, limit), ts).await;
        }
        let want = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut out = Vec::new();
        loop {
            let ask = limit.map(|_| (want - out.len()) as u64);
            let rows = self.read_at(shard, page(&span, ask), ts).await?;
            // The keys the page covers: up to its last row if it stopped at its limit.
            let last = rows.last().filter(|_| ask.is_some_and(|a| rows.len() as u64 == a)).map(|r| r.key.clone());
            let covers = match (&last, reverse) {
                (None, _) => span.clone(),
                (Some(last), false) => Span::new(span.start.clone(), Span::point(last).end),
                (Some(last), true) => Span::new(last.clone(), span.end.clone()),
            };
            let merged = merge_scan(&self.state().writes, shard, &covers, reverse, rows, want - out.len())?;
            out.extend(merged);
            if out.len() >= want || last.is_none() {
                return Ok(out);
            }
            span = match reverse {
                false => Span::new(covers.end, span.end),
                true => Span::new(span.start, covers.start),
            };
        }
    }

    /// Buffers a write of `key` on `shard`: its new value, or `None` to delete it.
    pub fn write(&self, shard: ShardId, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.state().writes.put(shard, key, Entry { value, insert: false });
    }

    /// Buffers an insert of `key` on `shard`: the commit fails with `Error::DuplicateKey` if
    /// the key holds a row then, or if the transaction wrote a value to it before. What an
    /// INSERT that read nothing does instead of reading first (it is its own transaction: the
    /// duplicate is reported by its commit).
    pub fn insert(&self, shard: ShardId, key: Vec<u8>, value: Vec<u8>) {
        self.state().writes.put(shard, key, Entry { value: Some(value), insert: true });
    }

    /// Has the commit insert `key` on `shard` (failing as a duplicate if it holds a row by
    /// then) with the transaction's writes; no savepoint rolls it back. A transaction's status
    /// row (`crate::status`); a second call replaces the first.
    pub fn insert_at_commit(&self, shard: ShardId, key: Vec<u8>, value: Vec<u8>) {
        self.state().at_commit = Some((shard, key, value));
    }

    /// Records that the transaction wrote with version `version` of the definition of
    /// `object` (a table): whoever commits it checks that the definition has not moved on too
    /// far meanwhile (the SQL layer's schema check). Savepoints do not undo it.
    pub fn uses(&self, object: u32, version: u64) {
        let mut state = self.state();
        let oldest = state.uses.entry(object).or_insert(version);
        *oldest = (*oldest).min(version);
    }

    /// The definitions recorded by [`Txn::uses`]: (object, oldest version).
    pub fn used(&self) -> Vec<(u32, u64)> {
        self.state().uses.iter().map(|(o, v)| (*o, *v)).collect()
    }

    pub fn is_read_only(&self) -> bool {
        let state = self.state();
        state.writes.is_empty() && state.at_commit.is_none()
    }

    /// Whether the transaction read anything yet.
    pub fn has_read(&self) -> bool {
        !self.state().reads.is_empty()
    }

    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.state().writes.mark())
    }

    /// Undoes the writes buffered since `savepoint` (its reads stay: they happened).
    pub fn rollback_to(&self, savepoint: &Savepoint) {
        self.state().writes.rollback_to(&savepoint.0);
    }

    /// Commits what was buffered (and forgets it): `Ok(Some(commit timestamp))`, `Ok(None)`
    /// for a read-only transaction. `Error::TxnConflict` / `Error::TxnAborted` mean nothing
    /// applied; `Error::Unknown` that the commit point's reply was lost;
    /// `Error::DuplicateKey` that a key it inserted holds a row.
    pub async fn commit(&self) -> Result<Option<Ts>> {
        let State { mut writes, reads, at_commit, .. } =
            std::mem::replace(&mut *self.state(), State::new(self.coordinator.spill));
        let Some((shard, key, value)) = at_commit else { return self.commit_writes(writes, reads).await };
        writes.put(shard, key.clone(), Entry { value: Some(value), insert: true });
        match self.commit_writes(writes, reads).await {
            // Someone asked how this transaction ended before it did, and so aborted it.
            Err(Error::DuplicateKey { key: taken }) if taken == key => Err(Error::TxnAborted(format!(
                "transaction {} was aborted: its status was asked for before it committed",
                self.id
            ))),
            other => other,
        }
    }

    async fn commit_writes(&self, writes: Buffer, mut reads: Reads) -> Result<Option<Ts>> {
        if writes.is_empty() {
            return Ok(None);
        }
        if let Some(key) = writes.duplicate() {
            return Err(Error::DuplicateKey { key: key.to_vec() });
        }
        let read_ts = self.read_ts.get().copied().unwrap_or(Ts::MIN);
        let shards: Vec<ShardId> = writes.shards().collect();
        let one_shard = shards.len() == 1 && reads.keys().all(|s| writes.has_shard(*s));
        let fits = || {
            let written = writes.total();
            let read: usize = reads.values().flatten().map(span_size).sum();
            let items = written.items + reads.values().map(Vec::len).sum::<usize>();
            written.bytes + read <= self.coordinator.chunk && items <= CHUNK_ITEMS
        };
        if one_shard && fits() {
            let shard = shards[0];
            let op = TxnOp::Commit {
                txn: self.id,
                read_ts,
                reads: reads.remove(&shard).unwrap_or_default(),
                writes: to_writes(writes.range(shard, &[], &[], true)).collect::<Result<_>>()?,
            };
            let client = self.coordinator.client.clone();
            let outcome = until_unlocked(client.as_ref(), shard, || client.txn(shard, op.clone())).await?;
            return Ok(Some(Ts(outcome.version)));
        }
        Commit { txn: self, writes: &writes, reads: &reads, read_ts }.two_phase().await.map(Some)
    }
}

/// A two-phase commit in progress.
struct Commit<'a> {
    txn: &'a Txn,
    writes: &'a Buffer,
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
        let anchor = self.writes.shards().next().expect("writes");
        let anchor_key = match self.writes.range(anchor, &[], &[], false).next() {
            Some(first) => first?.0,
            None => return Err(Error::Internal(format!("transaction {id} has no write on its anchor"))),
        };
        let meta = TxnMeta { id, anchor, anchor_key };
        let prepares = self.writes.shards().map(|shard| {
            let meta = &meta;
            async move { (shard, self.prepare_chunks(shard, meta, shard == anchor).await) }
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
            span_chunks(spans, self.chunk()).into_iter().map(move |spans| {
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

    /// Prepares `shard`: its writes (streamed from the buffer) and reads in chunks, one
    /// command after another (at least one, so the anchor's record exists). Returns the
    /// lowest and the highest prepare stamp.
    async fn prepare_chunks(&self, shard: ShardId, meta: &TxnMeta, anchor: bool) -> Result<(Ts, Ts)> {
        let size = |w: &TxnWrite| write_size(&w.key, &w.value);
        let mut writes = Chunks::new(to_writes(self.writes.range(shard, &[], &[], true)), self.chunk(), size);
        let mut reads = span_chunks(self.reads.get(&shard).map_or(&[], Vec::as_slice), self.chunk()).into_iter();
        let (mut lowest, mut highest) = (Ts::MAX, Ts::MIN);
        loop {
            let (writes, reads) = (writes.next().transpose()?, reads.next());
            if writes.is_none() && reads.is_none() && lowest != Ts::MAX {
                return Ok((lowest, highest));
            }
            let op = TxnOp::Prepare {
                txn: meta.clone(),
                anchor,
                read_ts: self.read_ts,
                reads: reads.unwrap_or_default(),
                writes: writes.unwrap_or_default(),
            };
            let stamp = self.prepare(shard, op).await?;
            (lowest, highest) = (lowest.min(stamp), highest.max(stamp));
        }
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
        let resolves = self.writes.shards().map(|shard| async move {
            let skip = usize::from(shard == meta.anchor);
            for keys in self.key_chunks(shard).skip(skip) {
                self.client().txn(shard, TxnOp::Resolve { txn: self.txn.id, commit, keys: keys? }).await?;
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

    /// The keys `shard` holds locks on, in chunks, streamed from the buffer.
    fn key_chunks(&self, shard: ShardId) -> impl Iterator<Item = Result<Vec<Vec<u8>>>> + Send + '_ {
        let keys = self.writes.range(shard, &[], &[], false).map(|w| w.map(|(key, _)| key));
        Chunks::new(keys, self.chunk(), |k: &Vec<u8>| k.len() + 8)
    }

    /// The anchor's keys that `End` resolves: the first chunk (the rest are resolved after).
    /// Empty if the buffer cannot be read: the locks are then left to the pushers.
    fn anchor_keys(&self, anchor: ShardId) -> Vec<Vec<u8>> {
        match self.key_chunks(anchor).next() {
            Some(Ok(keys)) => keys,
            Some(Err(e)) => {
                tracing::warn!(txn = %self.txn.id, error = %e, "the anchor's keys could not be read");
                Vec::new()
            }
            None => Vec::new(),
        }
    }
}

/// A stream of items cut into runs of consecutive items of at most `budget` bytes (by `size`)
/// and [`CHUNK_ITEMS`] items each; an item larger than the budget goes alone.
struct Chunks<T, I, F> {
    items: I,
    budget: usize,
    size: F,
    carried: Option<T>,
}

impl<T, I, F> Chunks<T, I, F> {
    fn new(items: I, budget: usize, size: F) -> Self {
        Self { items, budget, size, carried: None }
    }
}

impl<T, I: Iterator<Item = Result<T>>, F: Fn(&T) -> usize> Iterator for Chunks<T, I, F> {
    type Item = Result<Vec<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (mut chunk, mut used) = (Vec::new(), 0);
        loop {
            let item = match self.carried.take() {
                Some(item) => item,
                None => match self.items.next() {
                    Some(Ok(item)) => item,
                    Some(Err(e)) => return Some(Err(e)),
                    None => break,
                },
            };
            let n = (self.size)(&item);
            if !chunk.is_empty() && (used + n > self.budget || chunk.len() >= CHUNK_ITEMS) {
                self.carried = Some(item);
                break;
            }
            used += n;
            chunk.push(item);
        }
        (!chunk.is_empty()).then_some(Ok(chunk))
    }
}

/// `spans` in chunks (see [`Chunks`]).
fn span_chunks(spans: &[Span], budget: usize) -> Vec<Vec<Span>> {
    Chunks::new(spans.iter().cloned().map(Ok), budget, span_size).flatten().collect()
}

/// Bytes a write adds to a command (key, value and framing).
fn write_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + 16
}

fn span_size(span: &Span) -> usize {
    span.start.len() + span.end.len() + 16
}

/// A shard's buffered writes as the commands carry them.
fn to_writes(writes: Merge<'_>) -> impl Iterator<Item = Result<TxnWrite>> + Send + '_ {
    writes.map(|w| w.map(|(key, Entry { value, insert })| TxnWrite { key, value, insert }))
}

/// A row the transaction wrote: version `u64::MAX` (not committed yet).
fn own_row(key: Vec<u8>, value: Vec<u8>) -> Row {
    Row { key, value, version: u64::MAX }
}

/// The rows of a point read (`Get`, `MultiGet`) as read from the shard, with the
/// transaction's own writes applied.
fn merge_points(own: &Buffer, shard: ShardId, read: &ShardRead, rows: Vec<Row>) -> Result<Vec<Row>> {
    if !own.has_shard(shard) {
        return Ok(rows);
    }
    let keys = match read {
        ShardRead::Get { key } => std::slice::from_ref(key),
        ShardRead::MultiGet { keys } => keys.as_slice(),
        _ => return Ok(rows),
    };
    let mut stored: BTreeMap<Vec<u8>, Row> = rows.into_iter().map(|r| (r.key.clone(), r)).collect();
    let mut out = Vec::with_capacity(keys.len());
    for (key, mine) in keys.iter().zip(own.get_many(shard, keys)?) {
        match mine {
            Some(Entry { value: Some(v), .. }) => out.push(own_row(key.clone(), v)),
            Some(Entry { value: None, .. }) => {}
            None => out.extend(stored.remove(key)),
        }
    }
    Ok(out)
}

/// One page of a scan (`rows`, in scan order) merged with the transaction's own writes among
/// the keys it covers (`covers`), at most `max` rows. Reverse scans read those own writes
/// whole first (forward ones stream them).
fn merge_scan(
    own: &Buffer,
    shard: ShardId,
    covers: &Span,
    reverse: bool,
    rows: Vec<Row>,
    max: usize,
) -> Result<Vec<Row>> {
    let mut mine: Box<dyn Iterator<Item = Result<(Vec<u8>, Entry)>> + '_> = if reverse {
        let all: Vec<_> = own.range(shard, &covers.start, &covers.end, false).collect::<Result<_>>()?;
        Box::new(all.into_iter().rev().map(Ok))
    } else {
        Box::new(own.range(shard, &covers.start, &covers.end, false))
    };
    let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
    let mut rows = rows.into_iter().peekable();
    let mut next_mine = mine.next().transpose()?;
    let mut out = Vec::new();
    while out.len() < max {
        let row_first = match (&next_mine, rows.peek()) {
            (None, None) => break,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some((key, _)), Some(row)) => before(&row.key, key),
        };
        if row_first {
            out.extend(rows.next());
            continue;
        }
        let (key, entry) = next_mine.take().expect("an own write");
        if rows.peek().is_some_and(|r| r.key == key) {
            rows.next();
        }
        if let Some(value) = entry.value {
            out.push(own_row(key, value));
        }
        next_mine = mine.next().transpose()?;
    }
    Ok(out)
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
        ShardRead::Validate { .. } | ShardRead::Unsettled { .. } => Vec::new(),
    }
}
