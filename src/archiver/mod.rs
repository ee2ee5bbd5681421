//! `backup`: turns paths on disk into a snapshot.

mod gitignore;
pub(crate) mod meta;
pub mod progress;
mod readahead;
pub mod select;
mod stdin;
mod walk;

pub use stdin::{Stream, backup_stream};

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Kind, Node};
use crate::id::Id;
use crate::patterns::Patterns;
use crate::repo::Repository;
use crate::repo::packer;
use crate::sys;
use progress::Progress;
use walk::Walker;

#[derive(Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub description: String,
    pub excludes: Patterns,
    /// What else is left out: directories with a tag file, files above a size.
    pub select: select::Selection,
    pub one_file_system: bool,
    pub dry_run: bool,
    /// Read every file even when the parent snapshot says it is unchanged.
    pub force: bool,
    /// The snapshot to compare with, instead of the newest one of this host and these paths.
    pub parent: Option<Id>,
    /// Change detection without the inode number and ctime (for filesystems where they are
    /// not stable, like some network mounts), or without ctime alone.
    pub ignore_inode: bool,
    pub ignore_ctime: bool,
    pub with_atime: bool,
    pub time_ns: Option<i64>,
    /// Updated as the backup goes, for a progress display.
    pub progress: Arc<Progress>,
    /// Set from another thread (on a signal) to stop: `backup` then returns
    /// [`Error::Interrupted`] once the packs already filled are durable; no snapshot is written.
    pub interrupt: Arc<AtomicBool>,
}

pub struct BackupOutcome {
    /// `None` on a dry run.
    pub snapshot: Option<Id>,
    pub parent: Option<Id>,
    pub summary: Summary,
    pub warnings: Vec<Warning>,
    /// Paths given more than once or inside another given path, dropped.
    pub dropped_paths: Vec<PathBuf>,
}

/// Something that went wrong with one entry; the backup went on without it or with less of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    pub message: String,
    /// The entry is in the snapshot, but maybe not as it is on disk: a file that changed while
    /// it was read, a directory that could not be listed (kept empty, with its metadata),
    /// extended attributes that could not be read. `false`: the entry is not in the snapshot.
    pub in_snapshot: bool,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Absolute, lexically clean paths (like restic, `..` is resolved lexically and symlinks kept),
/// without duplicates or paths nested in another given path.
pub fn normalize_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("current directory", e))?;
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let mut clean = PathBuf::from("/");
        for c in cwd.join(p).components() {
            match c {
                Component::ParentDir => {
                    clean.pop();
                }
                Component::Normal(n) => clean.push(n),
                _ => {}
            }
        }
        if std::fs::symlink_metadata(&clean).is_err() {
            return Err(Error::Invalid(format!("path does not exist: {}", p.display())));
        }
        out.push(clean);
    }
    out.sort();
    let mut kept: Vec<PathBuf> = Vec::new();
    let mut dropped = Vec::new();
    for p in out {
        if kept.iter().any(|k| p.starts_with(k)) {
            dropped.push(p);
        } else {
            kept.push(p);
        }
    }
    Ok((kept, dropped))
}

/// What to take from each directory on the way down to the given paths.
#[derive(Default)]
struct Plan {
    whole: bool,
    children: BTreeMap<Vec<u8>, Plan>,
}

impl Plan {
    fn of(paths: &[PathBuf]) -> Plan {
        let mut root = Plan::default();
        for p in paths {
            let mut at = &mut root;
            for c in p.components() {
                if let Component::Normal(n) = c {
                    at = at.children.entry(std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec()).or_default();
                }
            }
            at.whole = true;
        }
        if paths.iter().any(|p| p == Path::new("/")) {
            root.whole = true;
        }
        root
    }
}

pub fn backup(repo: &Repository, opts: &BackupOptions) -> Result<BackupOutcome> {
    let started = Instant::now();
    let (paths, dropped_paths) = normalize_paths(&opts.paths)?;
    let hostname = opts.host.clone().unwrap_or_else(sys::hostname);
    let path_strings: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parent = match opts.parent {
        _ if opts.force => None,
        Some(id) => Some((id, repo.load_snapshot(&id)?)),
        None => {
            let (snaps, _) = repo.snapshots()?;
            snaps.into_iter().rev().find(|(_, s)| s.hostname == hostname && s.paths == path_strings)
        }
    };
    let walked = packer::with_packer(repo, opts.dry_run, |packer| {
        let walker = walker(repo, packer, opts);
        if let Some((_, s)) = &parent {
            crate::trees::preload(repo, s.tree, crate::trees::PRELOAD_BYTES);
        }
        let root_tree = build(&walker, Path::new("/"), &Plan::of(&paths), parent.as_ref().map(|(_, s)| s.tree))?;
        Ok((root_tree, walker.warnings.into_inner().expect("poisoned")))
    });
    let ((root_tree, warnings), added) = walked?;
    let parent = parent.map(|(id, _)| id);
    commit(
        repo,
        opts,
        Done { started, hostname, paths: path_strings, parent, root_tree, warnings, added, dropped_paths },
    )
}

