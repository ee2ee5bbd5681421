//! Writing one entry and its metadata, always through its directory's descriptor or its own.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use super::dirfd::{self, Dir};
use super::plan::Item;
use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::tree::{Kind, Node};
use crate::index::IndexReader;
use crate::reader::FileMap;
use crate::repo::Repository;
use crate::spans::SpanReader;
use crate::sys;

/// The owner and mode a file this restore creates gets by itself, so that a fchown or fchmod
/// that would change nothing is left out: the two were 15% of a large restore's system time.
/// Known only when no top entry was in the target (so every directory below is made by this
/// restore) and the target cannot hand a group or an ACL down: its group is ours and it has no
/// default ACL.
#[derive(Clone, Copy)]
pub(super) struct Creation {
    uid: u32,
    gid: u32,
    umask: u32,
}

impl Creation {
    pub fn known(target: &Path) -> Option<Creation> {
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = sys::effective_ids();
        let t = std::fs::metadata(target).ok()?;
        let acl = match xattr::get(target, "system.posix_acl_default") {
            Ok(v) => v.is_some(),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => false,
            Err(_) => return None,
        };
        (t.gid() == gid && !acl).then_some(())?;
        Some(Creation { uid, gid, umask: sys::umask()? })
    }

    fn owner_is(&self, n: &Node) -> bool {
        (n.uid, n.gid) == (self.uid, self.gid)
    }

    /// Whether creating with `n.mode` gives exactly `n.mode`: no bits the umask takes away, no
    /// set-id or sticky bits, and no ACL xattr (setting one rewrites the group bits).
    fn mode_is(&self, n: &Node) -> bool {
        n.mode & 0o7000 == 0 && n.mode & self.umask == 0 && n.xattrs.is_empty()
    }
}

/// Creates one non-directory entry in `dir` with its metadata; returns the bytes written and the
/// ranges left as holes because their chunk was damaged (see `RestoreOptions::allow_damaged`).
pub(super) fn write_entry(
    spans: &SpanReader,
    index: &IndexReader,
    dir: &Dir,
    it: &Item,
    created: Option<Creation>,
    allow_damaged: bool,
) -> Result<(u64, Vec<Range<u64>>)> {
    let n = &it.node;
    let io = |e| Error::io(it.dest.display().to_string(), e);
    let made = match n.kind {
        Kind::File => {
            let (f, size, holes) = write_file(spans, index, dir, it, allow_damaged)?;
            return set_file_meta(&f, n, created).map(|_| (size, holes)).map_err(|e| meta_error(&it.dest, e));
        }
        Kind::Symlink => dir.symlink(&n.link_target, &it.name),
        Kind::Fifo => dir.mknod(&it.name, libc::S_IFIFO | n.mode, 0),
        Kind::CharDev => dir.mknod(&it.name, libc::S_IFCHR | n.mode, n.rdev),
        Kind::BlockDev => dir.mknod(&it.name, libc::S_IFBLK | n.mode, n.rdev),
        Kind::Socket => dir.mknod(&it.name, libc::S_IFSOCK | n.mode, 0),
        Kind::Dir => return Ok((0, Vec::new())),
    };
    made.map_err(io)?;
    set_entry_meta(dir, it).map_err(|e| meta_error(&it.dest, e))?;
    Ok((0, Vec::new()))
}

/// Whether every byte is zero, a word at a time.
fn is_zero(b: &[u8]) -> bool {
    // SAFETY: u64 has no invalid bit patterns, so any aligned middle part may be read as u64s.
    let (head, mid, tail) = unsafe { b.align_to::<u64>() };
    head.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && tail.iter().all(|&x| x == 0)
}

/// Writes `data` at `off`, leaving out every all-zero run of whole file system blocks (aligned
/// in the file, not in the chunk): they stay holes, so a sparse file stays sparse even inside
/// one of FastCDC's large chunks.
fn write_sparse(f: &File, data: &[u8], off: u64, block: u64) -> std::io::Result<()> {
    let end = off + data.len() as u64;
    // Pieces from one block boundary to the next; the first and last may be partial blocks,
    // which are written whatever they hold (a partial hole gains nothing).
    let mut pos = off;
    let mut run: Option<u64> = None;
    while pos < end {
        let next = ((pos / block + 1) * block).min(end);
        let piece = &data[(pos - off) as usize..(next - off) as usize];
        let hole = next - pos == block && is_zero(piece);
        match (hole, run) {
            (true, Some(start)) => {
                f.write_all_at(&data[(start - off) as usize..(pos - off) as usize], start)?;
                run = None;
            }
            (false, None) => run = Some(pos),
            _ => {}
        }
        pos = next;
    }
    if let Some(start) = run {
        f.write_all_at(&data[(start - off) as usize..], start)?;
    }
    Ok(())
}

