//! The parallel walk: one task per directory entry on rayon's pool, change detection against
//! the parent snapshot, and chunking of new file contents (parallel within large files too).

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::Warning;
use super::gitignore::Ignores;
use super::meta::node_from;
use super::progress::{Change, Progress};
use super::readahead::{Advising, Ahead, Readahead, SMALL_MAX, Whole};
use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::tree::{self, Kind, Node};
use crate::id::Id;
use crate::patterns::Patterns;
use crate::repo::Repository;
use crate::repo::packer::Packer;

/// How much of a file is read at once; chunks are cut and sealed in parallel within it. Work
/// stealing can put several files in flight per thread, so this multiplies: 16 MiB (twice the
/// largest chunk, the least the chunker needs) keeps peak memory down.
const READ_BLOCK: usize = 16 << 20;

pub struct Walker<'a> {
    pub repo: &'a Repository,
    pub packer: &'a Packer<'a>,
    pub excludes: Patterns,
    pub select: super::select::Selection,
    pub one_file_system: bool,
    pub with_atime: bool,
    pub ignore_inode: bool,
    pub ignore_ctime: bool,
    pub interrupt: &'a AtomicBool,
    pub counters: &'a Progress,
    pub warnings: Mutex<Vec<Warning>>,
    /// Read buffers of files done, for the next files: each fresh one was an mmap whose pages
    /// the kernel had to fault in and zero, a sixth of the backup's CPU time.
    pub buffers: Mutex<Vec<Vec<u8>>>,
    /// The chunker's length for chunks inside runs of zeros, and their id once stored.
    pub zero_run: (usize, Mutex<Option<Id>>),
    /// Reads in flight ahead of the chunkers, for a cold disk.
    pub ahead: Readahead,
}

/// Read buffers kept for reuse: one per worker covers most files; nested files allocate.
const SPARE_BUFFERS: usize = 2;

/// Nodes of a directory in the parent snapshot, by name.
pub type ParentDir = HashMap<Vec<u8>, Node>;

