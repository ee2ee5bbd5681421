//! A snapshot tree as a tar archive that GNU tar extracts (`tar -xp --xattrs`) into what
//! `restore` writes: pax records carry what ustar cannot (nanosecond times, long owner names,
//! xattrs, sizes past 8 GiB), GNU long-name entries carry long or non-UTF-8 paths (pax `path`
//! must be UTF-8), hardlinked inodes become hard links, and files with all-zero chunks (the
//! holes `restore` leaves) become GNU sparse entries of format 1.0.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::DumpOutcome;
use super::content::{ContentReader, Zeros, file_map, read_chunk};
use crate::error::{Error, Result};
use crate::format::tree::{Kind, Node, Time};
use crate::id::Id;
use crate::index::IndexReader;
use crate::repo::Repository;
use crate::sys;
use crate::trees::Trees;

/// Listings kept while walking: a dump reads each once, except repeated identical subtrees.
const TREE_CACHE: usize = 8 << 20;

/// The largest size ustar's 11 octal digits hold.
const USTAR_MAX_SIZE: u64 = (1 << 33) - 1;

/// Writes the entry at `path` in the snapshot tree `tree` as a tar archive to `out`: a
/// directory's entries (the whole snapshot for `/`) named relative to it, or a single entry
/// under its own name. This is what `dump --archive tar` and an export of a whole snapshot use.
pub fn write_tar<W: Write>(repo: &Repository, tree: Id, path: &Path, out: W) -> Result<DumpOutcome> {
    let trees = Trees::new(repo, TREE_CACHE);
    crate::trees::check_expansion(&trees, tree)?;
    let node = trees.resolve(tree, path)?;
    let mut w = TarWriter {
        repo,
        index: repo.index().reader()?,
        trees: &trees,
        zeros: Zeros::new(repo),
        builder: Builder::new(out),
        links: HashMap::new(),
        outcome: DumpOutcome::default(),
    };
    match node {
        None => w.dir(tree, Path::new(""))?,
        Some(n) => match n.subtree() {
            Some(sub) => w.dir(sub, Path::new(""))?,
            None => w.entry(&n, Path::new(sys::os(&n.name)))?,
        },
    }
    w.builder.into_inner().and_then(|mut o| o.flush()).map_err(|e| Error::io("write the archive's end", e))?;
    Ok(w.outcome)
}

struct TarWriter<'a, W: Write> {
    repo: &'a Repository,
    index: IndexReader,
    trees: &'a Trees<&'a Repository>,
    zeros: Zeros<'a>,
    builder: Builder<W>,
    /// The first archive path of each hardlinked inode, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    outcome: DumpOutcome,
}

