//! Snapshot files: the whole replicated state of one group's range (its rows, and on a table
//! shard its locks and transaction records, plus the garbage-collection threshold) as one file
//! in `<rocks dir>/snapshots`. The state machine writes one from a consistent RocksDB cut
//! ([`write`]), openraft sends it to a lagging follower in chunks (the open file is the
//! snapshot's `SnapshotData`), the follower receives the chunks into a file of its own, and the
//! install reads it back entry by entry ([`read`]) into bounded write batches. Nothing holds a
//! whole snapshot in memory, whatever the shard's size.
//!
//! Layout: [`MAGIC`], then one frame per stored entry, `column family tag (u8) ‖ key length
//! (u32, big-endian) ‖ value length (u32) ‖ key ‖ value`, in column family then key order, then
//! the end frame `END ‖ garbage-collection threshold (u64) ‖ entries (u64) ‖ hash (u64)`, the
//! hash (FNV-1a) covering every byte before it. A file whose end frame is missing or does not
//! match is refused: [`verify`] checks it before an install touches any row.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use raftable_common::{Error, KeyRange, Result, Ts};
use rocksdb::ReadOptions;

use crate::keys::{CF_DATA, CF_LOCKS, CF_TXNS};
use crate::rocks::{io, Rocks};

const MAGIC: &[u8; 8] = b"RTSNAP01";

/// The column families a snapshot carries, by their tag in the file.
pub(crate) const FAMILIES: [&str; 3] = [CF_DATA, CF_LOCKS, CF_TXNS];

/// The tag of the end frame.
const END: u8 = 0xFF;

/// The directory of the node's snapshot files.
pub(crate) fn dir(rocks: &Rocks) -> PathBuf {
    dir_at(rocks.path())
}

/// The directory of the snapshot files of the RocksDB at `path`.
pub(crate) fn dir_at(path: &Path) -> PathBuf {
    path.join("snapshots")
}

/// The file of `group`'s snapshot up to log position `term`/`index`.
pub(crate) fn file_name(group: u64, term: u64, index: u64) -> String {
    format!("{group}-{term}-{index}.snap")
}

/// What the end frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub gc_threshold: Ts,
    pub entries: u64,
    /// How many of the entries are locks.
    pub locks: u64,
}

/// 64-bit FNV-1a over everything passed through it.
struct Hashing<T> {
    inner: T,
    hash: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Self { inner, hash: 0xcbf2_9ce4_8422_2325 }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.feed(bytes);
        Ok(self.inner.write_all(bytes)?)
    }
}

impl<R: Read> Hashing<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact(buf).map_err(|e| truncated(&e))?;
        self.feed(buf);
        Ok(())
    }

    fn take_u32(&mut self) -> Result<usize> {
        let mut raw = [0u8; 4];
        self.take(&mut raw)?;
        Ok(u32::from_be_bytes(raw) as usize)
    }

    fn take_u64(&mut self) -> Result<u64> {
        let mut raw = [0u8; 8];
        self.take(&mut raw)?;
        Ok(u64::from_be_bytes(raw))
    }
}

fn truncated(e: &std::io::Error) -> Error {
    Error::InvalidData(format!("snapshot file ends early: {e}"))
}

/// Writes every stored entry of `range` (read from one RocksDB snapshot) and `gc_threshold` to a
/// new file at `path`. Not synced: the caller syncs it ([`sync`]) before relying on it.
pub(crate) fn write(rocks: &Rocks, range: &KeyRange, gc_threshold: Ts, path: &Path) -> Result<Summary> {
    let cut = rocks.db().snapshot();
    let mut out = Hashing::new(BufWriter::with_capacity(1 << 20, File::create(path)?));
    out.put(MAGIC)?;
    let (mut entries, mut locks) = (0u64, 0u64);
    for (tag, family) in FAMILIES.iter().enumerate() {
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(range.start.clone());
        opts.set_iterate_upper_bound(range.end_or_max().to_vec());
        let mut it = cut.raw_iterator_cf_opt(rocks.cf(family), opts);
        it.seek(&range.start);
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            out.put(&[tag as u8])?;
            out.put(&frame_len(key)?)?;
            out.put(&frame_len(value)?)?;
            out.put(key)?;
            out.put(value)?;
            entries += 1;
            locks += u64::from(*family == CF_LOCKS);
            it.next();
        }
        it.status().map_err(io)?;
    }
    out.put(&[END])?;
    out.put(&gc_threshold.0.to_be_bytes())?;
    out.put(&entries.to_be_bytes())?;
    let hash = out.hash;
    out.inner.write_all(&hash.to_be_bytes())?;
    out.inner.flush()?;
    Ok(Summary { gc_threshold, entries, locks })
}

fn frame_len(bytes: &[u8]) -> Result<[u8; 4]> {
    let len = u32::try_from(bytes.len()).map_err(|_| Error::InvalidInput("snapshot entry over 4 GiB".into()))?;
    Ok(len.to_be_bytes())
}

/// Makes the file (or directory: a rename in it) at `path` durable.
pub(crate) fn sync(path: &Path) -> Result<()> {
    Ok(File::open(path)?.sync_all()?)
}

