//! A sorted set of fixed-size records that moves to temporary files past a memory budget.
//! Prune's mark must not hold an entry per blob in memory: a repository of ten million blobs
//! would need a gigabyte for the used set alone. Read back in order, the set joins the index
//! (also in blob-id order) in one pass, so membership is never asked at random.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Records ordered as byte strings; the caller's encoding puts the sort key first.
pub struct Spill<const N: usize> {
    buf: Vec<[u8; N]>,
    limit: usize,
    dir: PathBuf,
    /// Each sorted and free of repeats; unlinked at creation, so a killed prune leaves nothing.
    runs: Vec<(File, u64)>,
}

const READ_BUF: usize = 64 * 1024;

impl<const N: usize> Spill<N> {
    /// Holds up to `budget` bytes of records in memory; runs go to `dir`.
    pub fn new(budget: usize, dir: &Path) -> Self {
        let limit = (budget / N).max(1);
        Spill { buf: Vec::new(), limit, dir: dir.to_path_buf(), runs: Vec::new() }
    }

    pub fn insert(&mut self, r: [u8; N]) -> Result<()> {
        if self.buf.capacity() == 0 {
            // Exactly: grown by doubling, the buffer took up to twice the budget.
            self.buf.reserve_exact(self.limit);
        }
        self.buf.push(r);
        if self.buf.len() >= self.limit {
            self.tidy();
            // Repeats (blobs shared by many files) may have shrunk it enough to go on.
            if self.buf.len() * 2 >= self.limit {
                self.write_run()?;
            }
        }
        Ok(())
    }

    /// How many runs went to disk: for tests that the budget holds.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn tidy(&mut self) {
        self.buf.sort_unstable();
        self.buf.dedup();
    }

    fn write_run(&mut self) -> Result<()> {
        let path = self.dir.join(format!("snapfs-prune-{:016x}.tmp", rand_u64()));
        let err = |e| Error::io(format!("temporary file {}", path.display()), e);
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(err)?;
        std::fs::remove_file(&path).map_err(err)?;
        let mut w = BufWriter::with_capacity(READ_BUF, &file);
        for r in &self.buf {
            w.write_all(r).map_err(err)?;
        }
        w.flush().map_err(err)?;
        drop(w);
        self.runs.push((file, self.buf.len() as u64));
        self.buf.clear();
        Ok(())
    }

    /// Every record once, in order. Records inserted later are not seen by this iterator.
    pub fn iter(&mut self) -> Merged<'_, N> {
        self.tidy();
        let mut sources: Vec<Source<'_, N>> = self.runs.iter().map(|(f, n)| Source::run(f, *n)).collect();
        sources.push(Source::Mem(self.buf.iter()));
        let mut heap = BinaryHeap::new();
        let mut failed = None;
        for (i, s) in sources.iter_mut().enumerate() {
            match s.next() {
                Ok(Some(r)) => heap.push(Reverse((r, i))),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        Merged { sources, heap, last: None, failed }
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source");
    u64::from_le_bytes(b)
}

enum Source<'a, const N: usize> {
    Mem(std::slice::Iter<'a, [u8; N]>),
    Run { file: &'a File, left: u64, pos: u64, buf: Vec<u8>, at: usize },
}

impl<'a, const N: usize> Source<'a, N> {
    fn run(file: &'a File, records: u64) -> Self {
        Source::Run { file, left: records, pos: 0, buf: Vec::new(), at: 0 }
    }

    fn next(&mut self) -> Result<Option<[u8; N]>> {
        match self {
            Source::Mem(it) => Ok(it.next().copied()),
            Source::Run { file, left, pos, buf, at } => {
                if *at == buf.len() {
                    if *left == 0 {
                        return Ok(None);
                    }
                    // Positioned reads: two iterations over one set do not share a file offset.
                    let n = (*left).min((READ_BUF / N) as u64) as usize;
                    buf.resize(n * N, 0);
                    file.read_exact_at(buf, *pos)
                        .map_err(|e| Error::io("reading back a temporary file of prune's mark", e))?;
                    *pos += buf.len() as u64;
                    *left -= n as u64;
                    *at = 0;
                }
                let r: [u8; N] = buf[*at..*at + N].try_into().expect("N bytes");
                *at += N;
                Ok(Some(r))
            }
        }
    }
}

pub struct Merged<'a, const N: usize> {
    sources: Vec<Source<'a, N>>,
    heap: BinaryHeap<Reverse<([u8; N], usize)>>,
    last: Option<[u8; N]>,
    failed: Option<Error>,
}

impl<const N: usize> Iterator for Merged<'_, N> {
    type Item = Result<[u8; N]>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        loop {
            let Reverse((r, i)) = self.heap.pop()?;
            match self.sources[i].next() {
                Ok(Some(n)) => self.heap.push(Reverse((n, i))),
                Ok(None) => {}
                Err(e) => self.failed = Some(e),
            }
            // A record may sit in several runs (inserted again after its run was written).
            if self.last != Some(r) {
                self.last = Some(r);
                return Some(Ok(r));
            }
        }
    }
}

