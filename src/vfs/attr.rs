//! Attributes as `stat` shows them, from stored nodes or made up for the virtual directories.

use crate::format::tree::{Kind, Node, Time};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

impl From<Kind> for FileKind {
    fn from(k: Kind) -> FileKind {
        match k {
            Kind::Dir => FileKind::Dir,
            Kind::File => FileKind::File,
            Kind::Symlink => FileKind::Symlink,
            Kind::Fifo => FileKind::Fifo,
            Kind::CharDev => FileKind::CharDev,
            Kind::BlockDev => FileKind::BlockDev,
            Kind::Socket => FileKind::Socket,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    /// Permission bits, including setuid, setgid and sticky.
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Device number in the kernel's 32-bit encoding (what FUSE carries).
    pub rdev: u32,
}

/// The format does not record allocated blocks; report what a plain (non-sparse) copy would
/// use, in 4 KiB blocks, so `du` gives a sensible answer.
fn blocks(size: u64) -> u64 {
    size.div_ceil(4096) * 8
}

/// glibc's 64-bit `dev_t` (what stat gave at backup time) to the kernel's 32-bit `new_encode_dev`.
pub fn kernel_rdev(dev: u64) -> u32 {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

impl Attr {
    pub fn of_node(ino: u64, n: &Node) -> Attr {
        Attr {
            ino,
            kind: n.kind.into(),
            perm: (n.mode & 0o7777) as u16,
            nlink: n.nlink.max(1),
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            blocks: if n.kind == Kind::File { blocks(n.size) } else { 0 },
            atime: n.atime.unwrap_or(n.mtime),
            mtime: n.mtime,
            ctime: n.ctime,
            rdev: if matches!(n.kind, Kind::CharDev | Kind::BlockDev) { kernel_rdev(n.rdev) } else { 0 },
        }
    }

    /// A directory that exists only in the mount. `nlink` 1 tells tools like `find` not to
    /// infer the number of subdirectories from it.
    pub fn virtual_dir(ino: u64, uid: u32, gid: u32, time: Time) -> Attr {
        Attr {
            ino,
            kind: FileKind::Dir,
            perm: 0o555,
            nlink: 1,
            uid,
            gid,
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            rdev: 0,
        }
    }

    pub fn virtual_link(ino: u64, uid: u32, gid: u32, time: Time, target: &str) -> Attr {
        Attr {
            kind: FileKind::Symlink,
            perm: 0o777,
            size: target.len() as u64,
            ..Self::virtual_dir(ino, uid, gid, time)
        }
    }
}

pub fn time_of_ns(ns: i64) -> Time {
    Time { sec: ns.div_euclid(1_000_000_000), nsec: ns.rem_euclid(1_000_000_000) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_reencode() {
        // /dev/null is 1:3; glibc makedev(1, 3) = 0x103, the kernel's encoding is the same.
        assert_eq!(kernel_rdev(0x103), 0x103);
        // makedev(259, 65536) in glibc's layout.
        let (major, minor) = (259u64, 65536u64);
        let glibc =
            ((major & 0xfffff000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffffff00) << 12) | (minor & 0xff);
        let k = kernel_rdev(glibc);
        assert_eq!(((k & 0xfff00) >> 8, (k & 0xff) | ((k >> 12) & 0xfff00)), (259, 65536));
    }

    #[test]
    fn negative_times_split_like_stat() {
        assert_eq!(time_of_ns(-1), Time { sec: -1, nsec: 999_999_999 });
    }
}
