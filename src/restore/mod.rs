//! `restore`: writes a snapshot (or part of it) back to disk with its metadata.
//! First a plan (what each entry meets in the target, see `plan.rs`), then `--delete`'s
//! removals, directories parents first, files in parallel, hard links, and directory metadata
//! deepest first (so writing inside a read-only directory works and its mtime sticks), then
//! `--verify`'s re-read. Every system call goes through a directory descriptor (`dirfd.rs`):
//! the target can change while a restore runs, and the restore still never leaves it.

mod dirfd;
mod plan;
mod write;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::tree::Kind;
use crate::id::Id;
use crate::patterns::Patterns;
use crate::repo::Repository;
use crate::spans::{self, SpanReader};
use dirfd::{Dir, Stat};
use plan::{Action, Dirs, Item, Listing};
use write::Creation;

/// What to do with an entry that is already in the target (restic 0.17's `--overwrite`, plus
/// `rename` and `error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Never,
    Always,
    /// Replace unless it is a regular file of the same size and modification time.
    IfChanged,
    /// Replace only when the snapshot's modification time is newer.
    IfNewer,
    /// Keep it, and write the snapshot's entry beside it as `NAME.snapfs-<UTC time>`.
    Rename,
    /// Write nothing at all when anything is in the way.
    Error,
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
    /// Remove what the restored directories hold that the snapshot does not, within what the
    /// includes and excludes select.
    pub delete: bool,
    /// Re-read every file written and check it against the snapshot's chunk ids.
    pub verify: bool,
    /// Advanced as entries are written (directories are not counted): entries and file bytes.
    pub progress: Arc<crate::progress::Work>,
}

impl RestoreOptions {
    /// Everything into `target`, nothing existing replaced or removed.
    pub fn new(target: PathBuf) -> RestoreOptions {
        RestoreOptions {
            target,
            subpath: None,
            includes: Patterns::default(),
            excludes: Patterns::default(),
            dry_run: false,
            overwrite: Overwrite::Never,
            allow_damaged: false,
            delete: false,
            verify: false,
            progress: Default::default(),
        }
    }
}

/// A count for each kind of entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerKind {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub others: u64,
}

impl PerKind {
    fn add(&mut self, k: Kind) {
        match k {
            Kind::File => self.files += 1,
            Kind::Dir => self.dirs += 1,
            Kind::Symlink => self.symlinks += 1,
            _ => self.others += 1,
        }
    }

    fn add_stat(&mut self, st: &Stat) {
        self.add(if st.is_dir() {
            Kind::Dir
        } else if st.is_file() {
            Kind::File
        } else if st.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Fifo
        });
    }

    pub fn total(&self) -> u64 {
        self.files + self.dirs + self.symlinks + self.others
    }
}

impl std::ops::AddAssign for PerKind {
    fn add_assign(&mut self, o: PerKind) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.others += o.others;
    }
}

/// What happened to the entries, by kind. An entry written beside an existing one counts as
/// renamed, not restored; `deleted` counts every entry removed, also those below a removed
/// directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub restored: PerKind,
    pub skipped: PerKind,
    pub renamed: PerKind,
    pub deleted: PerKind,
    pub failed: PerKind,
}

#[derive(Default, Debug)]
pub struct RestoreOutcome {
    pub counts: Counts,
    pub bytes: u64,
    /// Existing entries left alone, by destination path.
    pub skipped: Vec<PathBuf>,
    /// Entries written beside an existing one, by the path they were written to.
    pub renamed: Vec<PathBuf>,
    /// Entries removed by `--delete` (a directory's contents not listed).
    pub deleted: Vec<PathBuf>,
    /// What a dry run would do, one line per entry.
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
    /// With `verify`: files re-read and checked, and those that differ from the snapshot.
    pub verified: u64,
    pub mismatches: Vec<String>,
}

