//! What a restore will do, decided before anything is written: the entries selected from the
//! snapshot, and for each the action against what the target already holds. A dry run prints
//! the plan; `--overwrite error` refuses it when anything is in the way.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dirfd::{Dir, Stat};
use super::{Overwrite, RestoreOptions};
use crate::error::Result;
use crate::format::tree::{Kind, Node};
use crate::id::Id;
use crate::repo::Repository;
use crate::sys;
use crate::trees::Trees;

pub(super) struct Item {
    /// The entry's name in its directory in the target (a renamed one for `--overwrite rename`).
    pub name: OsString,
    /// Where it goes, for messages.
    pub dest: PathBuf,
    pub node: Node,
    /// The item of the directory this entry is in; None at the top of the restore.
    pub parent: Option<usize>,
    /// For a directory, its path in the snapshot, whether it is selected itself (not only as
    /// the way to an included path), and the names of its whole listing: what `--delete` keeps.
    pub listing: Option<Box<Listing>>,
    pub action: Action,
}

pub(super) struct Listing {
    pub snap: PathBuf,
    pub included: bool,
    pub names: HashSet<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing is in the way.
    Create,
    /// Something is, and is removed first.
    Replace,
    /// A directory that is already a directory: restored into.
    Merge,
    /// Something is, and is kept; for a directory, nothing below it is restored.
    Skip,
    /// Something is, is kept, and this entry is written beside it under `Item::name`.
    Rename,
    /// The directory above could not be made or was skipped.
    LeftOut,
}

/// The entries selected, in the order of a depth-first walk (a directory before its entries),
/// and the listing of the restore's top (for `--delete`).
pub(super) fn collect_all(repo: &Repository, tree: Id, opts: &RestoreOptions) -> Result<Collected> {
    let mut c = Collected { items: Vec::new(), unreadable: Vec::new(), top: None };
    // Small: a restore reads each listing once; the cache only spares repeats of one subtree.
    let trees = Trees::new(repo, 4 << 20);
    crate::trees::check_expansion(&trees, tree)?;
    let sub = opts.subpath.as_ref().filter(|p| p.components().any(|c| matches!(c, std::path::Component::Normal(_))));
    let top_included = opts.includes.is_empty();
    match sub {
        None => {
            let names = collect(&trees, tree, Path::new("/"), &opts.target, None, opts, &mut c, top_included)?;
            c.top = Some(Box::new(Listing { snap: "/".into(), included: top_included, names }));
        }
        Some(sub) => {
            let node = trees.resolve(tree, sub)?.expect("a path below /");
            match node.subtree() {
                Some(t) => {
                    let names = collect(&trees, t, sub, &opts.target, None, opts, &mut c, top_included)?;
                    c.top = Some(Box::new(Listing { snap: sub.clone(), included: top_included, names }));
                }
                None => {
                    let name = sys::os(&node.name).to_owned();
                    let dest = opts.target.join(&name);
                    c.items.push(Item { name, dest, node, parent: None, listing: None, action: Action::Create });
                }
            }
        }
    }
    Ok(c)
}

pub(super) struct Collected {
    pub items: Vec<Item>,
    /// Directories whose listing is damaged: reported, and everything else is still restored.
    pub unreadable: Vec<String>,
    pub top: Option<Box<Listing>>,
}

/// Gathers the entries to restore under `tree`; `forced` means an ancestor matched an include.
/// Returns the names of the whole listing when `--delete` needs them (else empty); a directory
/// with nothing selected below it and not itself included is dropped again.
#[allow(clippy::too_many_arguments)]
fn collect(
    trees: &Trees<&Repository>,
    tree: Id,
    at: &Path,
    dest: &Path,
    parent: Option<usize>,
    opts: &RestoreOptions,
    c: &mut Collected,
    forced: bool,
) -> Result<HashSet<Vec<u8>>> {
    let mut names = HashSet::new();
    // Owned, not through the cache: a restore reads each listing once and moves its nodes.
    for node in trees.source().load_tree(&tree)? {
        if opts.delete {
            names.insert(node.name.clone());
        }
        let name = sys::os(&node.name).to_owned();
        let snap_path = at.join(&name);
        if opts.excludes.matches(&snap_path) {
            continue;
        }
        let included = forced || opts.includes.is_empty() || opts.includes.matches(&snap_path);
        let d = dest.join(&name);
        if let Some(sub) = node.subtree() {
            let at_dir = c.items.len();
            c.items.push(Item { name, dest: d.clone(), node, parent, listing: None, action: Action::Create });
            match collect(trees, sub, &snap_path, &d, Some(at_dir), opts, c, included) {
                Ok(_) if c.items.len() == at_dir + 1 && !included => c.items.truncate(at_dir),
                Ok(names) => {
                    c.items[at_dir].listing = Some(Box::new(Listing { snap: snap_path, included, names }));
                }
                Err(e) => {
                    c.items.truncate(at_dir);
                    c.unreadable.push(format!("{}: directory not restored: {e}", d.display()));
                }
            }
        } else if included {
            c.items.push(Item { name, dest: d, node, parent, listing: None, action: Action::Create });
        }
    }
    Ok(names)
}