/// Walks a sorted stream beside another sorted key sequence: `has(k)` says whether `k` is in
/// the stream, for keys asked in increasing order.
pub struct Cursor<'a, const N: usize> {
    it: std::iter::Peekable<Merged<'a, N>>,
}

impl<'a, const N: usize> Cursor<'a, N> {
    pub fn new(m: Merged<'a, N>) -> Self {
        Cursor { it: m.peekable() }
    }

    /// Whether `key` is in the stream; the records below it that were skipped are passed to
    /// `skipped` (the stream's records no key asked for).
    pub fn has(&mut self, key: &[u8; N], mut skipped: impl FnMut(&[u8; N])) -> Result<bool> {
        loop {
            match self.it.peek() {
                None => return Ok(false),
                Some(Err(_)) => return Err(self.it.next().expect("peeked").expect_err("an error")),
                Some(Ok(r)) if r < key => {
                    skipped(r);
                    self.it.next();
                }
                Some(Ok(r)) if r == key => {
                    self.it.next();
                    return Ok(true);
                }
                Some(Ok(_)) => return Ok(false),
            }
        }
    }

    /// The records after the last key asked for.
    pub fn rest(self, mut f: impl FnMut(&[u8; N])) -> Result<()> {
        for r in self.it {
            f(&r?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> [u8; 8] {
        let mut k = [0u8; 8];
        k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        k[4..].copy_from_slice(&i.to_be_bytes());
        k
    }

    #[test]
    fn spills_past_the_budget_and_reads_back_sorted_without_repeats() {
        let dir = std::env::temp_dir();
        // 64 records of 8 bytes in memory at most.
        let mut s = Spill::<8>::new(512, &dir);
        let mut want = std::collections::BTreeSet::new();
        for round in 0..3 {
            for i in 0..2000u32 {
                if (i + round) % 3 != 0 {
                    s.insert(key(i)).unwrap();
                    want.insert(key(i));
                }
            }
        }
        assert!(s.runs() > 10, "the budget forced runs to disk: {}", s.runs());
        let got: Vec<[u8; 8]> = s.iter().collect::<Result<_>>().unwrap();
        assert_eq!(got, want.iter().copied().collect::<Vec<_>>());
        // A second pass gives the same: the runs are read with their own offsets.
        assert_eq!(s.iter().count(), want.len());
    }

    #[test]
    fn cursor_answers_membership_and_reports_what_no_key_asked_for() {
        let mut s = Spill::<8>::new(80, &std::env::temp_dir());
        for i in (0..100u32).step_by(2) {
            s.insert(u64::from(i).to_be_bytes()).unwrap();
        }
        let mut c = Cursor::new(s.iter());
        let mut skipped = Vec::new();
        let mut hits = 0;
        for k in (0..60u64).step_by(3) {
            if c.has(&k.to_be_bytes(), |r| skipped.push(u64::from_be_bytes(*r))).unwrap() {
                hits += 1;
            }
        }
        c.rest(|r| skipped.push(u64::from_be_bytes(*r))).unwrap();
        // Multiples of 6 below 60 were asked for and are present.
        assert_eq!(hits, 10);
        let expect: Vec<u64> = (0..100).step_by(2).filter(|i| !(i % 6 == 0 && *i < 60)).collect();
        assert_eq!(skipped, expect);
    }
}