/// Removes what is in the way of an entry being replaced; a directory only when it is empty,
/// or with `--delete`.
fn clear(dir: &Dir, name: &std::ffi::OsStr, delete: bool, deleted: &mut PerKind) -> std::io::Result<()> {
    match dir.stat(name)? {
        Some(st) if st.is_dir() && delete => dir.remove_all(name, false, &mut |s| deleted.add_stat(s)),
        Some(st) if st.is_dir() => dir.rmdir(name),
        Some(_) => dir.unlink(name),
        None => Ok(()),
    }
}

pub fn restore(repo: &Repository, tree: Id, opts: &RestoreOptions) -> Result<RestoreOutcome> {
    if opts.subpath.is_none() {
        crate::trees::preload(repo, tree, crate::trees::PRELOAD_BYTES);
    }
    let plan::Collected { mut items, unreadable, top } = plan::collect_all(repo, tree, opts)?;
    let mut out = RestoreOutcome { errors: unreadable, entries: items.len() as u64, ..Default::default() };
    // A directory whose listing could not be read is a directory not restored.
    out.counts.failed.dirs = out.errors.len() as u64;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let io_target = |e| Error::io(format!("target {}", opts.target.display()), e);
    if !opts.dry_run && !opts.target.exists() {
        std::fs::create_dir_all(&opts.target).map_err(io_target)?;
    }
    let target = match Dir::open_path(&opts.target) {
        Ok(d) => Some(Arc::new(d)),
        Err(e) if opts.dry_run && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_target(e)),
    };
    // Half of what is left of the descriptor limit: the rest is for files, packs and the index.
    let budget = (dirfd::open_files_limit().saturating_sub(256) / 2) as usize;
    let mut dirs = Dirs { target, held: vec![None; items.len()], budget };
    let conflicts = plan::plan(&mut items, &mut dirs, opts, &stamp);
    if let Some(&first) = conflicts.first() {
        return Err(Error::Exists { path: items[first].dest.clone(), more: conflicts.len() - 1 });
    }
    if opts.delete {
        delete_extras(&items, &dirs, top.as_deref(), opts, &mut out);
    }
    if opts.dry_run {
        dry_run(&items, &mut out);
        return Ok(out);
    }

    // When none of the top entries was in the target, everything below is made by this restore.
    let fresh = items.iter().filter(|it| it.parent.is_none()).all(|it| it.action == Action::Create);
    let created = if fresh { Creation::known(&opts.target) } else { None };
    let errors = Mutex::new(Vec::new());
    let failed = Mutex::new(PerKind::default());
    let fail = |it: &Item, e: &dyn std::fmt::Display| {
        errors.lock().expect("poisoned").push(format!("{}: {e}", it.dest.display()));
        failed.lock().expect("poisoned").add(it.node.kind);
    };
    let done = |c: &mut Counts, it: &Item| {
        if it.action == Action::Rename { c.renamed.add(it.node.kind) } else { c.restored.add(it.node.kind) }
    };

    // Directories, parents first, with owner write access until their real mode is set at the
    // end. The entries below a directory that could not be made are left out, its failure is
    // reported.
    let mut broken = vec![false; items.len()];
    for i in 0..items.len() {
        if items[i].parent.is_some_and(|p| broken[p]) {
            broken[i] = true;
            out.left_out += 1;
            failed.lock().expect("poisoned").add(items[i].node.kind);
            continue;
        }
        let it = &items[i];
        if it.node.kind != Kind::Dir || it.action == Action::LeftOut {
            continue;
        }
        if it.action == Action::Skip {
            out.counts.skipped.dirs += 1;
            out.skipped.push(it.dest.clone());
            continue;
        }
        // A directory that was there is held since the plan (within the budget).
        let made = match dirs.held[i].clone().filter(|_| it.action == Action::Merge) {
            Some(d) => dirfd::fchmod(&*d, 0o700).map(|_| None),
            None => dirs.of(&items, it.parent).and_then(|parent| {
                if it.action == Action::Replace {
                    clear(&parent, &it.name, opts.delete, &mut out.counts.deleted)?;
                }
                if it.action != Action::Merge {
                    parent.mkdir(&it.name, 0o700)?;
                }
                let d = parent.open(&it.name)?;
                dirfd::fchmod(&d, 0o700)?;
                Ok(Some(d))
            }),
        };
        match made {
            Ok(d) => {
                if let Some(d) = d {
                    dirs.hold(i, d);
                }
                done(&mut out.counts, it);
                if it.action == Action::Rename {
                    out.renamed.push(it.dest.clone());
                }
            }
            Err(e) => {
                fail(it, &e);
                broken[i] = true;
            }
        }
    }

    // Which entries to write, and the first path of every hardlinked inode.
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    let mut work = Vec::new();
    let mut links = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if it.node.kind == Kind::Dir || broken[i] || it.action == Action::LeftOut {
            continue;
        }
        if it.action == Action::Skip {
            out.counts.skipped.add(it.node.kind);
            out.skipped.push(it.dest.clone());
            continue;
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

    let file_bytes = |i: &usize| if items[*i].node.kind == Kind::File { items[*i].node.size } else { 0 };
    opts.progress.add_total(work.len() as u64, work.iter().map(file_bytes).sum());
    // One index snapshot for the whole restore: each read transaction costs lock system calls.
    let index = repo.index().reader()?;
    let contents: Vec<&[Id]> = work.iter().map(|&i| items[i].node.content.as_slice()).collect();
    let spans = SpanReader::for_files(repo, &index, &contents);
    let damaged = Mutex::new(Vec::new());
    let replaced = Mutex::new(PerKind::default());
    let write_one = |i: usize| -> Result<u64> {
        let it = &items[i];
        let dir = dirs.of(&items, it.parent).map_err(|e| Error::io(it.dest.display().to_string(), e))?;
        if it.action == Action::Replace {
            let mut gone = PerKind::default();
            clear(&dir, &it.name, opts.delete, &mut gone).map_err(|e| Error::io(it.dest.display().to_string(), e))?;
            *replaced.lock().expect("poisoned") += gone;
        }
        let (n, holes) = write::write_entry(&spans, &index, &dir, it, created, opts.allow_damaged)?;
        if !holes.is_empty() {
            damaged.lock().expect("poisoned").push((i, holes));
        }
        opts.progress.done(&it.dest, file_bytes(&i));
        Ok(n)
    };
    let run = || -> Vec<(usize, u64)> {
        work.par_iter().filter_map(|&i| write_one(i).map(|n| (i, n)).map_err(|e| fail(&items[i], &e)).ok()).collect()
    };
    let written = spans::in_read_pool(repo, run);
    out.counts.deleted += replaced.into_inner().expect("poisoned");
    let mut holes: Vec<(usize, Vec<Range<u64>>)> = damaged.into_inner().expect("poisoned");
    holes.sort_by_key(|(i, _)| *i);
    for (i, n) in &written {
        done(&mut out.counts, &items[*i]);
        if items[*i].node.kind == Kind::File {
            out.bytes += n;
        }
        if items[*i].action == Action::Rename {
            out.renamed.push(items[*i].dest.clone());
        }
    }
    let ok: HashSet<usize> = written.iter().map(|(i, _)| *i).collect();
    for (j, i) in links {
        if !ok.contains(&j) {
            continue;
        }
        let (a, b) = (&items[j], &items[i]);
        let linked = dirs.of(&items, a.parent).and_then(|from| {
            let to = dirs.of(&items, b.parent)?;
            if b.action == Action::Replace {
                clear(&to, &b.name, opts.delete, &mut out.counts.deleted)?;
            }
            from.link(&a.name, &to, &b.name)
        });
        match linked {
            Ok(()) => done(&mut out.counts, b),
            Err(e) => fail(b, &e),
        }
    }
    for (i, it) in items.iter().enumerate().rev() {
        if it.node.kind != Kind::Dir || broken[i] || matches!(it.action, Action::Skip | Action::LeftOut) {
            continue;
        }
        let set = dirs.of(&items, Some(i)).and_then(|d| write::set_file_meta(&*d, &it.node, None));
        if let Err(e) = set {
            fail(it, &format!("set metadata: {e}"));
        }
    }
    if opts.verify {
        let files: Vec<usize> = written.iter().map(|(i, _)| *i).filter(|&i| items[i].node.kind == Kind::File).collect();
        let skip: HashMap<usize, &[Range<u64>]> = holes.iter().map(|(i, r)| (*i, r.as_slice())).collect();
        let found: Vec<String> = files
            .par_iter()
            .filter_map(|&i| {
                let it = &items[i];
                let dir = dirs.of(&items, it.parent).map_err(|e| Error::io(it.dest.display().to_string(), e));
                match dir.and_then(|d| write::verify_file(repo, &index, &d, it, skip.get(&i).copied().unwrap_or(&[]))) {
                    Ok(m) => m,
                    Err(e) => Some(e.to_string()),
                }
            })
            .collect();
        out.verified = files.len() as u64;
        out.mismatches = found;
    }
    out.damaged = holes.into_iter().map(|(i, r)| (items[i].dest.clone(), r)).collect();
    out.errors.extend(errors.into_inner().expect("poisoned"));
    out.counts.failed += failed.into_inner().expect("poisoned");
    Ok(out)
}