impl<W: Write> TarWriter<'_, W> {
    /// The entries of the directory `tree` at `at` in the archive, depth first.
    fn dir(&mut self, tree: Id, at: &Path) -> Result<()> {
        let listing = self.trees.get(&tree)?;
        for n in listing.iter() {
            let p = at.join(sys::os(&n.name));
            self.entry(n, &p)?;
            if let Some(sub) = n.subtree() {
                self.dir(sub, &p)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, n: &Node, p: &Path) -> Result<()> {
        let io = |e: io::Error| Error::io(format!("write {} to the archive", p.display()), e);
        if n.kind != Kind::Dir && n.nlink > 1 {
            if let Some(first) = self.links.get(&(n.dev, n.ino)) {
                let mut h = header(n, EntryType::Link);
                self.builder.append_link(&mut h, p, first).map_err(io)?;
                self.outcome.entries += 1;
                return Ok(());
            }
            self.links.insert((n.dev, n.ino), p.to_path_buf());
        }
        let mut pax = pax_of(n);
        let (ty, written) = match n.kind {
            Kind::File => return self.file(n, p, pax).map_err(io),
            Kind::Dir => (EntryType::Directory, None),
            Kind::Symlink => (EntryType::Symlink, Some(sys::os(&n.link_target))),
            Kind::Fifo => (EntryType::Fifo, None),
            Kind::CharDev => (EntryType::Char, None),
            Kind::BlockDev => (EntryType::Block, None),
            Kind::Socket => {
                self.outcome.left_out.push(format!("{}: a socket, which tar cannot hold", p.display()));
                return Ok(());
            }
        };
        let mut h = header(n, ty);
        if matches!(n.kind, Kind::CharDev | Kind::BlockDev) {
            let (major, minor) = (libc::major(n.rdev), libc::minor(n.rdev));
            h.set_device_major(major).and_then(|_| h.set_device_minor(minor)).map_err(io)?;
        }
        owner_names(&mut h, n, &mut pax);
        write_pax(&mut self.builder, &pax).map_err(io)?;
        match written {
            Some(target) => self.builder.append_link(&mut h, p, target),
            None => self.builder.append_data(&mut h, p, io::empty()),
        }
        .map_err(io)?;
        self.outcome.entries += 1;
        Ok(())
    }

    fn file(&mut self, n: &Node, p: &Path, mut pax: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        let map = file_map(&self.index, n)?;
        let count = map.chunk_count();
        // Runs of chunks with data: (offset, length, first chunk, end chunk).
        let mut runs: Vec<(u64, u64, usize, usize)> = Vec::new();
        let mut holes = false;
        for (i, (off, id, loc)) in map.chunks().enumerate() {
            if self.zeros.is_zero(id, loc.raw_len, i + 1 == count) {
                holes = true;
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == off => {
                    r.1 += u64::from(loc.raw_len);
                    r.3 = i + 1;
                }
                _ => runs.push((off, u64::from(loc.raw_len), i, i + 1)),
            }
        }
        let all: Vec<_> = map.chunks().map(|(_, id, loc)| (*id, *loc)).collect();
        // Trimmed to whole blocks of data, as restore leaves holes inside the chunks that
        // border them: (offset, length, first chunk, end chunk, bytes of the first to skip).
        let runs: Vec<(u64, u64, usize, usize, u64)> =
            if holes { runs.iter().map(|r| trim(self.repo, &all, *r)).collect::<io::Result<_>>()? } else { Vec::new() };
        // GNU tar reads a GNU-format header's sparse data in the old GNU way, ignoring pax's.
        let mut h =
            if holes { header_in(n, EntryType::Regular, Header::new_ustar()) } else { header(n, EntryType::Regular) };
        owner_names(&mut h, n, &mut pax);
        if !holes {
            if n.size > USTAR_MAX_SIZE {
                pax.push((b"size".to_vec(), n.size.to_string().into_bytes()));
            }
            h.set_size(n.size);
            write_pax(&mut self.builder, &pax)?;
            self.builder.append_data(&mut h, p, ContentReader::new(self.repo, all))?;
        } else {
            // GNU sparse 1.0: the map leads the entry's data, in decimal lines padded to a block;
            // a run ending before the file does is closed by an empty run at its end.
            let mut segments: Vec<(u64, u64)> = runs.iter().map(|r| (r.0, r.1)).collect();
            if segments.last().is_none_or(|&(o, l)| o + l < n.size) {
                segments.push((n.size, 0));
            }
            let mut sparse_map = format!("{}\n", segments.len());
            for (o, l) in &segments {
                sparse_map.push_str(&format!("{o}\n{l}\n"));
            }
            let mut sparse_map = sparse_map.into_bytes();
            sparse_map.resize(sparse_map.len().div_ceil(512) * 512, 0);
            // GNU tar reads each run's data in whole blocks: each is padded to one.
            let data: u64 = runs.iter().map(|r| r.1.div_ceil(512) * 512).sum();
            pax.extend([
                (b"GNU.sparse.major".to_vec(), b"1".to_vec()),
                (b"GNU.sparse.minor".to_vec(), b"0".to_vec()),
                (b"GNU.sparse.name".to_vec(), p.as_os_str().as_encoded_bytes().to_vec()),
                (b"GNU.sparse.realsize".to_vec(), n.size.to_string().into_bytes()),
            ]);
            let stored = sparse_map.len() as u64 + data;
            if stored > USTAR_MAX_SIZE {
                pax.push((b"size".to_vec(), stored.to_string().into_bytes()));
            }
            h.set_size(stored);
            write_pax(&mut self.builder, &pax)?;
            let runs = runs.iter().map(|r| (all[r.2..r.3].to_vec(), r.4, r.1, r.1.div_ceil(512) * 512 - r.1)).collect();
            let body = (&sparse_map[..]).chain(Padded { repo: self.repo, runs, cur: None });
            // The header's own name is what a tar without sparse support extracts it as.
            let shown =
                p.parent().unwrap_or(Path::new("")).join("GNUSparseFile.0").join(p.file_name().unwrap_or_default());
            self.builder.append_data(&mut h, shown, body)?;
        }
        self.outcome.entries += 1;
        self.outcome.bytes += n.size;
        Ok(())
    }
}

/// Block size of the holes dump leaves inside chunks: restore's (a filesystem block).
const HOLE_BLOCK: u64 = 4096;

/// A data run without the whole blocks of zeros at its two ends (where its chunks border
/// holes): its first and last chunk are read to find them.
fn trim(
    repo: &Repository,
    all: &[(Id, crate::index::BlobLoc)],
    (off, len, first, end): (u64, u64, usize, usize),
) -> io::Result<(u64, u64, usize, usize, u64)> {
    let read = |i: usize| read_chunk(repo, &all[i].0, &all[i].1).map_err(|e| io::Error::other(e.to_string()));
    let lead = read(first)?.iter().take_while(|b| **b == 0).count() as u64;
    let trail = read(end - 1)?.iter().rev().take_while(|b| **b == 0).count() as u64;
    let start = ((off + lead) / HOLE_BLOCK * HOLE_BLOCK).max(off);
    let stop = (off + len).saturating_sub(trail).div_ceil(HOLE_BLOCK) * HOLE_BLOCK;
    let stop = stop.min(off + len).max(start);
    Ok((start, stop - start, first, end, start - off))
}

/// A run's chunks, the bytes of them to skip, the bytes to take, the padding.
type Run = (Vec<(Id, crate::index::BlobLoc)>, u64, u64, u64);

/// The data runs of a sparse entry, each followed by the zeros that fill its last block.
struct Padded<'a> {
    repo: &'a Repository,
    runs: std::collections::VecDeque<Run>,
    cur: Option<io::Chain<io::Take<Skip<ContentReader<'a>>>, io::Take<io::Repeat>>>,
}

