//! The meta group's records, stored as rows of shard 0 (keys under 0x00) and changed only
//! through ordinary shard writes with compare-and-put, so any node can update them safely.
//!
//! Keys: `0x00 'n' node-id` → [`NodeRecord`], `0x00 's' shard-id` → [`ShardRecord`],
//! `0x00 'c' name` → an id counter, `0x00 'c' "tso"` → the timestamp oracle's limit,
//! `0x00 'd' shard-id` / `0x00 'D' shard-id` → the id of a shard being dropped / dropped.

use std::collections::BTreeMap;

use raftable_common::{
    Error, Expect, KeyRange, NodeId, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, WriteOp, META_RANGE_END,
    META_SHARD,
};
use serde::{Deserialize, Serialize};

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub rpc_addr: String,
    pub pg_addr: String,
    /// Wall-clock time (ms since the epoch) of the node's last heartbeat write.
    pub heartbeat_ms: u64,
}

/// A shard in the shard map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub id: ShardId,
    pub range: KeyRange,
    /// The replicas the shard should have; its leader changes the Raft membership to match.
    pub replicas: Vec<NodeId>,
    /// The voters the group was bootstrapped with; `initial[0]` bootstraps it.
    pub initial: Vec<NodeId>,
    /// Bumped on every change of the record.
    pub epoch: u64,
}

/// Dropped shards (a dropped table's or index's) go in two steps. The SQL layer marks one
/// ([`mark_dropped`]: `0x00 'd' id`) once nothing writes it and no lock is left in it; the
/// meta leader releases it ([`release`]) once no transaction record another shard's locks may
/// be resolved by is left in it either: its record and mark go, and a tombstone (`0x00 'D'
/// id`, kept forever) tells every node, one that was down at the time too, to delete its
/// replica.
const DROPPING: u8 = b'd';
const RELEASED: u8 = b'D';

/// How long a node may go without a heartbeat and still count as alive.
pub const ALIVE_WINDOW_MS: u64 = 5_000;

impl NodeRecord {
    pub fn alive(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms) <= ALIVE_WINDOW_MS
    }
}

pub(crate) fn meta_range() -> KeyRange {
    KeyRange::new(vec![0x00], META_RANGE_END.to_vec())
}

fn key(kind: u8, id: &[u8]) -> Vec<u8> {
    let mut k = vec![0x00, kind];
    k.extend_from_slice(id);
    k
}

fn node_key(id: NodeId) -> Vec<u8> {
    key(b'n', &id.to_be_bytes())
}

fn shard_key(id: ShardId) -> Vec<u8> {
    key(b's', &id.to_be_bytes())
}

fn counter_key(name: &str) -> Vec<u8> {
    key(b'c', name.as_bytes())
}

/// The key of the timestamp oracle's persisted limit (`crate::tso`).
pub(crate) fn tso_key() -> Vec<u8> {
    counter_key("tso")
}

/// All rows of one record kind, decoded, with their versions.
async fn scan<T: for<'de> Deserialize<'de>>(client: &dyn ShardClient, kind: u8) -> Result<Vec<(T, u64)>> {
    let read = ShardRead::Scan { start: key(kind, &[]), end: key(kind + 1, &[]), limit: None, reverse: false };
    let rows = client.read(META_SHARD, read).await?;
    rows.iter().map(|r| Ok((bincode::deserialize(&r.value)?, r.version))).collect()
}

pub async fn nodes(client: &dyn ShardClient) -> Result<Vec<NodeRecord>> {
    Ok(scan(client, b'n').await?.into_iter().map(|(n, _)| n).collect())
}

pub async fn shards(client: &dyn ShardClient) -> Result<Vec<(ShardRecord, u64)>> {
    scan(client, b's').await
}

/// The shards marked dropped and not released yet.
pub async fn dropping(client: &dyn ShardClient) -> Result<Vec<ShardId>> {
    Ok(scan(client, DROPPING).await?.into_iter().map(|(id, _)| id).collect())
}

/// The shards released: their replicas are to be deleted.
pub async fn released(client: &dyn ShardClient) -> Result<Vec<ShardId>> {
    Ok(scan(client, RELEASED).await?.into_iter().map(|(id, _)| id).collect())
}

/// Marks `ids` dropped (idempotent). Their records stay until the meta leader releases them.
pub async fn mark_dropped(client: &dyn ShardClient, ids: &[ShardId]) -> Result<()> {
    if ids.contains(&META_SHARD) {
        return Err(Error::InvalidInput("the meta group cannot be dropped".into()));
    }
    let mut ops = Vec::with_capacity(ids.len());
    for &id in ids {
        ops.push(WriteOp::Put { key: key(DROPPING, &id.to_be_bytes()), value: bincode::serialize(&id)? });
    }
    if ops.is_empty() {
        return Ok(());
    }
    client.write(META_SHARD, ShardWrite::new(ops)).await.map(|_| ())
}

