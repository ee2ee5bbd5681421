//! `restore`: writes a snapshot (or part of it) back to disk with its metadata.
//! Directories first, then files in parallel, then links and nodes, then directory metadata
//! deepest first (so writing inside a read-only directory works and its mtime sticks).

use std::collections::HashMap;
use std::fs::{self, File};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::tree::{Kind, Node};
use crate::id::Id;
use crate::index::IndexReader;
use crate::patterns::Patterns;
use crate::reader::FileMap;
use crate::repo::Repository;
use crate::sys;
use crate::trees::Trees;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Never,
    Always,
    IfChanged,
}

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Restore only this absolute path inside the snapshot: a directory's contents, or one entry.
    pub subpath: Option<PathBuf>,
    pub includes: Patterns,
    pub excludes: Patterns,
    pub dry_run: bool,
    pub overwrite: Overwrite,
    /// Write a file whose chunks are partly unreadable anyway, leaving holes where the damaged
    /// chunks were; without it such a file is not restored at all.
    pub allow_damaged: bool,
}

#[derive(Default, Debug)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
    /// Existing entries left alone, by destination path.
    pub skipped: Vec<PathBuf>,
    /// What a dry run would write.
    pub planned: Vec<String>,
    /// Entries that failed, each with the reason.
    pub errors: Vec<String>,
    /// Entries selected from the snapshot (all of them, not only those written).
    pub entries: u64,
    /// Entries not attempted because a directory above them could not be made.
    pub left_out: u64,
    /// With `allow_damaged`: files written with holes, and the byte ranges of each that are holes
    /// because their chunk could not be read (in order).
    pub damaged: Vec<(PathBuf, Vec<Range<u64>>)>,
}

struct Item {
    dest: PathBuf,
    node: Node,
    /// The item of the directory this entry is in; None at the top of the restore.
    parent: Option<usize>,
}

