//! `history/<absolute path>/`: a directory per path any snapshot holds, listing the union of
//! the names the snapshots have below it, plus one read-only file per distinct version of a file
//! at that path, named by its first snapshot's directory name (its UTC time).
//!
//! A version file is an ordinary entry of a snapshot (a listing and a position in it), so reads,
//! attributes and extended attributes go through the same paths as under `snapshots/`. Trees on
//! the way are read through the mount's tree cache, and each distinct tree once per listing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::inode::{self, Inode, What};
use super::{Attr, Entry, LONG_TTL, Resolved, SHORT_TTL, Vfs, VfsResult};
use crate::browse::fingerprint;
use crate::format::tree::{Kind, Time};
use crate::id::{BlobIdSet, Id};

/// What one snapshot holds at a path.
#[derive(Clone, Copy)]
enum At {
    Absent,
    Dir(Id),
    /// An entry other than a directory: position `idx` of the listing `parent`.
    Entry {
        parent: Id,
        idx: u32,
    },
}

impl Vfs {
    /// The entries of `history/<path>/`, whose inode is `ino`, in listing order: directories
    /// for the names below the path, then the versions, oldest first.
    pub(super) fn history_children(&self, ino: u64, path: &[Vec<u8>]) -> VfsResult<Vec<(Vec<u8>, Resolved)>> {
        let cat = self.catalog(true);
        let mut memo = HashMap::new();
        let mut names = BTreeSet::new();
        let mut listed = BlobIdSet::default();
        let mut seen: HashSet<(String, Time)> = HashSet::new();
        let mut out = Vec::new();
        let mut versions = Vec::new();
        for s in &cat.snaps {
            match self.history_at(&mut memo, s.snap.tree, path)? {
                At::Absent => {}
                At::Dir(t) => {
                    if listed.insert(t) {
                        names.extend(self.tree(&t)?.iter().map(|n| n.name.clone()));
                    }
                }
                At::Entry { parent, idx } => {
                    let listing = self.tree(&parent)?;
                    let n = &listing[idx as usize];
                    if n.kind == Kind::File && seen.insert((fingerprint(n), n.mtime)) {
                        let v = inode::child(ino, s.name.as_bytes());
                        let inode = Inode { what: What::Node { tree: parent, idx, root: ino }, parent: ino };
                        // The name is the oldest snapshot's: it changes if that one is removed.
                        let entry = Entry { attr: Attr::of_node(v, n), entry_ttl: SHORT_TTL, attr_ttl: LONG_TTL };
                        versions.push((
                            s.name.clone().into_bytes(),
                            Resolved { ino: v, inode: Some(Arc::new(inode)), entry },
                        ));
                    }
                }
            }
        }
        for name in names {
            let mut sub = path.to_vec();
            sub.push(name.clone());
            let d = inode::child(ino, &name);
            let inode = Inode { what: What::HistoryDir { path: Arc::new(sub) }, parent: ino };
            let mut r = self.top_dir(d);
            r.inode = Some(Arc::new(inode));
            out.push((name, r));
        }
        out.extend(versions);
        Ok(out)
    }

    /// What `path` is in the snapshot tree `root`, with the answer for each tree on the way
    /// remembered in `memo` (snapshots share most of them).
    fn history_at(&self, memo: &mut HashMap<(Id, usize), At>, root: Id, path: &[Vec<u8>]) -> VfsResult<At> {
        let mut tree = root;
        let mut on_the_way = Vec::new();
        let mut found = if path.is_empty() { At::Dir(root) } else { At::Absent };
        for (depth, name) in path.iter().enumerate() {
            if let Some(known) = memo.get(&(tree, depth)) {
                found = *known;
                break;
            }
            on_the_way.push((tree, depth));
            let listing = self.tree(&tree)?;
            let Ok(i) = listing.binary_search_by(|n| n.name.as_slice().cmp(name)) else { break };
            let last = depth + 1 == path.len();
            match (listing[i].subtree(), last) {
                (Some(sub), true) => found = At::Dir(sub),
                (Some(sub), false) => {
                    tree = sub;
                    continue;
                }
                (None, true) => found = At::Entry { parent: tree, idx: i as u32 },
                (None, false) => {}
            }
            break;
        }
        for key in on_the_way {
            memo.insert(key, found);
        }
        Ok(found)
    }
}