/// Deletes `group`'s files in `dir` other than `keep`: snapshots replaced, and files a crash
/// left behind (partly received or built ones).
pub(crate) fn remove_stale(dir: &Path, group: u64, keep: Option<&str>) -> Result<()> {
    let prefix = format!("{group}-");
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && Some(name.as_ref()) != keep {
            std::fs::remove_file(dir.join(name.as_ref()))?;
        }
    }
    Ok(())
}

/// Reads the file at `path`, calling `each` with every entry's column family, key and value in
/// file order, and returns its end frame once the hash matched. `each` may have been called for
/// entries of a file that then turns out damaged: [`verify`] first.
pub(crate) fn read(path: &Path, mut each: impl FnMut(&'static str, &[u8], &[u8]) -> Result<()>) -> Result<Summary> {
    let mut input = Hashing::new(BufReader::with_capacity(1 << 20, File::open(path)?));
    let mut magic = [0u8; MAGIC.len()];
    input.take(&mut magic)?;
    if &magic != MAGIC {
        return Err(Error::InvalidData(format!("{} is not a snapshot file", path.display())));
    }
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let (mut entries, mut locks) = (0u64, 0u64);
    loop {
        let mut tag = [0u8; 1];
        input.take(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let family = *FAMILIES
            .get(tag[0] as usize)
            .ok_or_else(|| Error::InvalidData(format!("snapshot frame with unknown tag {}", tag[0])))?;
        let (key_len, value_len) = (input.take_u32()?, input.take_u32()?);
        key.resize(key_len, 0);
        value.resize(value_len, 0);
        input.take(&mut key)?;
        input.take(&mut value)?;
        each(family, &key, &value)?;
        entries += 1;
        locks += u64::from(family == CF_LOCKS);
    }
    let gc_threshold = Ts(input.take_u64()?);
    let counted = input.take_u64()?;
    let hash = input.hash;
    let mut stored = [0u8; 8];
    input.inner.read_exact(&mut stored).map_err(|e| truncated(&e))?;
    if counted != entries || u64::from_be_bytes(stored) != hash {
        return Err(Error::InvalidData(format!(
            "snapshot file {} is damaged ({entries} entries read, {counted} written)",
            path.display()
        )));
    }
    Ok(Summary { gc_threshold, entries, locks })
}

/// Checks the whole file at `path` ([`read`] without doing anything with the entries).
pub(crate) fn verify(path: &Path) -> Result<Summary> {
    read(path, |_, _, _| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, std::sync::Arc<Rocks>) {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        (dir, rocks)
    }

    /// An entry as a read passes it on: column family, key, value.
    type Seen = (&'static str, Vec<u8>, Vec<u8>);

    /// The entries a read of the file passes on, by column family.
    fn entries(path: &Path) -> (Vec<Seen>, Summary) {
        let mut seen = Vec::new();
        let summary = read(path, |family, key, value| {
            seen.push((family, key.to_vec(), value.to_vec()));
            Ok(())
        })
        .unwrap();
        (seen, summary)
    }

    #[test]
    fn a_file_holds_the_range_of_every_family_and_refuses_damage() {
        let (dir, rocks) = open();
        let mut batch = rocksdb::WriteBatch::default();
        // Inside the range [1, 2) of each family, and just outside it.
        for (family, keys) in [(CF_DATA, vec![vec![1, 1], vec![1, 2], vec![2]]), (CF_LOCKS, vec![vec![1, 3]])] {
            for key in keys {
                batch.put_cf(rocks.cf(family), &key, [family.len() as u8; 3]);
            }
        }
        batch.put_cf(rocks.cf(CF_TXNS), [0u8, 9], b"outside");
        batch.put_cf(rocks.cf(CF_TXNS), [1u8, 9], b"record");
        rocks.write(batch).unwrap();
        let path = dir.path().join("s.snap");
        let range = KeyRange::new(vec![1], vec![2]);
        let written = write(&rocks, &range, Ts(77), &path).unwrap();
        assert_eq!(written, Summary { gc_threshold: Ts(77), entries: 4, locks: 1 });
        let (seen, summary) = entries(&path);
        assert_eq!(summary, written);
        let keys: Vec<_> = seen.iter().map(|(family, key, _)| (*family, key.clone())).collect();
        assert_eq!(
            keys,
            vec![(CF_DATA, vec![1, 1]), (CF_DATA, vec![1, 2]), (CF_LOCKS, vec![1, 3]), (CF_TXNS, vec![1, 9])]
        );
        assert_eq!(seen[3].2, b"record");

        // A truncated file, a flipped byte, and not a snapshot at all are refused.
        let whole = std::fs::read(&path).unwrap();
        let damaged = dir.path().join("d.snap");
        for bytes in [
            whole[..whole.len() - 1].to_vec(),
            whole[..whole.len() / 2].to_vec(),
            {
                let mut b = whole.clone();
                b[MAGIC.len() + 12] ^= 1;
                b
            },
            b"not a snapshot file".to_vec(),
        ] {
            std::fs::write(&damaged, bytes).unwrap();
            assert!(matches!(verify(&damaged), Err(Error::InvalidData(_))), "damage went unnoticed");
        }
    }

    #[test]
    fn stale_files_of_the_group_go() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1-2-30.snap", "1-2-40.snap", "1-receiving-3", "11-2-30.snap", "2-1-1.snap.building"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        remove_stale(dir.path(), 1, Some("1-2-40.snap")).unwrap();
        let mut left: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["1-2-40.snap", "11-2-30.snap", "2-1-1.snap.building"]);
    }
}
