//! Versioned rows (MVCC) for table shards: every write of a key keeps its older versions, each
//! stamped with the commit timestamp ([`Ts`]) of the write, so a read at timestamp `r` sees
//! every key as the newest version at or below `r` left it (a snapshot), and old versions go
//! only when garbage collection drops them. The building block of one-snapshot statements and
//! transactions (docs/transactions.md); pure functions of the database contents, like
//! `shard.rs`, so Raft apply may call them.
//!
//! Layout in the `data` column family: key `user key ‖ (u64::MAX − ts)` big-endian, so a key's
//! versions are adjacent and newest first, and a read at `r` is one seek to `key ‖ !r`. Value:
//! one flags byte ([`TOMBSTONE`] marks a deletion) ‖ the row bytes. User keys must be
//! prefix-free (no key a proper prefix of another, nor of a range bound): then a key's versions
//! never interleave with another key's. Table and index keys are (`sql::encoding` writes
//! fixed-width or escaped, terminated fields); meta records are not, and stay unversioned.

use raftable_common::{Error, Result, Row, Ts};
use rocksdb::WriteBatch;

use crate::keys::CF_DATA;
use crate::rocks::{io, Rocks};

/// Flag of a version that deletes its key.
pub const TOMBSTONE: u8 = 1;

/// Bytes of the timestamp suffix of a versioned key.
const SUFFIX: usize = 8;

/// One version of a key: its value, or `None` for a deletion (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: Vec<u8>,
    pub ts: Ts,
    pub value: Option<Vec<u8>>,
}

/// The stored key of `key`'s version at `ts`.
pub fn version_key(key: &[u8], ts: Ts) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + SUFFIX);
    k.extend_from_slice(key);
    k.extend_from_slice(&(u64::MAX - ts.0).to_be_bytes());
    k
}

/// The user key and timestamp of a stored versioned key.
pub fn split_version_key(raw: &[u8]) -> Result<(&[u8], Ts)> {
    let Some(at) = raw.len().checked_sub(SUFFIX) else {
        return Err(Error::InvalidData(format!("versioned key {raw:?} shorter than its timestamp")));
    };
    let mut suffix = [0u8; SUFFIX];
    suffix.copy_from_slice(&raw[at..]);
    Ok((&raw[..at], Ts(u64::MAX - u64::from_be_bytes(suffix))))
}

fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(v) => {
            let mut raw = Vec::with_capacity(1 + v.len());
            raw.push(0);
            raw.extend_from_slice(v);
            raw
        }
        None => vec![TOMBSTONE],
    }
}

fn decode_value(key: &[u8], raw: &[u8]) -> Result<Option<Vec<u8>>> {
    match raw.split_first() {
        Some((0, value)) => Ok(Some(value.to_vec())),
        Some((&TOMBSTONE, [])) => Ok(None),
        _ => Err(Error::InvalidData(format!("version of {key:?} has a bad value header"))),
    }
}

fn version(raw_key: &[u8], raw_value: &[u8]) -> Result<Version> {
    let (key, ts) = split_version_key(raw_key)?;
    Ok(Version { key: key.to_vec(), ts, value: decode_value(key, raw_value)? })
}