impl Walker<'_> {
    /// An entry left out of the snapshot.
    pub fn skipped(&self, message: String) {
        self.warnings.lock().expect("poisoned").push(Warning { message, in_snapshot: false });
    }

    /// An entry in the snapshot, but maybe not as it is on disk.
    pub fn incomplete(&self, message: String) {
        self.warnings.lock().expect("poisoned").push(Warning { message, in_snapshot: true });
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupt.load(Relaxed) { Err(Error::Interrupted) } else { Ok(()) }
    }

    pub fn parent_dir(&self, tree: Option<Id>) -> ParentDir {
        let Some(id) = tree else { return HashMap::new() };
        match self.repo.load_tree(&id) {
            Ok(nodes) => nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
            // A damaged parent only costs a full read of this directory.
            Err(_) => HashMap::new(),
        }
    }

    /// Archives one entry given its lstat; `Ok(None)` means skipped with a warning.
    pub fn entry(
        &self,
        path: &Path,
        name: &[u8],
        md: &Metadata,
        parent: Option<&Node>,
        root_dev: u64,
        ign: Option<&Ignores>,
    ) -> Result<Option<Node>> {
        self.check_interrupt()?;
        let (mut node, warning) = node_from(path, name, md, self.with_atime);
        if let Some(w) = warning {
            self.incomplete(w);
        }
        match node.kind {
            Kind::Dir => {
                let prev = parent.filter(|p| p.kind == Kind::Dir).and_then(Node::subtree);
                let tree = if self.one_file_system && md.dev() != root_dev {
                    self.store_tree(Vec::new())?
                } else {
                    self.dir(path, prev, root_dev, ign)?
                };
                let c = &self.counters;
                let (n, change) = match prev {
                    Some(p) if p == tree => (&c.dirs_unchanged, Change::Unchanged),
                    Some(_) => (&c.dirs_changed, Change::Modified),
                    None => (&c.dirs_new, Change::New),
                };
                n.fetch_add(1, Relaxed);
                c.note(change, true, path);
                node.content = vec![tree];
            }
            Kind::File => {
                match parent.filter(|p| self.unchanged(p, &node)) {
                    Some(p) => {
                        node.content = p.content.clone();
                        self.counters.files_unchanged.fetch_add(1, Relaxed);
                        self.counters.note(Change::Unchanged, false, path);
                    }
                    None => {
                        match self.file(path, md, &mut node) {
                            Ok(()) => {}
                            Err(FileError::Source(e)) => {
                                self.skipped(format!("{}: {e}", path.display()));
                                return Ok(None);
                            }
                            Err(FileError::Repo(e)) => return Err(e),
                        }
                        let (c, change) = match parent {
                            Some(_) => (&self.counters.files_changed, Change::Modified),
                            None => (&self.counters.files_new, Change::New),
                        };
                        c.fetch_add(1, Relaxed);
                        self.counters.note(change, false, path);
                    }
                }
                self.counters.total_files.fetch_add(1, Relaxed);
                self.counters.total_bytes.fetch_add(node.size, Relaxed);
            }
            _ => {}
        }
        Ok(Some(node))
    }

    fn unchanged(&self, p: &Node, n: &Node) -> bool {
        p.kind == Kind::File
            && (p.size, p.mtime, p.mode) == (n.size, n.mtime, n.mode)
            && (self.ignore_ctime || p.ctime == n.ctime)
            && (self.ignore_inode || p.ino == n.ino)
            // Reuse a chunk list only while its blobs are still indexed.
            && p.content.iter().all(|id| self.packer.has(id))
    }

    /// Archives a directory's contents. One that cannot be listed is stored empty, so its
    /// entry and metadata are still in the snapshot (as restic does), with a warning.
    /// `ign`: the `.gitignore` matchers of the directories above, with `--git-ignore`.
    pub fn dir(&self, path: &Path, prev: Option<Id>, root_dev: u64, ign: Option<&Ignores>) -> Result<Id> {
        self.ahead.entered_dir();
        let names = match fs::read_dir(path)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>())
        {
            Ok(n) => n,
            Err(e) => {
                self.incomplete(format!("{}: cannot read directory, stored without its contents: {e}", path.display()));
                return self.store_tree(Vec::new());
            }
        };
        let parent = self.parent_dir(prev);
        let here = self.select.git_ignore.then(|| {
            let (i, warning) = Ignores::enter(path, ign);
            if let Some(w) = warning {
                self.incomplete(w);
            }
            i
        });
        let mut found: Vec<(std::ffi::OsString, std::path::PathBuf, Metadata)> = names
            .into_par_iter()
            .filter_map(|name| {
                let p = path.join(&name);
                if self.excludes.matches(&p) {
                    return None;
                }
                let md = match fs::symlink_metadata(&p) {
                    Ok(md) => md,
                    Err(e) => {
                        self.skipped(format!("{}: {e}", p.display()));
                        return None;
                    }
                };
                if self.select.rejects(&p, &md) || here.as_ref().is_some_and(|i| i.ignores(&p, md.is_dir())) {
                    return None;
                }
                Some((name, p, md))
            })
            .collect();
        // Files before subdirectories, each in inode order (where the filesystem put them):
        // the read-ahead is told the files to read in the order the walk takes them up.
        found.sort_unstable_by_key(|(_, _, md)| (md.is_dir(), md.ino()));
        let _batch = self.ahead.hint(
            found
                .iter()
                .filter(|(name, _, md)| self.will_read(parent.get(name.as_bytes()), md))
                .map(|(_, p, md)| (p.clone(), md.size())),
        );
        // Taken in order (par_bridge hands the next entry to whichever thread is free), so
        // the files being read ahead are the next ones the chunkers want.
        let nodes: Vec<Option<Node>> = found
            .iter()
            .par_bridge()
            .map(|(name, p, md)| {
                self.entry(p, name.as_bytes(), md, parent.get(name.as_bytes()), root_dev, here.as_ref())
            })
            .collect::<Result<_>>()?;
        let mut nodes: Vec<Node> = nodes.into_iter().flatten().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.store_tree(nodes)
    }

    /// Whether `entry` will read this file: what its parent says differs in what `unchanged`
    /// compares (the index is not asked: a guess wrong that way only costs a read ahead).
    /// Files with holes are left to `Holes`.
    fn will_read(&self, p: Option<&Node>, md: &Metadata) -> bool {
        if !md.is_file() || md.size() == 0 || md.blocks() * 512 < md.size() {
            return false;
        }
        let Some(p) = p else { return true };
        !(p.kind == Kind::File
            && p.size == md.size()
            && (p.mtime.sec, i64::from(p.mtime.nsec)) == (md.mtime(), md.mtime_nsec())
            && p.mode == md.mode() & 0o7777
            && (self.ignore_ctime || (p.ctime.sec, i64::from(p.ctime.nsec)) == (md.ctime(), md.ctime_nsec()))
            && (self.ignore_inode || p.ino == md.ino()))
    }

    pub fn store_tree(&self, nodes: Vec<Node>) -> Result<Id> {
        self.packer.add(ObjType::Tree, &tree::encode(&nodes))
    }

    /// Reads, cuts and stores a file's contents into `node.content`.
    fn file(&self, path: &Path, before: &Metadata, node: &mut Node) -> Result<(), FileError> {
        self.counters.set_current(path);
        let changed = |size: u64, mtime: (i64, i64)| {
            if size != before.size() || mtime != (before.mtime(), before.mtime_nsec()) {
                self.incomplete(format!("{}: file changed while it was read; stored as read", path.display()));
            }
        };
        if let Ahead::Read(p) = self.ahead.take(path)
            // Another file put in its place since the stat is read by the usual path.
            && (p.dev, p.ino) == (before.dev(), before.ino())
        {
            node.size = self.content(&mut Whole(Some(p.data)), node)?;
            changed(p.size, p.mtime);
            return Ok(());
        }
        let f = open_noatime(path).map_err(FileError::Source)?;
        // Fewer blocks than bytes: the file has holes, which are not read (see `Holes`).
        let total = if before.blocks() * 512 < before.size() {
            self.content(&mut Holes::new(&f, before.size()), node)?
        } else if before.size() > SMALL_MAX {
            self.content(&mut Advising::new(&f), node)?
        } else {
            self.content(&mut Plain(&f), node)?
        };
        node.size = total;
        if let Ok(after) = f.metadata() {
            changed(after.size(), (after.mtime(), after.mtime_nsec()));
        }
        Ok(())
    }

    /// Cuts and stores everything `src` yields into `node.content`; returns its length. A chunk
    /// cut inside a long run of zeros (a hole, mostly) is neither cut nor hashed again: all such
    /// chunks have one length and one id ([`Chunker::zero_run_len`]), stored once per backup.
    ///
    /// [`Chunker::zero_run_len`]: crate::chunker::Chunker::zero_run_len
    pub fn content(&self, src: &mut dyn Source, node: &mut Node) -> Result<u64, FileError> {
        let chunker = self.repo.chunker();
        let want = READ_BLOCK.max(2 * chunker.max_size());
        // Only the pages a file's bytes land on are touched, so small files can share the big
        // buffers; read_to_end fills them without zeroing first.
        let whole = src.whole();
        let mut eof = whole.is_some();
        let mut total = whole.as_ref().map_or(0, |b| b.len() as u64);
        let mut read = total;
        let mut buf = whole.unwrap_or_else(|| {
            self.buffers.lock().expect("poisoned").pop().unwrap_or_else(|| Vec::with_capacity(want))
        });
        loop {
            self.check_interrupt().map_err(FileError::Repo)?;
            if !eof {
                let need = want - buf.len();
                let (n, from_disk) = src.fill(&mut buf, need).map_err(FileError::Source)?;
                eof = n < need;
                total += n as u64;
                read += from_disk;
            }
            let mut cuts = Vec::new();
            let mut off = 0;
            while off < buf.len() && (eof || buf.len() - off >= chunker.max_size()) {
                let window = &buf[off..buf.len().min(off + chunker.max_size())];
                if window.len() == chunker.max_size() && window.iter().all(|&b| b == 0) {
                    let n = self.zero_run.0;
                    cuts.push((off, n, true));
                    off += n;
                    continue;
                }
                let n = chunker.next_len(&buf[off..], eof);
                cuts.push((off, n, false));
                off += n;
            }
            let ids: Vec<Id> = cuts
                .par_iter()
                .map(
                    |&(o, n, zero)| {
                        if zero { self.zero_chunk() } else { self.packer.add(ObjType::Data, &buf[o..o + n]) }
                    },
                )
                .collect::<Result<_>>()
                .map_err(FileError::Repo)?;
            node.content.extend(ids);
            buf.drain(..off);
            if eof {
                break;
            }
        }
        buf.clear();
        let mut spare = self.buffers.lock().expect("poisoned");
        // A small file's own buffer (read ahead) is no use for the next file.
        if spare.len() < SPARE_BUFFERS && buf.capacity() >= want {
            spare.push(buf);
        }
        drop(spare);
        self.counters.bytes_read.fetch_add(read, Relaxed);
        Ok(total)
    }

    /// The id of a chunk of `zero_run.0` zeros, stored the first time it is asked for.
    fn zero_chunk(&self) -> Result<Id> {
        let mut id = self.zero_run.1.lock().expect("poisoned");
        match *id {
            Some(i) => Ok(i),
            None => {
                let i = self.packer.add(ObjType::Data, &vec![0u8; self.zero_run.0])?;
                *id = Some(i);
                Ok(i)
            }
        }
    }
}

