//! [`Buffer`]: a transaction's writes on its gateway node until it commits. The newest sit in
//! memory (`head`); once they pass the buffer's spill size they are written out as one sorted
//! run to an anonymous temporary file (deleted when the last handle closes, so a crash leaves
//! nothing behind), with a sparse index of one key per [`BLOCK`] entries kept in memory. So a
//! transaction's memory stays bounded whatever it writes: the head, the runs' indexes (about
//! one key in [`BLOCK`]), and one decoded block per run while they are read.
//!
//! Reads of the transaction's own writes and the commit's streams merge the head and the runs,
//! newest first (`Merge`). A savepoint is the head (spilled first if it is large) and the list
//! of runs, both cheap to keep: runs never change once written.
//!
//! Sits under `coordinator::Txn`, which serialises access to it.

use std::collections::btree_map::Entry as Slot;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use raftable_common::{Error, Result, ShardId};

/// Bytes of buffered writes kept in memory before they are spilled to a run.
pub const SPILL_BYTES: usize = 16 << 20;

/// A savepoint spills the head first when it holds more than this (so the savepoint keeps a
/// list of runs instead of a copy of that many writes).
const SAVEPOINT_COPY_BYTES: usize = 256 << 10;

/// Entries per indexed block of a run.
const BLOCK: usize = 64;

/// Bytes a buffered write is counted for: key, value and bookkeeping.
fn entry_size(key: &[u8], entry: &Entry) -> usize {
    key.len() + entry.value.as_ref().map_or(0, Vec::len) + 48
}

/// One buffered write: the new value (`None` deletes) and whether the key must hold no row
/// when the commit applies (an insert that did not read first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub value: Option<Vec<u8>>,
    pub insert: bool,
}

/// How much a shard's part of the buffer holds, counting overwritten writes too: an upper
/// bound, which is what deciding whether it fits one command needs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Size {
    pub bytes: usize,
    pub items: usize,
}

type Head = BTreeMap<ShardId, BTreeMap<Vec<u8>, Entry>>;

/// What a buffer holds. A copy is cheap enough to keep as a savepoint's [`Mark`]: runs are
/// shared and never change, and the head is small when it is copied (see [`Buffer::mark`]).
#[derive(Debug, Clone, Default)]
struct Contents {
    head: Head,
    head_bytes: usize,
    /// Oldest first.
    runs: Vec<Arc<Run>>,
    sizes: BTreeMap<ShardId, Size>,
    /// A key inserted over a value written to it in memory (see [`Buffer::range`] for those
    /// in runs): the commit fails with it.
    duplicate: Option<Vec<u8>>,
}

/// A point to roll the buffer back to: its contents as they were.
#[derive(Debug, Clone)]
pub(crate) struct Mark(Contents);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Buffer {
    now: Contents,
    spill_at: usize,
}

impl Buffer {
    pub fn new(spill_at: usize) -> Self {
        Self { now: Contents::default(), spill_at: spill_at.max(1) }
    }

    pub fn is_empty(&self) -> bool {
        self.now.sizes.is_empty()
    }

