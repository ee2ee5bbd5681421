//! Live counters of a running backup, read by a progress display on another thread, and the
//! quick pre-scan that gives it totals for an ETA.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::patterns::Patterns;

#[derive(Default)]
pub struct Progress {
    pub files_new: AtomicU64,
    pub files_changed: AtomicU64,
    pub files_unchanged: AtomicU64,
    pub dirs_new: AtomicU64,
    pub dirs_changed: AtomicU64,
    pub dirs_unchanged: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Files and bytes done so far, read or found unchanged.
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    /// The file being read most recently.
    pub current: Mutex<PathBuf>,
    /// What the pre-scan found so far, and whether it is complete.
    pub scan_files: AtomicU64,
    pub scan_bytes: AtomicU64,
    pub scan_done: AtomicBool,
    /// Tells the pre-scan to stop early when the backup is over.
    pub stop: AtomicBool,
    /// Called with each entry as it is stored, and whether it is a directory (a verbose
    /// listing), from any worker thread.
    pub each: Option<OnEntry>,
}

/// Told each entry stored: what happened to it, whether it is a directory, its path.
pub type OnEntry = Box<dyn Fn(Change, bool, &Path) + Send + Sync>;

/// What happened to an entry against the parent snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    Modified,
    Unchanged,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Modified => "modified",
            Change::Unchanged => "unchanged",
        }
    }
}

impl Progress {
    pub fn note(&self, change: Change, dir: bool, p: &Path) {
        if let Some(f) = &self.each {
            f(change, dir, p);
        }
    }

    pub fn set_current(&self, p: &Path) {
        if let Ok(mut c) = self.current.lock() {
            c.clear();
            c.push(p);
        }
    }
}

/// Counts files and bytes under `paths` (one stat each, no reads), for the ETA.
/// `.gitignore` files are not read: the totals are an estimate either way.
pub fn prescan(paths: &[PathBuf], excludes: &Patterns, select: &super::select::Selection, p: &Progress) {
    let mut stack: Vec<(PathBuf, bool)> = paths.iter().map(|p| (p.clone(), true)).collect();
    while let Some((path, given)) = stack.pop() {
        if p.stop.load(Relaxed) {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
        if !given && select.rejects(&path, &md) {
            continue;
        }
        if md.is_dir() {
            let Ok(rd) = std::fs::read_dir(&path) else { continue };
            for e in rd.flatten() {
                let child = e.path();
                if !excludes.matches(&child) {
                    stack.push((child, false));
                }
            }
        } else if md.is_file() {
            p.scan_files.fetch_add(1, Relaxed);
            p.scan_bytes.fetch_add(md.len(), Relaxed);
        }
    }
    p.scan_done.store(true, Relaxed);
}