fn walker<'a>(repo: &'a Repository, packer: &'a packer::Packer<'a>, opts: &'a BackupOptions) -> Walker<'a> {
    Walker {
        repo,
        packer,
        excludes: opts.excludes.clone(),
        select: opts.select.clone(),
        one_file_system: opts.one_file_system,
        with_atime: opts.with_atime,
        ignore_inode: opts.ignore_inode,
        ignore_ctime: opts.ignore_ctime || opts.ignore_inode,
        interrupt: &opts.interrupt,
        counters: &opts.progress,
        warnings: Mutex::new(Vec::new()),
        buffers: Mutex::new(Vec::new()),
        zero_run: (repo.chunker().zero_run_len(), Mutex::new(None)),
        ahead: readahead::Readahead::new(opts.excludes.clone(), opts.one_file_system),
    }
}

/// What a backup's walk (or stream) left for its snapshot.
struct Done {
    started: Instant,
    hostname: String,
    paths: Vec<String>,
    parent: Option<Id>,
    root_tree: Id,
    warnings: Vec<Warning>,
    added: packer::Added,
    dropped_paths: Vec<PathBuf>,
}

/// Writes the snapshot (unless on a dry run): the commit point, everything it references is
/// durable and indexed by now.
fn commit(repo: &Repository, opts: &BackupOptions, d: Done) -> Result<BackupOutcome> {
    let Done { started, hostname, paths, parent, root_tree, mut warnings, added, dropped_paths } = d;
    let c = &opts.progress;
    warnings.sort();
    let summary = Summary {
        files_new: c.files_new.load(Relaxed),
        files_changed: c.files_changed.load(Relaxed),
        files_unchanged: c.files_unchanged.load(Relaxed),
        dirs_new: c.dirs_new.load(Relaxed),
        dirs_changed: c.dirs_changed.load(Relaxed),
        dirs_unchanged: c.dirs_unchanged.load(Relaxed),
        bytes_read: c.bytes_read.load(Relaxed),
        data_blobs_added: added.data_blobs,
        bytes_added: added.bytes,
        total_files: c.total_files.load(Relaxed),
        total_bytes: c.total_bytes.load(Relaxed),
        errors: warnings.len() as u64,
        duration_ns: started.elapsed().as_nanos() as u64,
    };
    let snap = Snapshot {
        time_ns: opts.time_ns.unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as i64),
        tree: root_tree,
        parent,
        hostname,
        username: sys::user_name(sys::uid()),
        uid: sys::uid(),
        gid: sys::gid(),
        paths,
        tags: opts.tags.clone(),
        description: opts.description.clone(),
        program_version: format!("snapfs {}", env!("CARGO_PKG_VERSION")),
        summary: summary.clone(),
        original: None,
    };
    let snapshot = if opts.dry_run { None } else { Some(repo.save_snapshot(&snap)?) };
    Ok(BackupOutcome { snapshot, parent: snap.parent, summary, warnings, dropped_paths })
}

/// Builds the directories above and including the given paths; returns the tree id of `path`.
fn build(w: &Walker, path: &Path, plan: &Plan, prev: Option<Id>) -> Result<Id> {
    let root_dev = std::fs::symlink_metadata(path).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap_or(0);
    if plan.whole {
        w.ahead.warm_tree(path, root_dev);
        return w.dir(path, prev, root_dev, None);
    }
    let parent = w.parent_dir(prev);
    let mut nodes = Vec::new();
    for (name, sub) in &plan.children {
        let p = path.join(sys::os(name));
        let md = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                w.skipped(format!("{}: {e}", p.display()));
                continue;
            }
        };
        let prev_node = parent.get(name);
        if sub.whole {
            let dev = std::os::unix::fs::MetadataExt::dev(&md);
            if md.is_dir() {
                w.ahead.warm_tree(&p, dev);
            }
            if let Some(n) = w.entry(&p, name, &md, prev_node, dev, None)? {
                nodes.push(n);
            }
            continue;
        }
        // An intermediate directory: its own metadata, but only the children on the way down.
        let md =
            if md.is_dir() { md } else { std::fs::metadata(&p).map_err(|e| Error::io(p.display().to_string(), e))? };
        let (mut node, _) = meta::node_from(&p, name, &md, w.with_atime);
        node.kind = Kind::Dir;
        node.link_target.clear();
        let sub_prev = prev_node.and_then(Node::subtree);
        node.content = vec![build(w, &p, sub, sub_prev)?];
        nodes.push(node);
    }
    w.store_tree(nodes)
}