/// Releases a dropped shard: its record and mark go and its tombstone comes, in one batch.
pub async fn release(client: &dyn ShardClient, id: ShardId) -> Result<()> {
    let ops = vec![
        WriteOp::Delete { key: shard_key(id) },
        WriteOp::Delete { key: key(DROPPING, &id.to_be_bytes()) },
        WriteOp::Put { key: key(RELEASED, &id.to_be_bytes()), value: bincode::serialize(&id)? },
    ];
    client.write(META_SHARD, ShardWrite::new(ops)).await.map(|_| ())
}

/// Registers or refreshes a node (idempotent: a plain put of the node's own record).
pub async fn put_node(client: &dyn ShardClient, node: &NodeRecord) -> Result<()> {
    let op = WriteOp::Put { key: node_key(node.id), value: bincode::serialize(node)? };
    client.write(META_SHARD, ShardWrite::new(vec![op])).await.map(|_| ())
}

/// Writes the meta group's bootstrap records: itself as shard 0 on `first`.
pub async fn bootstrap(client: &dyn ShardClient, first: NodeId) -> Result<()> {
    let record =
        ShardRecord { id: META_SHARD, range: meta_range(), replicas: vec![first], initial: vec![first], epoch: 1 };
    let ops = vec![
        WriteOp::PutIfAbsent { key: shard_key(META_SHARD), value: bincode::serialize(&record)? },
        WriteOp::PutIfAbsent { key: counter_key("shard"), value: 0u64.to_be_bytes().to_vec() },
    ];
    match client.write(META_SHARD, ShardWrite::new(ops)).await {
        Ok(_) | Err(Error::DuplicateKey { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Allocates the next value of a cluster-wide counter (compare-and-put, retried on a race).
pub async fn next_id(client: &dyn ShardClient, name: &str) -> Result<u64> {
    let key = counter_key(name);
    loop {
        let (current, expect) = read_counter(client, &key).await?;
        let next = current + 1;
        let op = WriteOp::CompareAndPut { key: key.clone(), expect, value: next.to_be_bytes().to_vec() };
        match client.write(META_SHARD, ShardWrite::new(vec![op])).await {
            Ok(_) => return Ok(next),
            Err(Error::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A counter's value and what a compare-and-put must expect to advance it.
async fn read_counter(client: &dyn ShardClient, key: &[u8]) -> Result<(u64, Expect)> {
    match client.read(META_SHARD, ShardRead::Get { key: key.to_vec() }).await?.first() {
        Some(Row { value, version, .. }) => Ok((decode_u64(value)?, Expect::Version(*version))),
        None => Ok((0, Expect::Absent)),
    }
}

/// A counter's value (8 bytes, big-endian).
pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| Error::InvalidData("bad counter".into()))?;
    Ok(u64::from_be_bytes(arr))
}

/// Creates a shard for `range` with replicas placed on `rf` distinct live nodes. Fails when the
/// range overlaps an existing shard.
///
/// Atomic against concurrent creations: every creation advances the shard-id counter with a
/// compare-and-put in the same batch as the new record, so if another shard was created between
/// our overlap check and our write, the counter moved, our batch fails, and we check again.
pub async fn create_shard(client: &dyn ShardClient, range: KeyRange, rf: usize, now_ms: u64) -> Result<ShardRecord> {
    if range.start.as_slice() < META_RANGE_END {
        return Err(Error::InvalidInput("shard ranges must start at or after 0x01".into()));
    }
    if !range.end.is_empty() && range.end <= range.start {
        return Err(Error::InvalidInput("empty shard range".into()));
    }
    let counter = counter_key("shard");
    loop {
        let (last_id, expect) = read_counter(client, &counter).await?;
        let existing = shards(client).await?;
        if let Some((s, _)) = existing.iter().find(|(s, _)| s.range.overlaps(&range)) {
            return Err(Error::InvalidInput(format!("range overlaps shard {}", s.id)));
        }
        let live: Vec<NodeId> = nodes(client).await?.iter().filter(|n| n.alive(now_ms)).map(|n| n.id).collect();
        let records: Vec<ShardRecord> = existing.into_iter().map(|(s, _)| s).collect();
        let replicas = place(&live, &records, &[], rf.min(live.len()));
        if replicas.is_empty() {
            return Err(Error::Retry("no live node to place a shard on".into()));
        }
        let id = last_id + 1;
        let record = ShardRecord { id, range: range.clone(), initial: replicas.clone(), replicas, epoch: 1 };
        let ops = vec![
            WriteOp::CompareAndPut { key: counter.clone(), expect, value: id.to_be_bytes().to_vec() },
            WriteOp::PutIfAbsent { key: shard_key(id), value: bincode::serialize(&record)? },
        ];
        match client.write(META_SHARD, ShardWrite::new(ops)).await {
            Ok(_) => return Ok(record),
            Err(Error::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Replaces a shard record if it is still at `version` (returns false when someone else
/// changed it first).
pub async fn update_shard(client: &dyn ShardClient, record: &ShardRecord, version: u64) -> Result<bool> {
    let op = WriteOp::CompareAndPut {
        key: shard_key(record.id),
        expect: Expect::Version(version),
        value: bincode::serialize(record)?,
    };
    match client.write(META_SHARD, ShardWrite::new(vec![op])).await {
        Ok(_) => Ok(true),
        Err(Error::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Picks `count` nodes for a shard that already has `have`: the candidates holding the fewest
/// replicas, leader-intent (first replica) counts breaking ties when choosing the first, then
/// node id. The first chosen node for a new shard is the one bootstrapping (and so, at first,
/// leading) it, which spreads leaders as evenly as replicas.
pub fn place(live: &[NodeId], shards: &[ShardRecord], have: &[NodeId], count: usize) -> Vec<NodeId> {
    let mut replicas: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    let mut leads: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    for s in shards.iter().filter(|s| s.id != META_SHARD) {
        for r in &s.replicas {
            if let Some(c) = replicas.get_mut(r) {
                *c += 1;
            }
        }
        if let Some(c) = s.replicas.first().and_then(|f| leads.get_mut(f)) {
            *c += 1;
        }
    }
    let mut chosen: Vec<NodeId> = Vec::new();
    while have.len() + chosen.len() < count {
        let first = have.is_empty() && chosen.is_empty();
        let best = live.iter().filter(|n| !have.contains(n) && !chosen.contains(n)).min_by_key(|n| {
            let tie = if first { leads[*n] } else { 0 };
            (replicas[*n], tie, **n)
        });
        match best {
            Some(n) => chosen.push(*n),
            None => break,
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use raftable_storage::{LocalShards, Rocks};

    use super::*;

    /// The meta records on an unreplicated local shard 0, with nodes 1..=n registered.
    async fn local_meta(dir: &std::path::Path, n: u64) -> Arc<LocalShards> {
        let shards = Arc::new(LocalShards::new(Rocks::open(dir).unwrap()));
        shards.add_shard(META_SHARD, meta_range());
        bootstrap(shards.as_ref(), 1).await.unwrap();
        for id in 1..=n {
            let node = NodeRecord { id, rpc_addr: format!("n{id}"), pg_addr: String::new(), heartbeat_ms: 1_000 };
            put_node(shards.as_ref(), &node).await.unwrap();
        }
        shards
    }

    #[tokio::test]
    async fn concurrent_overlapping_creations_admit_one() {
        let dir = tempfile::tempdir().unwrap();
        let meta = local_meta(dir.path(), 3).await;
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let meta = meta.clone();
            // All eight ranges overlap [0x01 0x10, 0x01 0x20).
            let range = KeyRange::new(vec![0x01, 0x10 + i], vec![0x01, 0x20]);
            tasks.push(tokio::spawn(async move { create_shard(meta.as_ref(), range, 3, 1_000).await }));
        }
        let mut created = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(record) => created.push(record),
                Err(Error::InvalidInput(msg)) => assert!(msg.contains("overlaps"), "{msg}"),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(created.len(), 1, "exactly one of the overlapping shards exists");
        let all = shards(meta.as_ref()).await.unwrap();
        assert_eq!(all.len(), 2, "the meta shard and the one created");
        assert_eq!(created[0].replicas.len(), 3);
        // Dead nodes get no replicas; ids keep counting.
        let later =
            create_shard(meta.as_ref(), KeyRange::new(vec![0x02], vec![0x03]), 3, 1_000 + ALIVE_WINDOW_MS + 1).await;
        assert!(matches!(later, Err(Error::Retry(_))));
        assert_eq!(next_id(meta.as_ref(), "shard").await.unwrap(), created[0].id + 1);
    }

    fn shard(id: ShardId, replicas: Vec<NodeId>) -> ShardRecord {
        ShardRecord { id, range: KeyRange::default(), initial: replicas.clone(), replicas, epoch: 1 }
    }

    #[test]
    fn placement_balances_replicas_and_leaders() {
        let live = [1, 2, 3, 4];
        let mut shards = Vec::new();
        for id in 1..=8 {
            let replicas = place(&live, &shards, &[], 3);
            assert_eq!(replicas.len(), 3);
            shards.push(shard(id, replicas));
        }
        let count = |n: NodeId| shards.iter().filter(|s| s.replicas.contains(&n)).count();
        let leads = |n: NodeId| shards.iter().filter(|s| s.replicas[0] == n).count();
        for n in live {
            assert_eq!(count(n), 6, "8 shards x 3 replicas over 4 nodes");
            assert_eq!(leads(n), 2);
        }
        // Growing an existing shard adds only nodes it does not have.
        assert_eq!(place(&live, &shards, &[1, 2], 3).len(), 1);
        assert!(!place(&live, &shards, &[1, 2], 3).iter().any(|n| [1, 2].contains(n)));
        // Fewer live nodes than the factor: as many as there are.
        assert_eq!(place(&[5], &[], &[], 3), vec![5]);
    }
}
