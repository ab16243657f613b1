//! Shard commands: what the layers above ask a shard to do. A [`ShardWrite`] goes through Raft
//! (as the payload of a [`ShardCommand`]) and is applied on every replica by `storage` (so its
//! semantics must be deterministic); a [`ShardRead`] is served by the leader after a read-index
//! round.

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Span, Ts, TxnId, TxnOp};

/// The end of the meta group's key range: meta keys start with 0x00, table keys with 0x01 or
/// more.
pub const META_RANGE_END: &[u8] = &[0x01];

/// The end of the keyspace: every key sorts below it (an "unbounded" range ends here, so
/// storage can delete and snapshot such a range as `[start, KEYSPACE_END)`).
pub const KEYSPACE_END: &[u8] = &[0xff; 64];

/// A half-open key range `[start, end)`. An empty `end` means "to the end of the keyspace".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct KeyRange {
    #[serde(with = "serde_bytes")]
    pub start: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub end: Vec<u8>,
}

impl KeyRange {
    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self { start: start.into(), end: end.into() }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && key < self.end_or_max()
    }

    /// The range's end, with an unbounded end given as [`KEYSPACE_END`].
    pub fn end_or_max(&self) -> &[u8] {
        if self.end.is_empty() {
            KEYSPACE_END
        } else {
            &self.end
        }
    }

    /// Whether `[start, end)` (empty end = unbounded) lies inside this range.
    pub fn covers(&self, start: &[u8], end: &[u8]) -> bool {
        start >= self.start.as_slice() && (self.end.is_empty() || (!end.is_empty() && end <= self.end.as_slice()))
    }

    /// Whether the range holds table rows (versioned by commit timestamp), not meta records:
    /// every shard but the meta group's, whose range ends at [`META_RANGE_END`].
    pub fn is_versioned(&self) -> bool {
        self.start.as_slice() >= META_RANGE_END
    }

    /// Whether two ranges share any key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let starts_before_other_ends = other.end.is_empty() || self.start < other.end;
        let other_starts_before_end = self.end.is_empty() || other.start < self.end;
        starts_before_other_ends && other_starts_before_end
    }
}

/// A stored row: its key, its value, and its version, identical on every replica: on a table
/// shard the commit timestamp ([`Ts`]) of the write that made it, on the meta shard the Raft log
/// index of that write. The two are never compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub version: u64,
}

/// A read of one shard. Every key and bound must fall inside the shard's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardRead {
    /// One row, if present.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Several rows; absent keys are skipped. Results come in the order of `keys`.
    MultiGet { keys: Vec<Vec<u8>> },
    /// Rows with `start <= key < end` (empty end: to the shard's end), in key order, or in
    /// reverse key order when `reverse`; at most `limit` rows when set.
    Scan {
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        #[serde(with = "serde_bytes")]
        end: Vec<u8>,
        limit: Option<u64>,
        reverse: bool,
    },
    /// A transaction's read validation (table shards, read at the transaction's commit
    /// timestamp): fails with `Error::TxnConflict` if a span holds a version newer than
    /// `since` (its read timestamp), with `Error::Locked` if it holds a lock of another
    /// transaction than `txn` that a read at the commit timestamp would have to wait for.
    /// Returns no rows; afterwards no write lands in the spans at or below the commit timestamp.
    Validate { txn: TxnId, since: Ts, spans: Vec<Span> },
    /// Whether a table shard still holds what transactions on other shards may need (a shard
    /// about to be dropped waits for none): fails with `Error::Locked` naming a lock if it holds
    /// any, else returns the keys (empty values) of up to `limit` transaction records that are
    /// not one-phase commits' (a record other shards' locks are resolved by).
    Unsettled { limit: u64 },
}

/// What a compare-and-put / compare-and-delete expects the row's current state to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The row does not exist.
    Absent,
    /// The row exists with exactly this value.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The row exists and was last written at this version.
    Version(u64),
}