    /// The shards written, in order.
    pub fn shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.now.sizes.keys().copied()
    }

    pub fn has_shard(&self, shard: ShardId) -> bool {
        self.now.sizes.contains_key(&shard)
    }

    /// All shards' sizes added up.
    pub fn total(&self) -> Size {
        self.now
            .sizes
            .values()
            .fold(Size::default(), |a, s| Size { bytes: a.bytes + s.bytes, items: a.items + s.items })
    }

    /// Buffers a write of `key` on `shard`, replacing any earlier one of the key.
    pub fn put(&mut self, shard: ShardId, key: Vec<u8>, entry: Entry) {
        let size = entry_size(&key, &entry);
        let sizes = self.now.sizes.entry(shard).or_default();
        sizes.bytes += size;
        sizes.items += 1;
        self.now.head_bytes += size;
        match self.now.head.entry(shard).or_default().entry(key) {
            Slot::Vacant(slot) => {
                slot.insert(entry);
            }
            Slot::Occupied(mut slot) => {
                let insert = entry.insert;
                let old = slot.insert(entry);
                self.now.head_bytes -= entry_size(slot.key(), &old);
                if insert && old.value.is_some() {
                    self.now.duplicate.get_or_insert_with(|| slot.key().clone());
                }
            }
        }
        if self.now.head_bytes >= self.spill_at {
            if let Err(e) = self.spill() {
                // The writes stay in memory; the next attempt waits for as much again.
                tracing::warn!(error = %e, "a transaction's writes could not be spilled to disk");
                self.spill_at = self.spill_at.saturating_mul(2);
            }
        }
    }

    /// A key inserted over a value the transaction wrote to it before, while both were in
    /// memory.
    pub fn duplicate(&self) -> Option<&[u8]> {
        self.now.duplicate.as_deref()
    }

    /// Writes the head out as a run.
    fn spill(&mut self) -> Result<()> {
        if self.now.head.is_empty() {
            return Ok(());
        }
        let run = Run::write(&self.now.head)?;
        self.now.runs.push(Arc::new(run));
        self.now.head.clear();
        self.now.head_bytes = 0;
        Ok(())
    }

    /// The newest write of each of `keys` on `shard`, for those the transaction wrote. Keys
    /// are looked up in each run in key order, so neighbours share a block read.
    pub fn get_many(&self, shard: ShardId, keys: &[Vec<u8>]) -> Result<Vec<Option<Entry>>> {
        let head = self.now.head.get(&shard);
        let mut out: Vec<Option<Entry>> = keys.iter().map(|k| head.and_then(|h| h.get(k)).cloned()).collect();
        if !self.has_shard(shard) || self.now.runs.is_empty() {
            return Ok(out);
        }
        let mut order: Vec<usize> = (0..keys.len()).filter(|i| out[*i].is_none()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        for run in self.now.runs.iter().rev() {
            let mut block = None;
            for &i in &order {
                if out[i].is_none() {
                    out[i] = run.lookup(shard, &keys[i], &mut block)?;
                }
            }
        }
        Ok(out)
    }

    /// The newest writes of `shard` with keys in `[start, end)` (an empty `end`: to the end of
    /// the keyspace), in key order. With `strict`, a key inserted (`Entry::insert`) over an
    /// earlier write of a value is `Error::DuplicateKey`: what the commit would have refused
    /// had the earlier write committed first.
    pub fn range(&self, shard: ShardId, start: &[u8], end: &[u8], strict: bool) -> Merge<'_> {
        let head: HeadRange<'_> =
            Box::new(self.now.head.get(&shard).map(|h| h.range(start.to_vec()..)).into_iter().flatten());
        let runs = self.now.runs.iter().rev().map(|r| Cursor::new(r.clone(), shard, start)).collect();
        Merge { shard, end: end.to_vec(), strict, head: head.peekable(), runs }
    }

    /// A mark to roll back to (`SAVEPOINT`). A large head is spilled first, so the mark holds
    /// runs rather than a copy of it.
    pub fn mark(&mut self) -> Mark {
        if self.now.head_bytes > SAVEPOINT_COPY_BYTES {
            if let Err(e) = self.spill() {
                tracing::warn!(error = %e, "a transaction's writes could not be spilled to disk");
            }
        }
        Mark(self.now.clone())
    }

    /// Forgets every write made since `mark` was taken.
    pub fn rollback_to(&mut self, mark: &Mark) {
        self.now = mark.0.clone();
    }
}

/// The head's writes of one shard from a key on.
type HeadRange<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Entry)> + Send + 'a>;

/// A merged view of one shard's writes over a key range: head and runs, the newest write of
/// each key (see [`Buffer::range`]).
pub(crate) struct Merge<'a> {
    shard: ShardId,
    end: Vec<u8>,
    strict: bool,
    head: std::iter::Peekable<HeadRange<'a>>,
    /// Newest first.
    runs: Vec<Cursor>,
}