/// The meta shard's layout, one unversioned row per key: the version (u64, big-endian: the
/// log index of the write) ‖ the value bytes.
pub(crate) fn encode_plain(version: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// Decodes a row [`encode_plain`] wrote.
pub(crate) fn decode_plain(key: &[u8], raw: &[u8]) -> Result<Row> {
    if raw.len() < 8 {
        return Err(Error::InvalidData(format!("row {key:?} shorter than its version")));
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&raw[..8]);
    Ok(Row { key: key.to_vec(), value: raw[8..].to_vec(), version: u64::from_be_bytes(v) })
}

/// Adds to `batch` the version of `key` at `ts`: `value`, or a deletion if `None`. A version
/// already at `ts` is replaced.
pub fn put(rocks: &Rocks, batch: &mut WriteBatch, key: &[u8], ts: Ts, value: Option<&[u8]>) {
    batch.put_cf(rocks.cf(CF_DATA), version_key(key, ts), encode_value(value));
}

/// The version of `key` a read at `ts` sees: the newest at or below `ts`, tombstones included
/// (a write checking for conflicts must see a deletion); `None` if the key had no version yet.
pub fn get_at(rocks: &Rocks, key: &[u8], ts: Ts) -> Result<Option<Version>> {
    // Just past the key's oldest possible version.
    let end: Vec<u8> = version_key(key, Ts::MIN).into_iter().chain([0]).collect();
    let from = version_key(key, ts);
    let mut it = rocks.data_raw(&from, &end);
    it.seek(&from);
    match (it.key(), it.value()) {
        (Some(raw_key), Some(raw_value)) => {
            let found = version(raw_key, raw_value)?;
            Ok((found.key == key).then_some(found))
        }
        _ => it.status().map(|()| None).map_err(io),
    }
}

/// The live rows of `[start, end)` (empty `end`: unbounded) as a read at `ts` sees them, in key
/// order (descending if `reverse`), at most `limit`: each key's newest version at or below `ts`,
/// unless that is a deletion. `start` may also be a key followed by more bytes (`key ‖ 0x00`,
/// "just after `key`"): the versions of `key` sort after it but are skipped.
pub fn scan_at(rocks: &Rocks, start: &[u8], end: &[u8], ts: Ts, limit: usize, reverse: bool) -> Result<Vec<Version>> {
    let mut rows = Vec::new();
    // The key being walked (its buffer reused from key to key) and its newest version at or
    // below `ts` met so far. Forward scans meet a key's versions newest first (the first one at
    // or below `ts` is it), reverse scans oldest first (the last one is). A raw iterator lends
    // each entry without copying it: only the versions returned are copied.
    let mut walked: Option<Vec<u8>> = None;
    let mut found: Option<Version> = None;
    let mut it = rocks.data_raw(start, end);
    if reverse {
        it.seek_to_last();
    } else {
        it.seek(start);
    }
    while let (Some(raw_key), Some(raw_value)) = (it.key(), it.value()) {
        let (key, vts) = split_version_key(raw_key)?;
        if key >= start {
            if walked.as_deref() != Some(key) {
                if let Some(v) = found.take().filter(|v| v.value.is_some()) {
                    rows.push(v);
                    if rows.len() >= limit {
                        return Ok(rows);
                    }
                }
                let buffer = walked.get_or_insert_with(Vec::new);
                buffer.clear();
                buffer.extend_from_slice(key);
            }
            if vts <= ts && (reverse || found.is_none()) {
                found = Some(version(raw_key, raw_value)?);
            }
        }
        if reverse {
            it.prev();
        } else {
            it.next();
        }
    }
    it.status().map_err(io)?;
    rows.extend(found.filter(|v| v.value.is_some()));
    Ok(rows)
}

/// The first key in `[start, end)` (empty `end`: unbounded) with a version newer than `since`,
/// and that version's timestamp: what a transaction that read the range at `since` conflicts
/// with.
pub fn newer_than(rocks: &Rocks, start: &[u8], end: &[u8], since: Ts) -> Result<Option<(Vec<u8>, Ts)>> {
    let mut it = rocks.data_raw(start, end);
    it.seek(start);
    while let Some(raw_key) = it.key() {
        let (key, ts) = split_version_key(raw_key)?;
        if ts > since && key >= start {
            return Ok(Some((key.to_vec(), ts)));
        }
        it.next();
    }
    it.status().map_err(io)?;
    Ok(None)
}

/// What one [`garbage`] pass found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Garbage {
    /// Stored (versioned) keys to delete.
    pub versions: Vec<Vec<u8>>,
    /// The user key to resume from, if more may remain.
    pub resume: Option<Vec<u8>>,
}