pub fn restore(repo: &Repository, tree: Id, opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let mut items = Vec::new();
    // Directories whose listing is damaged: reported, and everything else is still restored.
    let mut unreadable = Vec::new();
    // Small: a restore reads each listing once; the cache only spares repeats of one subtree.
    let trees = Trees::new(repo, 4 << 20);
    let sub = opts.subpath.as_ref().filter(|p| p.components().any(|c| matches!(c, std::path::Component::Normal(_))));
    match sub {
        None => {
            collect(&trees, tree, Path::new("/"), &opts.target, None, opts, &mut items, false, &mut unreadable)?;
        }
        Some(sub) => {
            let node = trees.resolve(tree, sub)?.expect("a path below /");
            match node.subtree() {
                Some(t) => {
                    collect(&trees, t, sub, &opts.target, None, opts, &mut items, false, &mut unreadable)?;
                }
                None => {
                    let dest = opts.target.join(sys::os(&node.name));
                    items.push(Item { dest, node, parent: None });
                }
            }
        }
    }
    let mut out = RestoreOutcome { errors: unreadable, entries: items.len() as u64, ..Default::default() };
    if opts.dry_run {
        for it in &items {
            let exists = fs::symlink_metadata(&it.dest).is_ok();
            let action = match (exists, it.node.kind) {
                (true, Kind::Dir) => "exists",
                (true, _) if !replace(&it.dest, &it.node, opts.overwrite) => "skip (exists)",
                (true, _) => "overwrite",
                _ => "restore",
            };
            out.planned.push(format!("{action:<13} {}", it.dest.display()));
        }
        return Ok(out);
    }
    if !opts.target.exists() {
        fs::create_dir_all(&opts.target).map_err(|e| Error::io(format!("create {}", opts.target.display()), e))?;
    }
    // When none of the top entries exists in the target (a new or empty directory, or a new
    // filesystem's root with only lost+found), nothing below them can be in the way, so the
    // probes of what exists (two stats per entry, a good part of a large restore's system
    // time) are skipped.
    let absent = |p: &Path| matches!(fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let fresh = items.iter().filter(|it| it.parent.is_none()).all(|it| absent(&it.dest));
    let created = if fresh { Creation::known(&opts.target) } else { None };
    let errors = Mutex::new(Vec::new());
    let fail = |it: &Item, e: &dyn std::fmt::Display| {
        errors.lock().expect("poisoned").push(format!("{}: {e}", it.dest.display()))
    };

    // Directories, parents first, with owner write access until their real mode is set at the
    // end. `keep[i]` says whether entry i's directory (or, for others, parent) is in place; the
    // children of a directory that could not be made are left out, its failure is reported.
    let mut keep = vec![true; items.len()];
    // Whether entry i is a directory that failed, or is below one.
    let mut broken = vec![false; items.len()];
    for (i, it) in items.iter().enumerate() {
        if let Some(p) = it.parent.filter(|&p| !keep[p]) {
            keep[i] = false;
            if broken[p] {
                broken[i] = true;
                out.left_out += 1;
            }
            continue;
        }
        if it.node.kind != Kind::Dir {
            continue;
        }
        match if fresh { Err(()) } else { fs::symlink_metadata(&it.dest).map_err(|_| ()) } {
            Ok(m) if m.is_dir() => {}
            Ok(_) if opts.overwrite == Overwrite::Never => {
                out.skipped.push(it.dest.clone());
                keep[i] = false;
                continue;
            }
            Ok(_) => {
                let _ = fs::remove_file(&it.dest);
            }
            Err(()) => {}
        }
        if let Err(e) =
            fs::create_dir_all(&it.dest).and_then(|_| fs::set_permissions(&it.dest, fs::Permissions::from_mode(0o700)))
        {
            fail(it, &e);
            keep[i] = false;
            broken[i] = true;
        } else {
            out.dirs += 1;
        }
    }

    // Which entries to write, and the first path of every hardlinked inode.
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    let mut work = Vec::new();
    let mut links = Vec::new();
    let exists: Vec<bool> = if fresh {
        vec![false; items.len()]
    } else {
        items
            .par_iter()
            .enumerate()
            .map(|(i, it)| keep[i] && it.node.kind != Kind::Dir && fs::symlink_metadata(&it.dest).is_ok())
            .collect()
    };
    for (i, it) in items.iter().enumerate() {
        if it.node.kind == Kind::Dir || !keep[i] {
            continue;
        }
        if exists[i] {
            if !replace(&it.dest, &it.node, opts.overwrite) {
                out.skipped.push(it.dest.clone());
                continue;
            }
            if let Err(e) = fs::remove_file(&it.dest) {
                fail(it, &e);
                continue;
            }
        }
        if it.node.nlink > 1 {
            if let Some(&j) = first_link.get(&(it.node.dev, it.node.ino)) {
                links.push((j, i));
                continue;
            }
            first_link.insert((it.node.dev, it.node.ino), i);
        }
        work.push(i);
    }

    // One index snapshot for the whole restore: each read transaction costs lock system calls.
    let index = repo.index().reader()?;
    let damaged = Mutex::new(Vec::new());
    let written: Vec<(usize, u64)> = work
        .par_iter()
        .filter_map(|&i| {
            let it = &items[i];
            match write_entry(repo, &index, it, created, opts.allow_damaged) {
                Ok((n, holes)) => {
                    if !holes.is_empty() {
                        damaged.lock().expect("poisoned").push((it.dest.clone(), holes));
                    }
                    Some((i, n))
                }
                Err(e) => {
                    fail(it, &e);
                    None
                }
            }
        })
        .collect();
    out.damaged = damaged.into_inner().expect("poisoned");
    out.damaged.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, n) in &written {
        if items[*i].node.kind == Kind::File {
            out.files += 1;
            out.bytes += n;
        } else {
            out.others += 1;
        }
    }
    let ok: std::collections::HashSet<usize> = written.iter().map(|(i, _)| *i).collect();
    for (j, i) in links {
        if !ok.contains(&j) {
            continue;
        }
        match fs::hard_link(&items[j].dest, &items[i].dest) {
            Ok(()) => out.files += 1,
            Err(e) => fail(&items[i], &e),
        }
    }
    for (i, it) in items.iter().enumerate().rev() {
        if it.node.kind == Kind::Dir
            && keep[i]
            && let Err(e) = set_meta(&it.dest, &it.node)
        {
            fail(it, &e);
        }
    }
    out.errors.extend(errors.into_inner().expect("poisoned"));
    Ok(out)
}