/// Where a file's bytes come from.
pub trait Source {
    /// Appends up to `need` bytes to `buf`; fewer only at the end. Returns the bytes appended
    /// and how many of them were read from the disk (holes are not).
    fn fill(&mut self, buf: &mut Vec<u8>, need: usize) -> io::Result<(usize, u64)>;

    /// All of the content at once, when it is already in memory: it becomes the chunker's
    /// buffer, and `fill` is not called.
    fn whole(&mut self) -> Option<Vec<u8>> {
        None
    }
}

/// Any reader, read through: a file without holes, a pipe.
pub struct Plain<R>(pub R);

impl<R: Read> Source for Plain<R> {
    fn fill(&mut self, buf: &mut Vec<u8>, need: usize) -> io::Result<(usize, u64)> {
        let n = (&mut self.0).take(need as u64).read_to_end(buf)?;
        Ok((n, n as u64))
    }
}

/// A file with holes: its data read, its holes (found with SEEK_DATA / SEEK_HOLE) given as
/// zeros without a read, so the chunks and their ids are those a plain read gives.
pub struct Holes<'a> {
    f: &'a File,
    /// Where the next byte comes from, where the current data ends, and the size at open.
    pos: u64,
    data_end: u64,
    size: u64,
}

impl<'a> Holes<'a> {
    pub fn new(f: &'a File, size: u64) -> Holes<'a> {
        Holes { f, pos: 0, data_end: 0, size }
    }
}

impl Source for Holes<'_> {
    fn fill(&mut self, buf: &mut Vec<u8>, need: usize) -> io::Result<(usize, u64)> {
        let (mut n, mut read) = (0usize, 0u64);
        while n < need && self.pos < self.size {
            if self.pos >= self.data_end {
                // In a hole: zeros up to the next data, then find where that data ends.
                let data = crate::sys::seek_data(self.f, self.pos)?.unwrap_or(self.size).min(self.size);
                let zeros = ((data - self.pos) as usize).min(need - n);
                buf.resize(buf.len() + zeros, 0);
                (n, self.pos) = (n + zeros, self.pos + zeros as u64);
                if self.pos == data && data < self.size {
                    self.data_end = crate::sys::seek_hole(self.f, data)?.min(self.size);
                }
                continue;
            }
            let want = ((self.data_end - self.pos) as usize).min(need - n);
            let got = read_at_end(self.f, buf, self.pos, want)?;
            (n, read, self.pos) = (n + got, read + got as u64, self.pos + got as u64);
            if got < want {
                // Shorter than at open: the end is here.
                self.size = self.pos;
            }
        }
        Ok((n, read))
    }
}

pub enum FileError {
    /// The source file could not be read: skip it and go on.
    Source(io::Error),
    /// The repository failed: the backup cannot go on.
    Repo(crate::error::Error),
}

/// Appends up to `want` bytes read at `pos`; fewer only at the end of the file.
fn read_at_end(f: &File, buf: &mut Vec<u8>, pos: u64, want: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let mut got = 0;
    while got < want {
        match f.read_at(&mut buf[start + got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
    buf.truncate(start + got);
    Ok(got)
}

/// O_NOATIME keeps the backup from changing what it backs up; it needs ownership, so fall back.
pub(super) fn open_noatime(path: &Path) -> io::Result<File> {
    match File::options().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}
