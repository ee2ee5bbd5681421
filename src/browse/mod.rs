//! The engines of the browsing commands: `ls`, `find`, `diff`, `stats` and `history`, one file
//! each. They read snapshots through the one tree layer ([`crate::trees`]) and choose them with
//! the one selector ([`crate::select`]); they never print. Each reports how many tree blobs it
//! read, so tests can hold them to the Merkle property: a subtree whose id was seen is not read
//! again.

pub mod diff;
pub mod find;
pub mod history;
pub mod ls;
pub mod stats;

use std::path::{Component, Path, PathBuf};

use crate::format::tree::{Kind, Node, Time};
use crate::id::Id;
use crate::sys;
use crate::trees::{TreeSource, Trees};

/// Deeper than any real tree (PATH_MAX allows about 2,048 levels): a bound on recursion over
/// a hostile repository.
pub const MAX_DEPTH: usize = 4096;

/// `parent/name` for a name stored as raw bytes.
pub fn child(parent: &Path, name: &[u8]) -> PathBuf {
    parent.join(sys::os(name))
}

/// Nanoseconds since the epoch, saturating (times before 1677 or after 2262 do not fit).
pub fn time_ns(t: Time) -> i64 {
    t.sec.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nsec))
}

/// The kind as restic's JSON names it.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::CharDev => "chardev",
        Kind::BlockDev => "dev",
        Kind::Socket => "socket",
    }
}

/// `ls -l`'s permission string, `drwxr-xr-x`, with setuid, setgid and sticky bits.
pub fn mode_string(kind: Kind, mode: u32) -> String {
    let t = match kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Fifo => 'p',
        Kind::CharDev => 'c',
        Kind::BlockDev => 'b',
        Kind::Socket => 's',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for (shift, special, lower, upper) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & special != 0, x) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// A short, keyed fingerprint of an entry's content: derived from its keyed chunk ids (or
/// subtree id, or link target), so it reveals nothing a plain hash of the file would. Two
/// entries with the same fingerprint have the same bytes.
pub fn fingerprint(n: &Node) -> String {
    let mut h = blake3::Hasher::new_derive_key("snapfs 2026-12 content fingerprint");
    h.update(&[n.kind as u8]);
    h.update(&n.size.to_le_bytes());
    for id in &n.content {
        h.update(&id.0);
    }
    h.update(&n.link_target);
    h.update(&n.rdev.to_le_bytes());
    crate::repo::hex(&h.finalize().as_bytes()[..8])
}

/// The edit distance between two names, for "closest: …" suggestions.
pub fn distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The existing path nearest to `path` in the tree `root`: the part that exists, then the name
/// in the deepest directory reached that is fewest edits away from the missing one.
pub fn closest<S: TreeSource>(trees: &Trees<S>, root: Id, path: &Path) -> Option<PathBuf> {
    let mut at = PathBuf::from("/");
    let mut tree = root;
    for c in path.components() {
        let Component::Normal(name) = c else { continue };
        let listing = trees.get(&tree).ok()?;
        let name = name.as_encoded_bytes();
        match listing.binary_search_by(|n| n.name.as_slice().cmp(name)) {
            Ok(i) => {
                at = child(&at, &listing[i].name);
                match listing[i].subtree() {
                    Some(sub) => tree = sub,
                    None => return Some(at),
                }
            }
            Err(_) => {
                let best = listing.iter().min_by_key(|n| distance(&n.name, name));
                return Some(best.map_or(at.clone(), |n| child(&at, &n.name)));
            }
        }
    }
    Some(at)
}

/// A [`crate::Error::PathNotFound`] for `path` in one snapshot, with the closest path in it.
pub fn not_found<S: TreeSource>(trees: &Trees<S>, root: Id, path: &Path, snapshot: &Id) -> crate::Error {
    crate::Error::PathNotFound {
        path: path.display().to_string(),
        place: format!("snapshot {}", snapshot.short()),
        closest: closest(trees, root, path).map(|p| p.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_prints_them() {
        assert_eq!(mode_string(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(Kind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(Kind::Symlink, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance(b"report.odt", b"report.odt"), 0);
        assert_eq!(distance(b"report.odt", b"reprot.odt"), 2);
        assert_eq!(distance(b"", b"abc"), 3);
        assert_eq!(distance(b"kitten", b"sitting"), 3);
    }
}