/// One operation of a [`ShardWrite`] batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Insert or overwrite.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove if present.
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Insert; if the key exists the whole batch fails with [`Error::DuplicateKey`].
    PutIfAbsent {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Insert if absent; if the key exists, leave the row as it is (reported as not changed).
    InsertOrIgnore {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Overwrite if the row matches `expect`, else the batch fails with
    /// [`Error::ConditionFailed`].
    CompareAndPut {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        expect: Expect,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Delete if the row matches `expect`, else the batch fails with [`Error::ConditionFailed`].
    CompareAndDelete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        expect: Expect,
    },
}

impl WriteOp {
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Delete { key }
            | WriteOp::PutIfAbsent { key, .. }
            | WriteOp::InsertOrIgnore { key, .. }
            | WriteOp::CompareAndPut { key, .. }
            | WriteOp::CompareAndDelete { key, .. } => key,
        }
    }
}

/// An atomic batch of writes to one shard: every operation applies, or none does. Operations
/// apply in order, so a later one sees the effect of an earlier one on the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ShardWrite {
    pub ops: Vec<WriteOp>,
}

impl ShardWrite {
    pub fn new(ops: Vec<WriteOp>) -> Self {
        Self { ops }
    }

    /// Checks that every key lies in `range`; a write outside its shard is a routing bug or a
    /// stale shard map, and must not touch a neighbour's rows.
    pub fn check_range(&self, range: &KeyRange) -> Result<()> {
        match self.ops.iter().find(|op| !range.contains(op.key())) {
            Some(op) => Err(Error::InvalidInput(format!(
                "key {:?} outside shard range {:?}..{:?}",
                op.key(),
                range.start,
                range.end
            ))),
            None => Ok(()),
        }
    }
}

/// What a Raft group replicates: the payload of one log entry, applied on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// A write to the meta shard, whose rows are versioned by log index.
    Plain(ShardWrite),
    /// A write to a table shard at commit timestamp `ts`, chosen by the leader. Apply writes
    /// it at `ts`, or above the newest version of any key it writes when one is at or above
    /// `ts` (deterministically: the outcome reports the timestamp used).
    Stamped { ts: Ts, write: ShardWrite },
    /// Garbage collection on a table shard: drop these stored versions (versioned keys, as
    /// `storage::mvcc::garbage` names them), which no read at or above `threshold` can see,
    /// and these records of one-phase commits applied before `threshold` less a margin
    /// (`txns` keys, as `storage::txn::expired` names them).
    Gc { threshold: Ts, versions: Vec<Vec<u8>>, records: Vec<Vec<u8>> },
    /// A transaction command on a table shard, stamped by the leader like `Stamped`.
    Txn { ts: Ts, op: TxnOp },
}

/// The result of an applied [`ShardWrite`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WriteOutcome {
    /// The version given to every row this batch wrote: its commit timestamp on a table shard,
    /// its Raft log index on the meta shard.
    pub version: u64,
    /// Per operation, whether it changed a row (a Delete of an absent key did not).
    pub changed: Vec<bool>,
}

impl WriteOutcome {
    pub fn changed_count(&self) -> usize {
        self.changed.iter().filter(|c| **c).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = KeyRange::new(vec![1], vec![5]);
        assert!(r.contains(&[1]) && r.contains(&[4, 9]) && !r.contains(&[5]) && !r.contains(&[0]));
        let open = KeyRange::new(vec![3], vec![]);
        assert!(open.contains(&[0xff, 0xff]));
        assert!(r.covers(&[2], &[5]) && !r.covers(&[2], &[]) && open.covers(&[4], &[]));
        assert!(r.overlaps(&open) && !r.overlaps(&KeyRange::new(vec![5], vec![])));
        let w = ShardWrite::new(vec![WriteOp::Delete { key: vec![7] }]);
        assert!(w.check_range(&r).is_err() && w.check_range(&open).is_ok());
    }
}