/// Versions in `[start, end)` that no read at or above `threshold` can see, at most `max` of
/// them (stopping at a key boundary): for each key, every version older than its newest one at
/// or below `threshold`, and that one too if it is a deletion.
pub fn garbage(rocks: &Rocks, start: &[u8], end: &[u8], threshold: Ts, max: usize) -> Result<Garbage> {
    let mut dead = Vec::new();
    // The key being walked, and whether its visible version at `threshold` was passed.
    let mut current: Option<(Vec<u8>, bool)> = None;
    for item in rocks.data_range(start, end, false) {
        let (raw_key, raw_value) = item.map_err(io)?;
        let (key, vts) = split_version_key(&raw_key)?;
        if !matches!(&current, Some((k, _)) if k.as_slice() == key) {
            if dead.len() >= max {
                return Ok(Garbage { versions: dead, resume: Some(key.to_vec()) });
            }
            current = Some((key.to_vec(), false));
        }
        let passed = &mut current.as_mut().expect("set above").1;
        if *passed {
            dead.push(raw_key.to_vec());
        } else if vts <= threshold {
            *passed = true;
            if decode_value(key, &raw_value)?.is_none() {
                dead.push(raw_key.to_vec());
            }
        }
    }
    Ok(Garbage { versions: dead, resume: None })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rocksdb::IteratorMode;

    use super::*;

    fn open() -> (tempfile::TempDir, Arc<Rocks>) {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        (dir, rocks)
    }

    fn write(rocks: &Rocks, key: &[u8], ts: u64, value: Option<&str>) {
        let mut batch = WriteBatch::default();
        put(rocks, &mut batch, key, Ts(ts), value.map(str::as_bytes));
        rocks.write(batch).unwrap();
    }

    fn get(rocks: &Rocks, key: &[u8], ts: u64) -> Option<(u64, Option<String>)> {
        let v = get_at(rocks, key, Ts(ts)).unwrap()?;
        Some((v.ts.0, v.value.map(|v| String::from_utf8(v).unwrap())))
    }

    fn scan(rocks: &Rocks, ts: u64, limit: usize, reverse: bool) -> Vec<(String, String)> {
        let rows = scan_at(rocks, b"k", b"l", Ts(ts), limit, reverse).unwrap();
        rows.into_iter()
            .map(|v| (String::from_utf8(v.key).unwrap(), String::from_utf8(v.value.unwrap()).unwrap()))
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn versioned_keys_sort_by_key_then_newest_first() {
        assert!(version_key(b"ka", Ts(9)) < version_key(b"ka", Ts(3)));
        assert!(version_key(b"ka", Ts::MIN) < version_key(b"kb", Ts::MAX));
        let raw = version_key(b"ka", Ts(42));
        assert_eq!(split_version_key(&raw).unwrap(), (&b"ka"[..], Ts(42)));
        assert!(split_version_key(b"short").is_err());
    }

    /// Golden visibility: a read sees the newest version at or below its timestamp, exactly at a
    /// version's timestamp included; a deletion hides the key from then on.
    #[test]
    fn reads_see_the_newest_version_at_or_below_their_timestamp() {
        let (_dir, rocks) = open();
        write(&rocks, b"ka", 10, Some("a10"));
        write(&rocks, b"ka", 20, Some("a20"));
        write(&rocks, b"ka", 30, None);
        write(&rocks, b"ka", 40, Some("a40"));
        write(&rocks, b"kb", 15, Some("b15"));
        assert_eq!(get(&rocks, b"ka", 9), None);
        assert_eq!(get(&rocks, b"ka", 10), Some((10, Some("a10".into()))));
        assert_eq!(get(&rocks, b"ka", 29), Some((20, Some("a20".into()))));
        assert_eq!(get(&rocks, b"ka", 30), Some((30, None)));
        assert_eq!(get(&rocks, b"ka", 35), Some((30, None)));
        assert_eq!(get(&rocks, b"ka", u64::MAX), Some((40, Some("a40".into()))));
        // Another key's versions never answer for this one.
        assert_eq!(get(&rocks, b"k", 100), None);
        assert_eq!(get(&rocks, b"kc", 100), None);

        assert_eq!(scan(&rocks, 9, 10, false), pairs(&[]));
        assert_eq!(scan(&rocks, 15, 10, false), pairs(&[("ka", "a10"), ("kb", "b15")]));
        assert_eq!(scan(&rocks, 30, 10, false), pairs(&[("kb", "b15")]));
        assert_eq!(scan(&rocks, 30, 10, true), pairs(&[("kb", "b15")]));
        assert_eq!(scan(&rocks, 45, 10, true), pairs(&[("kb", "b15"), ("ka", "a40")]));
        assert_eq!(scan(&rocks, 25, 1, true), pairs(&[("kb", "b15")]));
        assert_eq!(scan(&rocks, 25, 1, false), pairs(&[("ka", "a20")]));
    }

    #[test]
    fn garbage_is_what_no_read_at_or_above_the_threshold_sees() {
        let (_dir, rocks) = open();
        write(&rocks, b"ka", 10, Some("a10"));
        write(&rocks, b"ka", 20, Some("a20"));
        write(&rocks, b"ka", 30, Some("a30"));
        write(&rocks, b"kb", 10, Some("b10"));
        write(&rocks, b"kb", 20, None);
        write(&rocks, b"kc", 50, Some("c50"));
        let versions = vec![version_key(b"ka", Ts(10)), version_key(b"kb", Ts(20)), version_key(b"kb", Ts(10))];
        assert_eq!(garbage(&rocks, b"k", b"l", Ts(25), 100).unwrap(), Garbage { versions, resume: None });
        // Bounded, with a resume key at a key boundary.
        let bounded = Garbage { versions: vec![version_key(b"ka", Ts(10))], resume: Some(b"kb".to_vec()) };
        assert_eq!(garbage(&rocks, b"k", b"l", Ts(25), 1).unwrap(), bounded);
        // Exactly at a version's timestamp: that version stays visible, older ones go.
        let dead = garbage(&rocks, b"k", b"l", Ts(20), 100).unwrap().versions;
        assert_eq!(dead, vec![version_key(b"ka", Ts(10)), version_key(b"kb", Ts(20)), version_key(b"kb", Ts(10))]);
    }

    /// The model: every version ever written, by key and timestamp.
    type Model = BTreeMap<Vec<u8>, BTreeMap<Ts, Option<Vec<u8>>>>;

    fn model_get(model: &Model, key: &[u8], ts: Ts) -> Option<Version> {
        let (vts, value) = model.get(key)?.range(..=ts).next_back()?;
        Some(Version { key: key.to_vec(), ts: *vts, value: value.clone() })
    }

    fn model_scan(model: &Model, ts: Ts, limit: usize, reverse: bool) -> Vec<Version> {
        let visible = model.keys().filter_map(|k| model_get(model, k, ts)).filter(|v| v.value.is_some());
        if reverse {
            visible.collect::<Vec<_>>().into_iter().rev().take(limit).collect()
        } else {
            visible.take(limit).collect()
        }
    }

    /// Random writes, deletions, reads, scans and garbage collections against the model, with a
    /// fixed seed. Keys are fixed-width, hence prefix-free, and include bytes 0x00 and 0xff.
    #[test]
    fn behaves_like_a_map_of_versions() {
        let (_dir, rocks) = open();
        let mut model = Model::new();
        let mut rng = StdRng::seed_from_u64(0x6d76_6363);
        let key = |rng: &mut StdRng| vec![b'k', [0x00, 0x01, 0x7f, 0xff][rng.gen_range(0..4)], rng.gen_range(0..6)];
        let mut gc_threshold = Ts::MIN;
        for step in 0..3000 {
            match rng.gen_range(0..10) {
                0..=4 => {
                    let (k, ts) = (key(&mut rng), Ts(rng.gen_range(1..200)));
                    let value = (rng.gen_range(0..4) > 0).then(|| format!("v{step}").into_bytes());
                    let mut batch = WriteBatch::default();
                    put(&rocks, &mut batch, &k, ts, value.as_deref());
                    rocks.write(batch).unwrap();
                    model.entry(k).or_default().insert(ts, value);
                }
                5..=6 => {
                    let (k, ts) = (key(&mut rng), Ts(rng.gen_range(gc_threshold.0..220)));
                    assert_eq!(get_at(&rocks, &k, ts).unwrap(), model_get(&model, &k, ts), "step {step}");
                }
                7..=8 => {
                    let ts = Ts(rng.gen_range(gc_threshold.0..220));
                    let (limit, reverse) = (rng.gen_range(1..40), rng.gen_bool(0.5));
                    let got = scan_at(&rocks, b"k", b"l", ts, limit, reverse).unwrap();
                    assert_eq!(got, model_scan(&model, ts, limit, reverse), "step {step}");
                }
                _ => {
                    // Collect below a rising threshold, in bounded rounds; reads at or above it
                    // must not change.
                    gc_threshold = Ts(gc_threshold.0.max(rng.gen_range(0..150)));
                    let mut start = b"k".to_vec();
                    loop {
                        let Garbage { versions, resume } = garbage(&rocks, &start, b"l", gc_threshold, 7).unwrap();
                        let mut batch = WriteBatch::default();
                        for raw in &versions {
                            batch.delete_cf(rocks.cf(CF_DATA), raw);
                        }
                        rocks.write(batch).unwrap();
                        match resume {
                            Some(key) => start = key,
                            None => break,
                        }
                    }
                    for versions in model.values_mut() {
                        let keep = versions.range(..=gc_threshold).next_back().map(|(ts, v)| (*ts, v.is_some()));
                        if let Some((keep, live)) = keep {
                            versions.retain(|ts, _| *ts > keep || (*ts == keep && live));
                        }
                    }
                }
            }
        }
        // Everything stored is accounted for by the model.
        let stored = rocks.db().iterator_cf(rocks.cf(CF_DATA), IteratorMode::Start).count();
        assert_eq!(stored, model.values().map(BTreeMap::len).sum::<usize>());
    }
}