/// Whether an existing entry `st` is replaced by `node` under `mode` (for the modes that
/// decide by what is there).
fn replaces(node: &Node, st: &Stat, mode: Overwrite) -> bool {
    let same_time = (st.mtime.sec, st.mtime.nsec) == (node.mtime.sec, node.mtime.nsec);
    match mode {
        Overwrite::Never | Overwrite::Rename | Overwrite::Error => false,
        Overwrite::Always => true,
        Overwrite::IfChanged => !(node.kind == Kind::File && st.is_file() && st.size == node.size && same_time),
        Overwrite::IfNewer => (node.mtime.sec, node.mtime.nsec) > (st.mtime.sec, st.mtime.nsec),
    }
}

/// The directories of a restore by item, open; those not held (past the descriptor budget) are
/// opened again from the nearest held ancestor, a component at a time, never through a symlink.
pub(super) struct Dirs {
    pub target: Option<Arc<Dir>>,
    pub held: Vec<Option<Arc<Dir>>>,
    pub budget: usize,
}

impl Dirs {
    pub fn of(&self, items: &[Item], parent: Option<usize>) -> std::io::Result<Arc<Dir>> {
        let Some(p) = parent else {
            return self.target.clone().ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT));
        };
        if let Some(d) = &self.held[p] {
            return Ok(d.clone());
        }
        Ok(Arc::new(self.of(items, items[p].parent)?.open(&items[p].name)?))
    }

    pub fn hold(&mut self, i: usize, d: Dir) {
        if self.budget > 0 {
            self.budget -= 1;
            self.held[i] = Some(Arc::new(d));
        }
    }
}

/// The name an entry is restored under beside an existing one.
pub(super) fn renamed(name: &OsStr, stamp: &str) -> OsString {
    let mut b = name.as_bytes().to_vec();
    b.extend_from_slice(format!(".snapfs-{stamp}").as_bytes());
    OsString::from_vec(b)
}

/// Decides every item's action from what is in the target, opening the directories that exist
/// (kept in `dirs`, by item, for the writes). Returns the items in the way of
/// `--overwrite error`. Entries below a directory that does not exist yet are not looked at:
/// nothing can be in their way.
pub(super) fn plan(items: &mut [Item], dirs: &mut Dirs, opts: &RestoreOptions, stamp: &str) -> Vec<usize> {
    let mut conflicts = Vec::new();
    for i in 0..items.len() {
        let parent = match items[i].parent.map(|p| items[p].action) {
            Some(Action::LeftOut | Action::Skip) => {
                items[i].action = Action::LeftOut;
                continue;
            }
            // Made by this restore: nothing can be in the way below it.
            Some(Action::Create | Action::Replace | Action::Rename) => None,
            // The target, or a directory that is there (held or opened again).
            _ => dirs.of(items, items[i].parent).ok(),
        };
        let it = &mut items[i];
        let st = parent.as_ref().and_then(|d| d.stat(&it.name).ok().flatten());
        let is_dir = it.node.kind == Kind::Dir;
        it.action = match st {
            None => Action::Create,
            Some(st) if is_dir && st.is_dir() => Action::Merge,
            Some(_) if opts.overwrite == Overwrite::Error => {
                conflicts.push(i);
                Action::Skip
            }
            Some(_) if opts.overwrite == Overwrite::Rename => {
                it.name = renamed(&it.name, stamp);
                it.dest.set_file_name(&it.name);
                Action::Rename
            }
            Some(st) if replaces(&it.node, &st, opts.overwrite) => Action::Replace,
            Some(_) => Action::Skip,
        };
        if is_dir && it.action == Action::Merge {
            // Opened now so its entries can be looked at; a failure leaves them to the write,
            // which reports it.
            if let Some(d) = parent.and_then(|d| d.open(&it.name).ok()) {
                dirs.hold(i, d);
            }
        }
    }
    conflicts
}
