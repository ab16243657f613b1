//! Transaction commands: what a transaction coordinator (`raftable-txn`) asks a table shard to
//! do, replicated as [`crate::ShardCommand::Txn`] and applied by `storage::txn` on every
//! replica (docs/transactions.md, "Commit").
//!
//! A transaction buffers its writes on its gateway and reads at one snapshot (`read_ts`). At
//! commit, if everything it read and wrote lies on one shard, one [`TxnOp::Commit`] validates
//! its reads and writes at a leader-chosen timestamp (1PC). Otherwise it locks its writes with
//! [`TxnOp::Prepare`] on every shard it writes (the first one, the anchor, also creates the
//! transaction record), validates its reads on the other shards ([`crate::ShardRead::Validate`]
//! at the commit timestamp), decides with [`TxnOp::End`] on the anchor (the commit point), then
//! turns its locks into versions with [`TxnOp::Resolve`] and drops the record with
//! [`TxnOp::Forget`].

use serde::{Deserialize, Serialize};

use crate::{ShardId, Ts};

/// A transaction's id, unique in the cluster: the gateway node's id in the high 64 bits, a
/// per-node sequence in the low ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnId(pub u128);

impl TxnId {
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What every lock of a transaction names: the transaction and where its record lives (the
/// first key it writes, on the anchor shard).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxnMeta {
    pub id: TxnId,
    pub anchor: ShardId,
    #[serde(with = "serde_bytes")]
    pub anchor_key: Vec<u8>,
}

/// A key range `[start, end)` (an empty `end`: to the end of the shard) a transaction read
/// ([`Span::point`] for one key). Validation checks nothing was written in it since the read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    #[serde(with = "serde_bytes")]
    pub start: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub end: Vec<u8>,
}

impl Span {
    pub fn new(start: Vec<u8>, end: Vec<u8>) -> Self {
        Self { start, end }
    }

    /// The span of exactly one key: `[key, key ‖ 0xff × 9)`. Table keys are prefix-free, so
    /// no other key lies in it, and storage's versioned keys of `key` (`key ‖ 8 bytes`) do.
    pub fn point(key: &[u8]) -> Self {
        let mut end = Vec::with_capacity(key.len() + 9);
        end.extend_from_slice(key);
        end.extend_from_slice(&[0xff; 9]);
        Self { start: key.to_vec(), end }
    }

    /// Whether `key` lies in the span (an empty `end`: unbounded).
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// One buffered write: the key's new value, or its deletion. An `insert` requires the key to
/// hold no row when the command applies (else it fails with `Error::DuplicateKey`): how an
/// INSERT that read nothing checks for duplicates without reading first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnWrite {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    pub insert: bool,
}

impl TxnWrite {
    pub fn put(key: Vec<u8>, value: Vec<u8>) -> Self {
        Self { key, value: Some(value), insert: false }
    }

    pub fn delete(key: Vec<u8>) -> Self {
        Self { key, value: None, insert: false }
    }

    /// A put that requires the key to hold no row.
    pub fn insert(key: Vec<u8>, value: Vec<u8>) -> Self {
        Self { key, value: Some(value), insert: true }
    }
}

/// Most locks one `TxnOp::ResolveAll` resolves (its apply stays short; the one who sent it
/// sends it again while it finds as many).
pub const RESOLVE_ALL_MAX: usize = 4096;

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Committed at this timestamp: its writes become versions at it.
    Commit(Ts),
    Abort,
}

/// A transaction command for one table shard. Each is stamped by the shard's leader like any
/// table write (`ShardCommand::Txn { ts, op }`) and applied deterministically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// One-phase commit: fails with `Error::TxnConflict` if any span in `reads` holds a version
    /// newer than `read_ts`, with `Error::Locked` if a read span or a written key holds another
    /// transaction's lock; else writes every write as a version at the stamp (or just above
    /// the newest version of the keys, if that is higher). The outcome's version is the commit
    /// timestamp. Applied at most once: it leaves a record (`TxnStatus::Applied`, at the first
    /// written key), and sent again (a lost reply, a retry at a new leader) it answers with the
    /// first application's timestamp and changes nothing.
    Commit { txn: TxnId, read_ts: Ts, reads: Vec<Span>, writes: Vec<TxnWrite> },
    /// Validates like `Commit`, then locks each written key with its value and the stamp. On
    /// the anchor shard (`anchor`) it also creates the transaction record, `Pending`; it fails
    /// with `Error::TxnAborted` if the record says the transaction was aborted. Sent again, it
    /// changes nothing. The outcome's version is the stamp: the transaction commits at or
    /// above it, so a read below it may ignore these locks.
    Prepare { txn: TxnMeta, anchor: bool, read_ts: Ts, reads: Vec<Span>, writes: Vec<TxnWrite> },
    /// The commit point, on the anchor shard: records the decision unless one was recorded
    /// (a pusher may have aborted the transaction; a coordinator may send its decision again),
    /// then resolves the transaction's locks on `keys` of this shard by the recorded decision.
    /// The outcome's version is the commit timestamp if the record says committed, else 0.
    End { txn: TxnMeta, decision: Decision, keys: Vec<Vec<u8>> },
    /// Turns the transaction's locks on `keys` into versions at the commit timestamp, or drops
    /// them (`commit: None`). Keys without a lock of this transaction are skipped.
    Resolve { txn: TxnId, commit: Option<Ts>, keys: Vec<Vec<u8>> },
    /// Resolves like `Resolve` every lock of the transaction on the shard, up to
    /// `RESOLVE_ALL_MAX` of them (the outcome's `changed` counts them): how one who met a lock
    /// of a dead coordinator cleans up after it, knowing the transaction but not its keys.
    ResolveAll { txn: TxnId, commit: Option<Ts> },
    /// Drops the transaction record once every lock is resolved.
    Forget { txn: TxnMeta },
}

impl TxnOp {
    /// The keys the command writes (what the leader latches).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        match self {
            TxnOp::Commit { writes, .. } | TxnOp::Prepare { writes, .. } => {
                writes.iter().map(|w| w.key.clone()).collect()
            }
            TxnOp::End { keys, .. } | TxnOp::Resolve { keys, .. } => keys.clone(),
            // Resolution needs no latch: until it applies its keys are locked, and what it
            // writes lies at the commit timestamp, which reads below the locks never see.
            TxnOp::ResolveAll { .. } => Vec::new(),
            TxnOp::Forget { .. } => Vec::new(),
        }
    }
}

/// Where a transaction stands, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    /// Locks may be in place; no decision yet. `since` is the stamp of the anchor's prepare.
    Pending {
        since: Ts,
    },
    Committed(Ts),
    Aborted,
    /// A one-phase commit (`TxnOp::Commit`) applied at this timestamp: kept so that the same
    /// command sent again is answered, not applied twice, and collected with old row versions
    /// (`ShardCommand::Gc`).
    Applied(Ts),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_span_holds_exactly_its_key() {
        let s = Span::point(b"ab");
        assert!(s.contains(b"ab"));
        assert!(!s.contains(b"a") && !s.contains(b"ac") && !s.contains(b"b"));
        // Every stored version of the key (`key ‖ 8 bytes`) too.
        assert!(s.contains(b"ab\xff\xff\xff\xff\xff\xff\xff\xff") && s.contains(b"ab\0\0\0\0\0\0\0\0"));
    }
}
