//! Counters a long operation (restore, `check --read-data`) advances and a display on another
//! thread reads: how much there is and how much is done. The library only counts; drawing is
//! the caller's.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Told each item done, by path.
pub type OnItem = Box<dyn Fn(&Path) + Send + Sync>;

#[derive(Default)]
pub struct Work {
    pub items_total: AtomicU64,
    pub items_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Called with each item when it is done, from any worker thread (a verbose listing).
    pub each: Option<OnItem>,
}

impl Work {
    pub fn add_total(&self, items: u64, bytes: u64) {
        self.items_total.fetch_add(items, Relaxed);
        self.bytes_total.fetch_add(bytes, Relaxed);
    }

    pub fn done(&self, item: &Path, bytes: u64) {
        self.items_done.fetch_add(1, Relaxed);
        self.bytes_done.fetch_add(bytes, Relaxed);
        if let Some(f) = &self.each {
            f(item);
        }
    }
}

// By hand: the callback has no Debug, and options holding a `Work` derive it.
impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("items", &(self.items_done.load(Relaxed), self.items_total.load(Relaxed)))
            .field("bytes", &(self.bytes_done.load(Relaxed), self.bytes_total.load(Relaxed)))
            .finish_non_exhaustive()
    }
}