fn replace(dest: &Path, node: &Node, mode: Overwrite) -> bool {
    match mode {
        Overwrite::Never => false,
        Overwrite::Always => true,
        Overwrite::IfChanged => match fs::symlink_metadata(dest) {
            Ok(m) => {
                !(node.kind == Kind::File
                    && m.is_file()
                    && m.size() == node.size
                    && (m.mtime(), m.mtime_nsec() as u32) == (node.mtime.sec, node.mtime.nsec))
            }
            Err(_) => true,
        },
    }
}

/// Gathers the entries to restore under `tree`; `forced` means an ancestor matched an include.
/// Returns whether anything was selected, so directories leading to included paths are kept.
/// A subdirectory whose tree cannot be read is left out and recorded in `unreadable`.
#[allow(clippy::too_many_arguments)]
fn collect(
    trees: &Trees<&Repository>,
    tree: Id,
    at: &Path,
    dest: &Path,
    parent: Option<usize>,
    opts: &RestoreOptions,
    out: &mut Vec<Item>,
    forced: bool,
    unreadable: &mut Vec<String>,
) -> Result<bool> {
    let mut any = false;
    // Owned, not through the cache: a restore reads each listing once and moves its nodes.
    for node in trees.source().load_tree(&tree)? {
        let name = sys::os(&node.name);
        let snap_path = at.join(name);
        if opts.excludes.matches(&snap_path) {
            continue;
        }
        let included = forced || opts.includes.is_empty() || opts.includes.matches(&snap_path);
        let d = dest.join(name);
        if let Some(sub) = node.subtree() {
            let at_dir = out.len();
            out.push(Item { dest: d.clone(), node, parent });
            match collect(trees, sub, &snap_path, &d, Some(at_dir), opts, out, included, unreadable) {
                Ok(selected) if selected || included => any = true,
                Ok(_) => out.truncate(at_dir),
                Err(e) => {
                    out.truncate(at_dir);
                    unreadable.push(format!("{}: directory not restored: {e}", d.display()));
                }
            }
        } else if included {
            out.push(Item { dest: d, node, parent });
            any = true;
        }
    }
    Ok(any)
}

/// The owner and mode a file this restore creates gets by itself, so that a fchown or fchmod
/// that would change nothing is left out: the two were 15% of a large restore's system time.
/// Known only when no top entry was in the target (so every directory below is made by this
/// restore) and the target cannot hand a group or an ACL down: its group is ours and it has no
/// default ACL.
#[derive(Clone, Copy)]
struct Creation {
    uid: u32,
    gid: u32,
    umask: u32,
}