/// `--delete`: in every directory that was already there (and the target's top), removes the
/// entries the snapshot's listing does not have, when the includes and excludes select them.
fn delete_extras(items: &[Item], dirs: &Dirs, top: Option<&Listing>, opts: &RestoreOptions, out: &mut RestoreOutcome) {
    let mut scopes: Vec<(Arc<Dir>, &Listing, PathBuf)> = Vec::new();
    if let (Some(t), Some(l)) = (&dirs.target, top) {
        scopes.push((t.clone(), l, opts.target.clone()));
    }
    for (i, it) in items.iter().enumerate() {
        if let (Action::Merge, Some(l), Some(d)) = (it.action, &it.listing, &dirs.held[i]) {
            scopes.push((d.clone(), l, it.dest.clone()));
        }
    }
    for (dir, listing, dest) in scopes {
        let names = match dir.names() {
            Ok(n) => n,
            Err(e) => {
                out.errors.push(format!("{}: list for --delete: {e}", dest.display()));
                continue;
            }
        };
        for name in names {
            use std::os::unix::ffi::OsStrExt;
            if listing.names.contains(name.as_bytes()) {
                continue;
            }
            let snap = listing.snap.join(&name);
            if opts.excludes.matches(&snap) || !(listing.included || opts.includes.matches(&snap)) {
                continue;
            }
            let path = dest.join(&name);
            let deleted = &mut out.counts.deleted;
            match dir.remove_all(&name, opts.dry_run, &mut |st| deleted.add_stat(st)) {
                Ok(()) => out.deleted.push(path),
                Err(e) => out.errors.push(format!("{}: delete: {e}", path.display())),
            }
        }
    }
}

/// The plan as counts and one line per entry, nothing written.
fn dry_run(items: &[Item], out: &mut RestoreOutcome) {
    for p in &out.deleted {
        out.planned.push(format!("{:<13} {}", "delete", p.display()));
    }
    for it in items {
        let (word, count): (&str, Option<&mut PerKind>) = match it.action {
            Action::Create => ("restore", Some(&mut out.counts.restored)),
            Action::Replace => ("overwrite", Some(&mut out.counts.restored)),
            Action::Merge => ("exists", Some(&mut out.counts.restored)),
            Action::Rename => ("rename", Some(&mut out.counts.renamed)),
            Action::Skip => ("skip (exists)", Some(&mut out.counts.skipped)),
            Action::LeftOut => ("skip", None),
        };
        if let Some(c) = count {
            c.add(it.node.kind);
        }
        if it.action == Action::Skip {
            out.skipped.push(it.dest.clone());
        }
        out.planned.push(format!("{word:<13} {}", it.dest.display()));
    }
}
