//! Entries as the browsing commands print them: `ls -l` lines and restic's JSON nodes, written as
//! raw bytes so odd names come out as they are.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::json;

use snapfs::browse::{kind_name, mode_string, time_ns};
use snapfs::format::tree::{Kind, Node};
use snapfs::timespec;

/// The owner as `ls -l` shows it: the recorded name, else the number.
fn owner(name: &str, id: u32) -> String {
    if name.is_empty() { id.to_string() } else { name.to_string() }
}

/// One entry: its path alone, or (`long`) mode, owner, group, size, mtime, path and link
/// target in 80 columns for typical names.
pub fn entry_line(out: &mut impl Write, path: &Path, n: &Node, long: bool) -> std::io::Result<()> {
    if long {
        write!(
            out,
            "{} {:>8} {:>8} {:>10} {} ",
            mode_string(n.kind, n.mode),
            owner(&n.user, n.uid),
            owner(&n.group, n.gid),
            n.size,
            timespec::local(time_ns(n.mtime)),
        )?;
    }
    out.write_all(path.as_os_str().as_bytes())?;
    if long && n.kind == Kind::Symlink {
        out.write_all(b" -> ")?;
        out.write_all(&n.link_target)?;
    }
    out.write_all(b"\n")
}

/// An entry as restic's `ls --json` prints a node.
pub fn node_json(path: &Path, n: &Node) -> serde_json::Value {
    let mut v = json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": kind_name(n.kind),
        "path": path.to_string_lossy(),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mode": n.mode,
        "permissions": mode_string(n.kind, n.mode),
        "mtime": timespec::rfc3339(time_ns(n.mtime)),
        "ctime": timespec::rfc3339(time_ns(n.ctime)),
        "inode": n.ino,
        "links": n.nlink,
        "struct_type": "node",
        "message_type": "node",
    });
    if let Some(a) = n.atime {
        v["atime"] = json!(timespec::rfc3339(time_ns(a)));
    }
    if n.kind == Kind::Symlink {
        v["linktarget"] = json!(String::from_utf8_lossy(&n.link_target));
    }
    v
}
