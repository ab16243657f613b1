//! Identifier types. Plain integers, named so signatures say which id they take.

/// A raftable node (one process, one RocksDB). Assigned by the operator (`--node-id`), never 0.
pub type NodeId = u64;

/// A shard: one key range replicated by one Raft group. The shard id is also the Raft group id.
pub type ShardId = u64;

/// The meta group (node registry, shard map, id allocators) is the shard with id 0. Its key range
/// is `[0x00, META_RANGE_END)`, below every table's keys.
pub const META_SHARD: ShardId = 0;
