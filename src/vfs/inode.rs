//! Inode numbers and the table of inodes the kernel holds.
//!
//! Numbers are derived, not allocated: a child's number is a hash of its parent's number and
//! its name, so the same path always has the same number (across lookups, forgets and even
//! mounts) and no global counter or path table is needed. Hardlinked files take a number from
//! their snapshot and their source (device, inode) instead, so all their names share one inode.
//! The table only holds what the kernel currently references: an entry is added by `lookup` or
//! `readdirplus`, counted, and dropped when `forget` brings its count to zero.
//!
//! Two different paths could hash to the same 63-bit number; with a million entries the chance
//! is about 1 in 10^7, accepted in exchange for stateless numbering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::catalog::SnapInfo;
use crate::format::tree::Node;
use crate::id::Id;

pub const ROOT: u64 = 1;
pub const SNAPSHOTS: u64 = 2;
pub const IDS: u64 = 3;
pub const TAGS: u64 = 4;
pub const HOSTS: u64 = 5;
pub const AT: u64 = 6;
pub const HISTORY: u64 = 7;
/// Derived numbers stay above this, clear of the fixed ones.
const FIRST_DERIVED: u64 = 1024;

/// The fixed top-level directories, in listing order.
pub const TOP: [(&str, u64); 6] =
    [("snapshots", SNAPSHOTS), ("ids", IDS), ("tags", TAGS), ("hosts", HOSTS), ("at", AT), ("history", HISTORY)];

fn derive(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes")) >> 1;
    if v < FIRST_DERIVED { v + FIRST_DERIVED } else { v }
}

/// The number of the entry `name` in the directory `parent`.
pub fn child(parent: u64, name: &[u8]) -> u64 {
    derive(&[b"child", &parent.to_le_bytes(), name])
}

/// The number of a directory entry that stands for a particular snapshot (its root): the
/// snapshot id is part of it so a name that comes to mean another snapshot gets a new inode.
pub fn snapshot_root(parent: u64, name: &[u8], snap: &[u8; 32]) -> u64 {
    derive(&[b"snapshot", &parent.to_le_bytes(), name, snap])
}

/// A symlink's number, which changes with its target.
pub fn link(parent: u64, name: &[u8], target: &[u8]) -> u64 {
    derive(&[b"link", &parent.to_le_bytes(), name, target])
}

/// The number shared by every name of a hardlinked file within one snapshot root.
pub fn hardlink(root: u64, dev: u64, ino: u64) -> u64 {
    derive(&[b"hardlink", &root.to_le_bytes(), &dev.to_le_bytes(), &ino.to_le_bytes()])
}

/// What an inode stands for.
pub enum What {
    /// A directory of `tags/` or `hosts/`: the snapshots with that tag or host.
    Group { top: u64, name: String },
    /// A `latest` symlink, pointing at a sibling.
    Link { target: String },
    /// A snapshot's root directory.
    SnapRoot { snap: Arc<SnapInfo> },
    /// An entry inside a snapshot: entry `idx` of the listing `tree`, below the snapshot root
    /// `root`. The listing is named, not held: the kernel may hold every inode of a snapshot
    /// after a walk, and holding their listings too would keep all of its metadata in memory,
    /// outside the tree cache's bound.
    Node { tree: Id, idx: u32, root: u64 },
    /// `history/<path>/`, the path as its components.
    HistoryDir { path: Arc<Vec<Vec<u8>>> },
}

pub struct Inode {
    pub what: What,
    pub parent: u64,
}

/// One entry of a listing, which it keeps alive while in use.
pub struct NodeRef {
    pub tree: Arc<Vec<Node>>,
    pub idx: usize,
}

impl std::ops::Deref for NodeRef {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.tree[self.idx]
    }
}

/// The inodes the kernel holds, with their lookup counts.
#[derive(Default)]
pub struct Table {
    map: Mutex<HashMap<u64, (Arc<Inode>, u64)>>,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (Arc<Inode>, u64)>> {
        // A panic elsewhere must not take the whole filesystem down with it.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.lock().get(&ino).map(|(i, _)| i.clone())
    }

    /// Counts one kernel reference to `ino`, adding it if new.
    pub fn remember(&self, ino: u64, inode: Arc<Inode>) {
        self.lock().entry(ino).or_insert((inode, 0)).1 += 1;
    }

    /// Drops `n` kernel references; the inode goes when none are left.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut map = self.lock();
        if let Some((_, count)) = map.get_mut(&ino) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                map.remove(&ino);
            }
        }
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_distinct() {
        assert_eq!(child(7, b"a"), child(7, b"a"));
        assert_ne!(child(7, b"a"), child(8, b"a"));
        assert_ne!(child(7, b"ab"), child(7, b"a"));
        assert_ne!(hardlink(7, 1, 2), hardlink(7, 2, 1));
        for n in [child(1, b"x"), hardlink(1, 2, 3), link(1, b"latest", b"x")] {
            assert!((FIRST_DERIVED..1 << 63).contains(&n));
        }
    }

    #[test]
    fn forget_honours_lookup_counts() {
        let t = Table::default();
        let mk = || Arc::new(Inode { what: What::Link { target: "x".into() }, parent: ROOT });
        t.remember(5000, mk());
        t.remember(5000, mk());
        t.forget(5000, 1);
        assert!(t.get(5000).is_some());
        t.forget(5000, 1);
        assert!(t.get(5000).is_none());
        assert_eq!(t.count(), 0);
    }
}
