//! Reading an entry's metadata from the filesystem into a tree node.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::format::tree::{Kind, Node, Time};
use crate::sys;

type Xattr = (Vec<u8>, Vec<u8>);

pub fn kind_of(md: &Metadata) -> Kind {
    let ft = md.file_type();
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    }
}

/// Builds a node without content; xattr errors are returned as warnings, not failures.
pub fn node_from(path: &Path, name: &[u8], md: &Metadata, with_atime: bool) -> (Node, Option<String>) {
    let kind = kind_of(md);
    let (xattrs, warning) = read_xattrs(path);
    let link_target = if kind == Kind::Symlink {
        std::fs::read_link(path).map(|t| t.as_os_str().as_bytes().to_vec()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let node = Node {
        name: name.to_vec(),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        user: names::user(md.uid()),
        group: names::group(md.gid()),
        mtime: Time { sec: md.mtime(), nsec: md.mtime_nsec() as u32 },
        ctime: Time { sec: md.ctime(), nsec: md.ctime_nsec() as u32 },
        atime: with_atime.then(|| Time { sec: md.atime(), nsec: md.atime_nsec() as u32 }),
        dev: md.dev(),
        ino: md.ino(),
        nlink: md.nlink() as u32,
        size: match kind {
            Kind::File => md.size(),
            Kind::Symlink => link_target.len() as u64,
            _ => 0,
        },
        rdev: if matches!(kind, Kind::CharDev | Kind::BlockDev) { md.rdev() } else { 0 },
        link_target,
        xattrs,
        content: Vec::new(),
    };
    (node, warning)
}

/// Uses the l*xattr calls, so a symlink's own attributes are read, never its target's.
fn read_xattrs(path: &Path) -> (Vec<Xattr>, Option<String>) {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return (Vec::new(), None),
        Err(e) => return (Vec::new(), Some(format!("{}: cannot list xattrs: {e}", path.display()))),
    };
    let mut out = Vec::new();
    for n in names {
        match xattr::get(path, &n) {
            Ok(Some(v)) => out.push((n.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) => return (out, Some(format!("{}: cannot read xattr {:?}: {e}", path.display(), n))),
        }
    }
    out.sort();
    (out, None)
}

/// User and group names, cached: the same few ids recur across a whole tree.
mod names {
    use std::collections::HashMap;
    use std::sync::Mutex;

    static USERS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);
    static GROUPS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);

    fn cached(cache: &Mutex<Option<HashMap<u32, String>>>, id: u32, f: fn(u32) -> String) -> String {
        let mut c = cache.lock().expect("name cache poisoned");
        c.get_or_insert_with(HashMap::new).entry(id).or_insert_with(|| f(id)).clone()
    }

    pub fn user(uid: u32) -> String {
        cached(&USERS, uid, super::sys::user_name)
    }

    pub fn group(gid: u32) -> String {
        cached(&GROUPS, gid, super::sys::group_name)
    }
}
