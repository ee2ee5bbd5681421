//! The parallel walk: one task per directory entry on rayon's pool, change detection against
//! the parent snapshot, and chunking of new file contents (parallel within large files too).

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::Warning;
use super::meta::node_from;
use super::progress::Progress;
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
                    self.dir(path, prev, root_dev)?
                };
                let c = &self.counters;
                match prev {
                    Some(p) if p == tree => c.dirs_unchanged.fetch_add(1, Relaxed),
                    Some(_) => c.dirs_changed.fetch_add(1, Relaxed),
                    None => c.dirs_new.fetch_add(1, Relaxed),
                };
                node.content = vec![tree];
            }
            Kind::File => {
                match parent.filter(|p| self.unchanged(p, &node)) {
                    Some(p) => {
                        node.content = p.content.clone();
                        self.counters.files_unchanged.fetch_add(1, Relaxed);
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
                        let c = if parent.is_some() { &self.counters.files_changed } else { &self.counters.files_new };
                        c.fetch_add(1, Relaxed);
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
    pub fn dir(&self, path: &Path, prev: Option<Id>, root_dev: u64) -> Result<Id> {
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
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|name| {
                let p = path.join(name);
                if self.excludes.matches(&p) {
                    return Ok(None);
                }
                let md = match fs::symlink_metadata(&p) {
                    Ok(md) => md,
                    Err(e) => {
                        self.skipped(format!("{}: {e}", p.display()));
                        return Ok(None);
                    }
                };
                self.entry(&p, name.as_bytes(), &md, parent.get(name.as_bytes()), root_dev)
            })
            .collect::<Result<_>>()?;
        let mut nodes: Vec<Node> = nodes.into_iter().flatten().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.store_tree(nodes)
    }

    pub fn store_tree(&self, nodes: Vec<Node>) -> Result<Id> {
        self.packer.add(ObjType::Tree, &tree::encode(&nodes))
    }

    /// Reads, cuts and stores a file's contents into `node.content`.
    fn file(&self, path: &Path, before: &Metadata, node: &mut Node) -> Result<(), FileError> {
        self.counters.set_current(path);
        let mut f = open_noatime(path).map_err(FileError::Source)?;
        let chunker = self.repo.chunker();
        let want = READ_BLOCK.max(2 * chunker.max_size());
        // Only the pages a file's bytes land on are touched, so small files can share the big
        // buffers; read_to_end fills them without zeroing first.
        let mut buf = self.buffers.lock().expect("poisoned").pop().unwrap_or_else(|| Vec::with_capacity(want));
        let mut eof = false;
        let mut total = 0u64;
        while !eof {
            self.check_interrupt().map_err(FileError::Repo)?;
            let need = want - buf.len();
            let n = (&mut f).take(need as u64).read_to_end(&mut buf).map_err(FileError::Source)?;
            eof = n < need;
            total += n as u64;
            let mut cuts = Vec::new();
            let mut off = 0;
            while off < buf.len() && (eof || buf.len() - off >= chunker.max_size()) {
                let n = chunker.next_len(&buf[off..], eof);
                cuts.push((off, n));
                off += n;
            }
            let ids: Vec<Id> = cuts
                .par_iter()
                .map(|&(o, n)| self.packer.add(ObjType::Data, &buf[o..o + n]))
                .collect::<Result<_>>()
                .map_err(FileError::Repo)?;
            node.content.extend(ids);
            buf.drain(..off);
        }
        buf.clear();
        let mut spare = self.buffers.lock().expect("poisoned");
        if spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
        drop(spare);
        self.counters.bytes_read.fetch_add(total, Relaxed);
        node.size = total;
        if let Ok(after) = f.metadata()
            && (after.size() != before.size()
                || after.mtime() != before.mtime()
                || after.mtime_nsec() != before.mtime_nsec())
        {
            self.incomplete(format!("{}: file changed while it was read; stored as read", path.display()));
        }
        Ok(())
    }
}

enum FileError {
    /// The source file could not be read: skip it and go on.
    Source(io::Error),
    /// The repository failed: the backup cannot go on.
    Repo(crate::error::Error),
}

/// O_NOATIME keeps the backup from changing what it backs up; it needs ownership, so fall back.
fn open_noatime(path: &Path) -> io::Result<File> {
    match File::options().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}
