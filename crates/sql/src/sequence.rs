//! Sequences at run time: the values `nextval` hands out, cluster-wide unique, and the
//! session's `currval` / `lastval`. (Their definitions are catalog rows, `catalog::Catalog`;
//! the SQL functions over this module are `plan::functions`.)
//!
//! A sequence's next value lives in one counter row of the meta group (`0x00 'v' id`). A node
//! takes [`NODE_CACHE`] values at a time (or the sequence's `CACHE`, if larger) with one
//! compare-and-put of that row, and hands them out to its sessions from memory: values are
//! unique across the cluster and increase on each node, and a node that stops loses what it
//! had left (gaps, as PostgreSQL leaves after a crash or a rollback). Nothing here is
//! transactional: a rolled back transaction does not give its values back, as in PostgreSQL.
//! `setval` writes the row and drops this node's cached values; other nodes use up theirs
//! first, as sessions with a `CACHE` do in PostgreSQL.

use std::collections::HashMap;
use std::sync::Mutex;

use raftable_common::{Error, Expect, Result, ShardRead, ShardWrite, WriteOp, META_SHARD};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::table::SequenceDef;

/// How many values a node takes from a sequence's counter at a time (PostgreSQL logs as many
/// ahead, so a crash skips up to as many).
pub(crate) const NODE_CACHE: i64 = 32;

/// The counter row: the next value to hand out, or none left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Counter {
    next: i64,
    /// Every value up to the bound was handed out (`next` is the last).
    done: bool,
    /// `next` was set, not reached (the start, `setval(.., false)`, `RESTART`): it is the next
    /// value whatever the increment (PostgreSQL's `is_called` false).
    #[serde(default)]
    set: bool,
}

impl Counter {
    /// A counter set to `next`.
    fn set(next: i64) -> Counter {
        Counter { next, done: false, set: true }
    }
}