impl Merge<'_> {
    fn in_range(&self, key: &[u8]) -> bool {
        self.end.is_empty() || key < self.end.as_slice()
    }

    /// The smallest key any source holds next, within the range.
    fn next_key(&mut self) -> Result<Option<Vec<u8>>> {
        let mut least: Option<Vec<u8>> = self.head.peek().map(|(k, _)| (*k).clone());
        for run in &mut self.runs {
            if let Some((shard, key, _)) = run.peek()? {
                if *shard == self.shard && least.as_ref().is_none_or(|l| key < l) {
                    least = Some(key.clone());
                }
            }
        }
        Ok(least.filter(|k| self.in_range(k)))
    }

    fn step(&mut self) -> Result<Option<(Vec<u8>, Entry)>> {
        let Some(key) = self.next_key()? else { return Ok(None) };
        let mut newest = None;
        if self.head.peek().is_some_and(|(k, _)| **k == key) {
            newest = self.head.next().map(|(_, e)| e.clone());
        }
        for run in &mut self.runs {
            if run.peek()?.is_some_and(|(s, k, _)| *s == self.shard && *k == key) {
                let (_, _, older) = run.next()?.expect("peeked");
                match &newest {
                    None => newest = Some(older),
                    Some(n) if self.strict && n.insert && older.value.is_some() => {
                        return Err(Error::DuplicateKey { key })
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(newest.map(|e| (key, e)))
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<(Vec<u8>, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}

/// One spilled run: its writes in `(shard, key)` order in a temporary file, as records of
/// shard (u64), key length (u32), key, a tag (0 deletes, 1 writes, 2 inserts) and, unless it
/// deletes, the value's length (u32) and value.
#[derive(Debug)]
pub(crate) struct Run {
    file: File,
    /// The first `(shard, key)` of each block and the block's offset.
    index: Vec<(ShardId, Vec<u8>, u64)>,
    /// The last `(shard, key)` written.
    last: (ShardId, Vec<u8>),
    len: u64,
}

type Record = (ShardId, Vec<u8>, Entry);

impl Run {
    fn write(head: &Head) -> Result<Run> {
        let file = tempfile::tempfile().map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let (mut index, mut offset, mut n, mut last) = (Vec::new(), 0u64, 0usize, (0, Vec::new()));
        for (&shard, writes) in head {
            for (key, entry) in writes {
                if n % BLOCK == 0 {
                    index.push((shard, key.clone(), offset));
                }
                n += 1;
                last = (shard, key.clone());
                let mut record = Vec::with_capacity(entry_size(key, entry));
                record.extend_from_slice(&shard.to_le_bytes());
                record.extend_from_slice(&(key.len() as u32).to_le_bytes());
                record.extend_from_slice(key);
                match (&entry.value, entry.insert) {
                    (None, _) => record.push(0),
                    (Some(v), insert) => {
                        record.push(if insert { 2 } else { 1 });
                        record.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        record.extend_from_slice(v);
                    }
                }
                out.write_all(&record).map_err(io)?;
                offset += record.len() as u64;
            }
        }
        out.flush().map_err(io)?;
        drop(out);
        Ok(Run { file, index, last, len: offset })
    }

    /// The records of block `i`.
    fn block(&self, i: usize) -> Result<Vec<Record>> {
        let start = self.index[i].2;
        let end = self.index.get(i + 1).map_or(self.len, |b| b.2);
        let mut bytes = vec![0; (end - start) as usize];
        self.file.read_exact_at(&mut bytes, start).map_err(io)?;
        decode_block(&bytes)
    }

    /// The block whose range holds `(shard, key)`, if any.
    fn block_of(&self, shard: ShardId, key: &[u8]) -> Option<usize> {
        let after = self.index.partition_point(|(s, k, _)| (*s, k.as_slice()) <= (shard, key));
        after.checked_sub(1)
    }

    /// The write of `key` on `shard` in this run, if any. `cached` keeps the last block read
    /// (its number and records) for the next lookup.
    fn lookup(&self, shard: ShardId, key: &[u8], cached: &mut Option<(usize, Vec<Record>)>) -> Result<Option<Entry>> {
        if (shard, key) > (self.last.0, self.last.1.as_slice()) {
            return Ok(None);
        }
        let Some(i) = self.block_of(shard, key) else { return Ok(None) };
        if cached.as_ref().is_none_or(|(at, _)| *at != i) {
            *cached = Some((i, self.block(i)?));
        }
        let records = &cached.as_ref().expect("a block was read").1;
        Ok(records.iter().find(|(s, k, _)| *s == shard && k == key).map(|(_, _, e)| e.clone()))
    }
}

fn decode_block(bytes: &[u8]) -> Result<Vec<Record>> {
    let corrupt = || Error::Internal("a spilled transaction run is corrupt".into());
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8]> {
        let taken = bytes.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(taken)
    };
    let mut out = Vec::with_capacity(BLOCK);
    for _ in 0..BLOCK {
        let Ok(shard) = take(8) else { break };
        let shard = u64::from_le_bytes(shard.try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let key = take(len)?.to_vec();
        let entry = match take(1)?[0] {
            0 => Entry { value: None, insert: false },
            tag @ (1 | 2) => {
                let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
                Entry { value: Some(take(len)?.to_vec()), insert: tag == 2 }
            }
            _ => return Err(corrupt()),
        };
        out.push((shard, key, entry));
    }
    if at != bytes.len() {
        return Err(corrupt());
    }
    Ok(out)
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(format!("spilled transaction writes: {e}"))
}

/// Reads a run in order from a starting `(shard, key)`, one block at a time.
struct Cursor {
    run: Arc<Run>,
    next_block: usize,
    records: std::vec::IntoIter<Record>,
    peeked: Option<Record>,
    /// Records below this (in the first block read) are skipped.
    from: Option<(ShardId, Vec<u8>)>,
}

impl Cursor {
    fn new(run: Arc<Run>, shard: ShardId, start: &[u8]) -> Self {
        let next_block = run.block_of(shard, start).unwrap_or(0);
        let from = Some((shard, start.to_vec()));
        Cursor { run, next_block, records: Vec::new().into_iter(), peeked: None, from }
    }

    fn peek(&mut self) -> Result<Option<&Record>> {
        if self.peeked.is_none() {
            self.peeked = self.advance()?;
        }
        Ok(self.peeked.as_ref())
    }

    fn next(&mut self) -> Result<Option<Record>> {
        self.peek()?;
        Ok(self.peeked.take())
    }

    fn advance(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(record) = self.records.next() {
                if let Some((shard, key)) = &self.from {
                    if (record.0, record.1.as_slice()) < (*shard, key.as_slice()) {
                        continue;
                    }
                    self.from = None;
                }
                return Ok(Some(record));
            }
            if self.next_block >= self.run.index.len() {
                return Ok(None);
            }
            self.records = self.run.block(self.next_block)?.into_iter();
            self.next_block += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(b: &mut Buffer, shard: ShardId, key: &str, value: Option<&str>) {
        b.put(shard, key.as_bytes().to_vec(), Entry { value: value.map(|v| v.as_bytes().to_vec()), insert: false });
    }

    fn all(b: &Buffer, shard: ShardId, start: &str, end: &str) -> Vec<(String, Option<String>)> {
        let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
        b.range(shard, start.as_bytes(), end.as_bytes(), false)
            .map(|r| r.map(|(k, e)| (text(k), e.value.map(text))))
            .collect::<Result<_>>()
            .unwrap()
    }

    /// A buffer spilling after every two writes or so holds the same as one that never does:
    /// the newest write of each key wins across runs, ranges stop at their end and shard,
    /// and point lookups agree.
    #[test]
    fn spilled_runs_read_like_memory() {
        let (mut spilled, mut memory) = (Buffer::new(100), Buffer::new(usize::MAX));
        for b in [&mut spilled, &mut memory] {
            for i in 0..200u32 {
                let key = format!("k{:03}", i % 70);
                let value = (i % 7 != 0).then(|| format!("v{i}"));
                put(b, u64::from(i % 3), &key, value.as_deref());
            }
        }
        assert!(spilled.now.runs.len() > 50, "{} runs", spilled.now.runs.len());
        assert!(memory.now.runs.is_empty());
        for shard in 0..3 {
            assert_eq!(all(&spilled, shard, "", ""), all(&memory, shard, "", ""));
            assert_eq!(all(&spilled, shard, "k010", "k020"), all(&memory, shard, "k010", "k020"));
            let keys: Vec<Vec<u8>> = (0..80).rev().map(|i| format!("k{i:03}").into_bytes()).collect();
            assert_eq!(spilled.get_many(shard, &keys).unwrap(), memory.get_many(shard, &keys).unwrap());
        }
        let range = all(&spilled, 1, "k010", "k020");
        assert!(range.iter().all(|(k, _)| k.as_str() >= "k010" && k.as_str() < "k020") && !range.is_empty());
        assert_eq!(spilled.shards().collect::<Vec<_>>(), [0, 1, 2]);
    }

    /// Rolling back to a mark forgets the runs and head written since, and keeps what was
    /// spilled before it.
    #[test]
    fn a_mark_survives_spills_on_both_sides() {
        let mut b = Buffer::new(100);
        put(&mut b, 1, "a", Some("1"));
        put(&mut b, 1, "b", Some("1"));
        put(&mut b, 1, "c", Some("1"));
        let mark = b.mark();
        let runs = b.now.runs.len();
        put(&mut b, 1, "a", None);
        put(&mut b, 1, "d", Some("2"));
        put(&mut b, 2, "x", Some("2"));
        put(&mut b, 1, "e", Some("2"));
        assert!(b.now.runs.len() > runs);
        b.rollback_to(&mark);
        let one = |k: &str| (k.to_string(), Some("1".to_string()));
        assert_eq!(all(&b, 1, "", ""), [one("a"), one("b"), one("c")]);
        assert!(!b.has_shard(2));
        assert_eq!(b.total().items, 3);
    }

    /// A key inserted over an earlier value of the same transaction is a duplicate when
    /// strict (the commit's stream), and just the newest write otherwise.
    #[test]
    fn an_insert_over_an_earlier_write_is_a_duplicate() {
        let mut b = Buffer::new(100);
        put(&mut b, 1, "a", Some("1"));
        put(&mut b, 1, "b", None);
        put(&mut b, 1, "c", Some("1"));
        for key in ["a", "b"] {
            b.put(1, key.as_bytes().to_vec(), Entry { value: Some(b"2".to_vec()), insert: true });
        }
        assert_eq!(b.duplicate(), None, "the earlier writes were spilled");
        let strict: Vec<_> = b.range(1, b"", b"", true).collect();
        assert_eq!(strict[0], Err(Error::DuplicateKey { key: b"a".to_vec() }));
        assert!(strict[1].as_ref().is_ok_and(|(k, e)| k == b"b" && e.insert));
        assert_eq!(all(&b, 1, "", "").len(), 3);
        let mut memory = Buffer::new(usize::MAX);
        put(&mut memory, 1, "a", None);
        memory.put(1, b"a".to_vec(), Entry { value: Some(b"2".to_vec()), insert: true });
        assert_eq!(memory.duplicate(), None, "inserted over its own deletion");
        memory.put(1, b"a".to_vec(), Entry { value: Some(b"3".to_vec()), insert: true });
        assert_eq!(memory.duplicate(), Some(&b"a"[..]));
    }

    /// A corrupt run is an error, never a wrong row.
    #[test]
    fn a_corrupt_block_is_refused() {
        assert!(decode_block(&[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, b'k']).is_err());
        assert!(decode_block(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'k', 7]).is_err());
        assert!(decode_block(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'k', 0, 5]).is_err(), "trailing bytes");
        assert!(decode_block(&[1, 0, 0]).is_err(), "a cut record");
        assert_eq!(decode_block(&[]).unwrap(), Vec::new());
    }
}