impl Read for Padded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(r) = &mut self.cur {
                let n = r.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
            }
            let Some((chunks, skip, len, pad)) = self.runs.pop_front() else { return Ok(0) };
            let data = Skip { inner: ContentReader::new(self.repo, chunks), skip }.take(len);
            self.cur = Some(data.chain(io::repeat(0).take(pad)));
        }
    }
}

/// A reader without its first `skip` bytes.
struct Skip<R> {
    inner: R,
    skip: u64,
}

impl<R: Read> Read for Skip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.skip > 0 {
            io::copy(&mut (&mut self.inner).take(self.skip), &mut io::sink())?;
            self.skip = 0;
        }
        self.inner.read(buf)
    }
}

/// A GNU header with the node's mode, owner ids and whole-second mtime (pax has the rest).
fn header(n: &Node, ty: EntryType) -> Header {
    header_in(n, ty, Header::new_gnu())
}

fn header_in(n: &Node, ty: EntryType, mut h: Header) -> Header {
    h.set_entry_type(ty);
    h.set_mode(n.mode);
    h.set_uid(u64::from(n.uid));
    h.set_gid(u64::from(n.gid));
    h.set_mtime(n.mtime.sec.max(0) as u64);
    h.set_size(0);
    h
}

/// The user and group names in the header, or in pax records when they do not fit.
fn owner_names(h: &mut Header, n: &Node, pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    if !n.user.is_empty() && h.set_username(&n.user).is_err() {
        pax.push((b"uname".to_vec(), n.user.clone().into_bytes()));
    }
    if !n.group.is_empty() && h.set_groupname(&n.group).is_err() {
        pax.push((b"gname".to_vec(), n.group.clone().into_bytes()));
    }
}

/// Pax records for what a header cannot say: times to the nanosecond, and xattrs.
fn pax_of(n: &Node) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pax = vec![(b"mtime".to_vec(), decimal_time(n.mtime).into_bytes())];
    // Past ustar's 7 octal digits the headers fall back to base-256, which not every reader takes.
    for (key, id) in [(&b"uid"[..], n.uid), (b"gid", n.gid)] {
        if id > 0o7777777 {
            pax.push((key.to_vec(), id.to_string().into_bytes()));
        }
    }
    if let Some(a) = n.atime {
        pax.push((b"atime".to_vec(), decimal_time(a).into_bytes()));
    }
    for (k, v) in &n.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax.push((key, v.clone()));
    }
    pax
}

/// Seconds since the epoch with nine decimals; before 1970 the fraction counts back from the
/// whole second, as pax readers parse `-1.25` (stat's sec -2, nsec 750000000).
fn decimal_time(t: Time) -> String {
    if t.sec < 0 && t.nsec > 0 {
        format!("-{}.{:09}", -(t.sec + 1), 1_000_000_000 - t.nsec)
    } else {
        format!("{}.{:09}", t.sec, t.nsec)
    }
}

/// A pax extended header (type `x`) applying to the next entry. Each record is
/// `LEN KEY=VALUE\n`, where LEN counts the whole record, its own digits included.
fn write_pax<W: Write>(b: &mut Builder<W>, records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(k);
        data.push(b'=');
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_path("PaxHeader")?;
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_count_back_from_the_second() {
        assert_eq!(decimal_time(Time { sec: -2, nsec: 750_000_000 }), "-1.250000000");
        assert_eq!(decimal_time(Time { sec: -1_000_002, nsec: 123_456_789 }), "-1000001.876543211");
        assert_eq!(decimal_time(Time { sec: 5, nsec: 7 }), "5.000000007");
        assert_eq!(decimal_time(Time { sec: -3, nsec: 0 }), "-3.000000000");
    }
}