/// Writes a file's chunks at their offsets, in parallel; all-zero blocks become holes, and so
/// do unreadable chunks with `allow_damaged` (their ranges are returned, in order). The file is
/// sized at the end, which makes the holes at its end. Returns the open file, so its metadata
/// is set without a lookup by name.
fn write_file(
    spans: &SpanReader,
    index: &IndexReader,
    dir: &Dir,
    it: &Item,
    allow_damaged: bool,
) -> Result<(File, u64, Vec<Range<u64>>)> {
    let node = &it.node;
    let io = |e| Error::io(it.dest.display().to_string(), e);
    let map = FileMap::new(index, &node.content, node.size)?;
    // Created with its own mode (less the umask), so that often no fchmod is needed.
    let f = dir.create(&it.name, node.mode & 0o777).map_err(io)?;
    let block = dirfd::block_size(&f).map_err(io)?;
    let chunks: Vec<_> = map.chunks().collect();
    let damaged = Mutex::new(Vec::new());
    let result = chunks
        .par_iter()
        .try_for_each(|&(off, id, loc)| {
            // The outer result is the chunk's read, the inner one the write to the file.
            let read = if loc.ty != ObjType::Data {
                Err(Error::corrupt(format!("blob {}", id.short()), "not a data blob"))
            } else {
                spans.with_blob(id, loc, |data| {
                    // The offsets of the following chunks come from the index's lengths: a chunk
                    // of another length (an altered index) would shift them, so it is refused.
                    if data.len() != loc.raw_len as usize {
                        return Err(Error::corrupt(
                            format!("data blob {}", id.short()),
                            "length differs from the index",
                        ));
                    }
                    write_sparse(&f, data, off, block).map_err(io)
                })
            };
            match read {
                Ok(written) => written,
                Err(_) if allow_damaged => {
                    damaged.lock().expect("poisoned").push(off..off + u64::from(loc.raw_len));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .and_then(|_| f.set_len(map.size()).map_err(io));
    if let Err(e) = result {
        // A partly written file must not pass for a restored one.
        let _ = dir.unlink(&it.name);
        return Err(e);
    }
    let mut damaged = damaged.into_inner().expect("poisoned");
    damaged.sort_by_key(|r| r.start);
    // Neighbouring damaged chunks are one range to the reader.
    damaged.dedup_by(|next, prev| {
        let touch = prev.end == next.start;
        if touch {
            prev.end = next.end;
        }
        touch
    });
    Ok((f, map.size(), damaged))
}

fn meta_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{}: set metadata", path.display()), e)
}

/// Owner (when root), xattrs, mode, then times, on an open file or directory: each step can
/// disturb the ones before it. `created` says what a new file already has (see [`Creation`]).
pub(super) fn set_file_meta(f: &impl std::os::fd::AsRawFd, n: &Node, created: Option<Creation>) -> std::io::Result<()> {
    if sys::uid() == 0 && !created.is_some_and(|c| c.owner_is(n)) {
        dirfd::fchown(f, n.uid, n.gid)?;
    }
    for (k, v) in &n.xattrs {
        dirfd::fsetxattr(f, k, v)?;
    }
    if !created.is_some_and(|c| c.mode_is(n)) {
        dirfd::fchmod(f, n.mode & 0o7777)?;
    }
    // Without a stored atime, use mtime as tar does: restored metadata then does not depend on
    // when the restore ran.
    sys::set_file_times(f, Some(n.atime.unwrap_or(n.mtime)), n.mtime)
}

/// The same as `set_file_meta` for entries that cannot be opened (symlinks, FIFOs, nodes): by
/// name in their directory, never following a symlink.
fn set_entry_meta(dir: &Dir, it: &Item) -> std::io::Result<()> {
    let n = &it.node;
    if sys::uid() == 0 {
        dir.chown_entry(&it.name, n.uid, n.gid)?;
    }
    for (k, v) in &n.xattrs {
        dir.set_xattr_entry(&it.name, k, v)?;
    }
    if n.kind != Kind::Symlink {
        dir.chmod_entry(&it.name, n.mode & 0o7777)?;
    }
    dir.set_times_entry(&it.name, n.atime.unwrap_or(n.mtime), n.mtime)
}

/// Re-reads a restored file and checks every chunk's keyed hash against the snapshot's chunk
/// id; chunks in `skip` (damaged ones written as holes) are not checked. Returns what differs.
pub(super) fn verify_file(
    repo: &Repository,
    index: &IndexReader,
    dir: &Dir,
    it: &Item,
    skip: &[Range<u64>],
) -> Result<Option<String>> {
    let io = |e| Error::io(format!("{}: verify", it.dest.display()), e);
    let map = FileMap::new(index, &it.node.content, it.node.size)?;
    let f = dir.open_file(&it.name).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len != map.size() {
        return Ok(Some(format!("{}: {len} bytes, the snapshot has {}", it.dest.display(), map.size())));
    }
    let mut buf = Vec::new();
    for (off, id, loc) in map.chunks() {
        let end = off + u64::from(loc.raw_len);
        if skip.iter().any(|r| r.start < end && off < r.end) {
            continue;
        }
        buf.resize(loc.raw_len as usize, 0);
        f.read_exact_at(&mut buf, off).map_err(io)?;
        if repo.keys().id(ObjType::Data, &buf) != *id {
            return Ok(Some(format!("{}: bytes {off}-{} differ from the snapshot", it.dest.display(), end - 1)));
        }
    }
    Ok(None)
}
