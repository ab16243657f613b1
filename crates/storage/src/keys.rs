//! Key layout of the Raft column families. Rows in the `data` column family use the shard's own
//! keys (see `raftable_common::KeyRange`); Raft bookkeeping is keyed by group id, big-endian so
//! one group's entries are contiguous and ordered by index.

/// Column family of table rows and meta records, one keyspace shared by all shards on the node.
pub const CF_DATA: &str = "data";
/// Column family of prepared transactions' locks on table keys: row key → lock (`txn`).
pub const CF_LOCKS: &str = "locks";
/// Column family of transaction records on their anchor shard: anchor key ‖ txn id → status.
pub const CF_TXNS: &str = "txns";
/// Column family of Raft log entries: group ‖ index.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Column family of per-group Raft state: group ‖ tag.
pub const CF_RAFT_STATE: &str = "raft_state";

/// Tags of the per-group state keys.
pub const VOTE: u8 = b'v';
pub const COMMITTED: u8 = b'c';
pub const PURGED: u8 = b'p';
pub const APPLIED: u8 = b'a';
pub const MEMBERSHIP: u8 = b'm';
/// The group's current snapshot: its metadata and file name (`snapshot.rs`).
pub const SNAPSHOT: u8 = b's';
/// Present while the current snapshot is being installed: after a crash, the install is redone.
pub const INSTALLING: u8 = b'i';
pub const RANGE: u8 = b'r';
/// Table shards: the garbage-collection threshold (a `Ts`, bincode).
pub const GC_THRESHOLD: u8 = b'g';

/// Node-level tag of the on-disk format stamp, and this build's format.
pub const FORMAT: u8 = b'F';
pub const FORMAT_VERSION: u8 = 5;

/// A pseudo group for node-level records (identity, address book), never a Raft group.
pub const NODE_GROUP: u64 = u64::MAX;

pub fn log_key(group: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

pub fn state_key(group: u64, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = tag;
    k
}

/// Parses a state key back into (group, tag).
pub fn parse_state_key(key: &[u8]) -> Option<(u64, u8)> {
    if key.len() != 9 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    Some((u64::from_be_bytes(b), key[8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_order_by_group_then_index() {
        assert!(log_key(1, u64::MAX) < log_key(2, 0));
        assert!(log_key(1, 255) < log_key(1, 256));
        assert_eq!(parse_state_key(&state_key(9, VOTE)), Some((9, VOTE)));
    }
}