fn counter_key(id: u32) -> Vec<u8> {
    let mut k = vec![0x00, b'v'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Values a node took from a counter and has not handed out yet: `next`, then `left - 1` more
/// `increment` apart (the increment they were taken with: an ALTER SEQUENCE since does not move
/// them off the values the counter reserved).
#[derive(Debug, Clone, Copy)]
struct Taken {
    next: i64,
    left: i64,
    increment: i64,
}

impl Taken {
    /// The last value of the range.
    fn last(&self) -> i64 {
        self.next + (self.left - 1) * self.increment
    }
}

/// The node's sequence values: shared by every session of the node.
#[derive(Default)]
pub(crate) struct Sequences {
    cached: Mutex<HashMap<u32, Taken>>,
}

impl Sequences {
    /// The sequence's next value.
    pub(crate) async fn nextval(&self, cluster: &dyn Cluster, def: &SequenceDef) -> Result<i64> {
        if let Some(v) = self.take_cached(def) {
            return Ok(v);
        }
        let want = def.cache.max(NODE_CACHE);
        let (first, count) = take(cluster, def, want).await?;
        if count > 1 {
            let rest = Taken { next: first + def.increment, left: count - 1, increment: def.increment };
            self.cached.lock().expect("sequence cache").insert(def.id, rest);
        }
        Ok(first)
    }

    fn take_cached(&self, def: &SequenceDef) -> Option<i64> {
        let mut cached = self.cached.lock().expect("sequence cache");
        let taken = cached.get_mut(&def.id)?;
        let v = taken.next;
        taken.left -= 1;
        if taken.left == 0 {
            cached.remove(&def.id);
        } else {
            // Within the bounds: the counter handed out the whole range.
            taken.next += taken.increment;
        }
        Some(v)
    }

    /// `setval(seq, value, is_called)`: the next `nextval` gives `value` (not called) or the
    /// value after it.
    pub(crate) async fn setval(
        &self,
        cluster: &dyn Cluster,
        def: &SequenceDef,
        value: i64,
        is_called: bool,
    ) -> Result<()> {
        if value < def.min || value > def.max {
            return Err(Error::OutOfRange(format!(
                "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                def.name, def.min, def.max
            )));
        }
        let counter = if is_called { after(def, value) } else { Counter::set(value) };
        let value = serde_json::to_vec(&counter).map_err(Error::internal)?;
        let op = WriteOp::Put { key: counter_key(def.id), value };
        self.cached.lock().expect("sequence cache").remove(&def.id);
        cluster.write(META_SHARD, ShardWrite::new(vec![op])).await?;
        self.cached.lock().expect("sequence cache").remove(&def.id);
        Ok(())
    }

    /// After ALTER SEQUENCE changed `old` into `new`: `RESTART` sets the counter to `restart`
    /// (the next `nextval` gives it); otherwise the next value is the last one handed out plus
    /// the new increment, as in PostgreSQL. The last one handed out is known when this node's
    /// unused values are the last the counter reserved (a session on this node was the last to
    /// call `nextval`; they are given back); else it is the last value reserved (other nodes
    /// hand out what they hold first, as other sessions' cached values in PostgreSQL). A
    /// sequence never called keeps its start (`START` only changes what `RESTART` goes back to).
    pub(crate) async fn alter(
        &self,
        cluster: &dyn Cluster,
        old: &SequenceDef,
        new: &SequenceDef,
        restart: Option<i64>,
    ) -> Result<()> {
        let key = counter_key(old.id);
        let cached = self.cached.lock().expect("sequence cache").remove(&old.id);
        loop {
            let rows = cluster.read(META_SHARD, ShardRead::Get { key: key.clone() }).await?;
            let (stored, expect) = match rows.first() {
                Some(row) => (Some(decode(&row.value)?), Expect::Version(row.version)),
                None => (None, Expect::Absent),
            };
            let counter = match (restart, stored) {
                (Some(value), _) => Counter::set(value),
                (None, None) => Counter::set(old.start),
                (None, Some(counter)) if counter.set => counter,
                (None, Some(counter)) => {
                    let last = match cached {
                        // Ours were the last reserved: the value before them was handed out last.
                        Some(t) if after(old, t.last()) == counter => t.next - t.increment,
                        _ if counter.done => counter.next,
                        _ => counter.next.saturating_sub(old.increment),
                    };
                    after(new, last)
                }
            };
            let value = serde_json::to_vec(&counter).map_err(Error::internal)?;
            let op = WriteOp::CompareAndPut { key: key.clone(), expect, value };
            match cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
                Ok(_) => return Ok(()),
                // Another node took values meanwhile (ours, if any, are no longer the last).
                Err(Error::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes a dropped sequence's counter.
    pub(crate) async fn drop_counter(&self, cluster: &dyn Cluster, def: &SequenceDef) -> Result<()> {
        self.cached.lock().expect("sequence cache").remove(&def.id);
        let op = WriteOp::Delete { key: counter_key(def.id) };
        cluster.write(META_SHARD, ShardWrite::new(vec![op])).await.map(|_| ())
    }
}

/// The counter after `value` was handed out.
fn after(def: &SequenceDef, value: i64) -> Counter {
    match value.checked_add(def.increment).filter(|n| (def.min..=def.max).contains(n)) {
        Some(next) => Counter { next, done: false, set: false },
        None => Counter { next: value, done: true, set: false },
    }
}

fn decode(value: &[u8]) -> Result<Counter> {
    serde_json::from_slice(value).map_err(|e| Error::InvalidData(format!("sequence counter: {e}")))
}

/// Takes up to `want` values from the sequence's counter: the first, and how many.
async fn take(cluster: &dyn Cluster, def: &SequenceDef, want: i64) -> Result<(i64, i64)> {
    let key = counter_key(def.id);
    loop {
        let rows = cluster.read(META_SHARD, ShardRead::Get { key: key.clone() }).await?;
        let (counter, expect) = match rows.first() {
            Some(row) => (decode(&row.value)?, Expect::Version(row.version)),
            None => (Counter::set(def.start), Expect::Absent),
        };
        let (first, count, rest) = range(def, counter, want)?;
        let value = serde_json::to_vec(&rest).map_err(Error::internal)?;
        let op = WriteOp::CompareAndPut { key: key.clone(), expect, value };
        match cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
            Ok(_) => return Ok((first, count)),
            // Another node took values meanwhile: read again.
            Err(Error::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The values a counter gives for `want`: the first, how many (at least one), and the counter
/// after them. A used-up counter starts over at its bound if the sequence cycles.
fn range(def: &SequenceDef, counter: Counter, want: i64) -> Result<(i64, i64, Counter)> {
    let ascending = def.increment > 0;
    let first = if !counter.done {
        counter.next
    } else if def.cycle {
        if ascending {
            def.min
        } else {
            def.max
        }
    } else {
        let (which, bound) = if ascending { ("maximum", def.max) } else { ("minimum", def.min) };
        return Err(Error::SequenceLimit(format!(
            "nextval: reached {which} value of sequence \"{}\" ({bound})",
            def.name
        )));
    };
    // How many steps fit between `first` and the bound (i128: no overflow).
    let room = if ascending {
        (i128::from(def.max) - i128::from(first)) / i128::from(def.increment)
    } else {
        (i128::from(def.min) - i128::from(first)) / i128::from(def.increment)
    };
    let count = (room + 1).clamp(1, i128::from(want.max(1))) as i64;
    let last = first + (count - 1) * def.increment;
    Ok((first, count, after(def, last)))
}

/// A session's sequence state: the last value `nextval` gave it for each sequence
/// (`currval`) and overall (`lastval`).
#[derive(Default, Debug)]
pub(crate) struct SessionValues {
    inner: Mutex<SessionInner>,
}

#[derive(Default, Debug)]
struct SessionInner {
    by_sequence: HashMap<u32, i64>,
    last: Option<(u32, String, i64)>,
}

impl SessionValues {
    pub(crate) fn record(&self, def: &SequenceDef, value: i64) {
        let mut inner = self.inner.lock().expect("session sequences");
        inner.by_sequence.insert(def.id, value);
        inner.last = Some((def.id, def.name.clone(), value));
    }

    pub(crate) fn currval(&self, def: &SequenceDef) -> Result<i64> {
        let inner = self.inner.lock().expect("session sequences");
        inner.by_sequence.get(&def.id).copied().ok_or_else(|| {
            Error::ObjectNotInPrerequisiteState(format!(
                "currval of sequence \"{}\" is not yet defined in this session",
                def.name
            ))
        })
    }

    /// `lastval()`: the session's last `nextval` value, if that sequence still exists
    /// (`exists` checks).
    pub(crate) fn lastval(&self, exists: impl Fn(&str, u32) -> bool) -> Result<i64> {
        let inner = self.inner.lock().expect("session sequences");
        match &inner.last {
            None => Err(Error::ObjectNotInPrerequisiteState("lastval is not yet defined in this session".into())),
            Some((id, name, v)) if exists(name, *id) => Ok(*v),
            Some(_) => Err(Error::ObjectNotInPrerequisiteState("lastval is not yet defined in this session".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SqlType;

    fn seq(increment: i64, min: i64, max: i64, cycle: bool) -> SequenceDef {
        let start = if increment > 0 { min } else { max };
        SequenceDef {
            id: 1,
            name: "s".into(),
            ty: SqlType::BigInt,
            start,
            increment,
            min,
            max,
            cache: 1,
            cycle,
            owned_by: None,
        }
    }

    #[test]
    fn ranges_stop_at_the_bound_then_cycle_or_fail() {
        let s = seq(3, 1, 10, false);
        let (first, count, rest) = range(&s, Counter { next: 1, done: false, set: false }, 32).unwrap();
        assert_eq!((first, count), (1, 4)); // 1, 4, 7, 10
        assert!(rest.done);
        let e = range(&s, rest, 32).unwrap_err();
        assert!(matches!(e, Error::SequenceLimit(m) if m.contains("maximum value of sequence \"s\" (10)")));
        let cycling = seq(3, 1, 10, true);
        assert_eq!(range(&cycling, rest, 2).unwrap().0, 1);
        // A range smaller than the room left ends where asked.
        let (first, count, rest) = range(&s, Counter { next: 1, done: false, set: false }, 2).unwrap();
        assert_eq!((first, count, rest), (1, 2, Counter { next: 7, done: false, set: false }));
    }

    #[test]
    fn descending_and_extreme_ranges_do_not_overflow() {
        let down = seq(-1, -5, -1, false);
        let (first, count, rest) = range(&down, Counter { next: -1, done: false, set: false }, 32).unwrap();
        assert_eq!((first, count), (-1, 5));
        assert!(rest.done);
        let wide = seq(i64::MAX, i64::MIN + 1, i64::MAX, false);
        let (first, count, rest) = range(&wide, Counter { next: 0, done: false, set: false }, 32).unwrap();
        assert_eq!((first, count), (0, 2)); // 0 and i64::MAX
        assert!(rest.done);
    }

    #[test]
    fn setval_counters_respect_is_called() {
        let s = seq(1, 1, 100, false);
        assert_eq!(after(&s, 41), Counter { next: 42, done: false, set: false });
        assert!(after(&s, 100).done);
    }
}