impl Creation {
    fn known(target: &Path) -> Option<Creation> {
        let (uid, gid) = sys::effective_ids();
        let t = fs::metadata(target).ok()?;
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

/// Creates one non-directory entry with its metadata; returns the bytes written and the ranges
/// left as holes because their chunk was damaged (see [`RestoreOptions::allow_damaged`]).
fn write_entry(
    repo: &Repository,
    index: &IndexReader,
    it: &Item,
    created: Option<Creation>,
    allow_damaged: bool,
) -> Result<(u64, Vec<Range<u64>>)> {
    let n = &it.node;
    let io = |e| Error::io(it.dest.display().to_string(), e);
    let made = match n.kind {
        Kind::File => {
            let (f, size, holes) = write_file(repo, index, &it.dest, n, allow_damaged)?;
            return set_file_meta(&f, n, created).map(|_| (size, holes)).map_err(|e| meta_error(&it.dest, e));
        }
        Kind::Symlink => std::os::unix::fs::symlink(sys::os(&n.link_target), &it.dest),
        Kind::Fifo => sys::mknod(&it.dest, libc::S_IFIFO | n.mode, 0),
        Kind::CharDev => sys::mknod(&it.dest, libc::S_IFCHR | n.mode, n.rdev),
        Kind::BlockDev => sys::mknod(&it.dest, libc::S_IFBLK | n.mode, n.rdev),
        Kind::Socket => sys::mknod(&it.dest, libc::S_IFSOCK | n.mode, 0),
        Kind::Dir => return Ok((0, Vec::new())),
    };
    made.map_err(io)?;
    set_meta(&it.dest, n)?;
    Ok((0, Vec::new()))
}

/// Writes a file's chunks at their offsets, in parallel; all-zero chunks become holes, and so do
/// unreadable ones with `allow_damaged` (their ranges are returned, in order). Returns the open
/// file, so its metadata is set without another path lookup.
fn write_file(
    repo: &Repository,
    index: &IndexReader,
    dest: &Path,
    node: &Node,
    allow_damaged: bool,
) -> Result<(File, u64, Vec<Range<u64>>)> {
    let io = |e| Error::io(dest.display().to_string(), e);
    let map = FileMap::new(index, &node.content, node.size)?;
    // Created with its own mode (less the umask), so that often no fchmod is needed.
    let f = fs::OpenOptions::new().write(true).create_new(true).mode(node.mode & 0o777).open(dest).map_err(io)?;
    let chunks: Vec<_> = map.chunks().collect();
    let holes = AtomicBool::new(false);
    let damaged = Mutex::new(Vec::new());
    let result = chunks
        .par_iter()
        .try_for_each(|&(off, id, loc)| {
            // The outer result is the chunk's read, the inner one the write to `dest`.
            let read = if loc.ty != ObjType::Data {
                Err(Error::corrupt(format!("blob {}", id.short()), "not a data blob"))
            } else {
                repo.with_blob_at(id, loc, |data| {
                    // The offsets of the following chunks come from the index's lengths: a chunk
                    // of another length (an altered index) would shift them, so it is refused.
                    if data.len() != loc.raw_len as usize {
                        return Err(Error::corrupt(
                            format!("data blob {}", id.short()),
                            "length differs from the index",
                        ));
                    }
                    if data.iter().all(|&b| b == 0) {
                        holes.store(true, Ordering::Relaxed);
                        return Ok(());
                    }
                    f.write_all_at(data, off).map_err(io)
                })
            };
            match read {
                Ok(written) => written,
                Err(_) if allow_damaged => {
                    damaged.lock().expect("poisoned").push(off..off + u64::from(loc.raw_len));
                    holes.store(true, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        // Only a hole at the end leaves the file short; otherwise the writes set its size.
        .and_then(|_| if holes.load(Ordering::Relaxed) { f.set_len(map.size()).map_err(io) } else { Ok(()) });
    if let Err(e) = result {
        // A partly written file must not pass for a restored one.
        let _ = fs::remove_file(dest);
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

/// Owner (when root), xattrs, mode, then times: each step can disturb the ones before it.
/// `created` says what the new file already has (see [`Creation`]).
fn set_file_meta(f: &File, n: &Node, created: Option<Creation>) -> std::io::Result<()> {
    if sys::uid() == 0 && !created.is_some_and(|c| c.owner_is(n)) {
        std::os::unix::fs::fchown(f, Some(n.uid), Some(n.gid))?;
    }
    for (k, v) in &n.xattrs {
        xattr::FileExt::set_xattr(f, sys::os(k), v)?;
    }
    if !created.is_some_and(|c| c.mode_is(n)) {
        f.set_permissions(fs::Permissions::from_mode(n.mode))?;
    }
    sys::set_file_times(f, Some(n.atime.unwrap_or(n.mtime)), n.mtime)
}

/// The same as `set_file_meta` by path, for directories and entries that are not regular files.
fn set_meta(path: &Path, n: &Node) -> Result<()> {
    let io = |e| meta_error(path, e);
    if sys::uid() == 0 {
        sys::lchown(path, n.uid, n.gid).map_err(io)?;
    }
    for (k, v) in &n.xattrs {
        xattr::set(path, sys::os(k), v).map_err(io)?;
    }
    if n.kind != Kind::Symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(n.mode)).map_err(io)?;
    }
    // Without a stored atime, use mtime as tar does: restored metadata then does not depend on
    // when the restore ran.
    sys::set_times(path, Some(n.atime.unwrap_or(n.mtime)), n.mtime).map_err(io)
}
