//! Directory descriptors for restore. Every entry is created, opened, changed and removed
//! relative to a descriptor of its directory, never by a path, and no call follows a symlink in
//! the last component: a directory swapped for a symlink while a restore runs (issue #20) then
//! makes the calls below it fail instead of writing outside the target. Names are checked to be
//! one path component, whatever the caller already checked. Every `unsafe` here is a libc call.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::format::tree::{Time, valid_name};

/// An open directory.
pub struct Dir(OwnedFd);

/// What `lstat` says about an entry, as much as restore needs.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub mode: u32,
    pub size: u64,
    pub mtime: Time,
}

impl Stat {
    fn fmt(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.fmt() == libc::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.fmt() == libc::S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.fmt() == libc::S_IFLNK
    }
}

fn cname(name: &OsStr) -> io::Result<CString> {
    if !valid_name(name.as_bytes()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a single path component"));
    }
    CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn cbytes(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "contains NUL"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn ts(t: Time) -> libc::timespec {
    libc::timespec { tv_sec: t.sec as libc::time_t, tv_nsec: t.nsec as _ }
}

fn stat_of(st: &libc::stat) -> Stat {
    Stat { mode: st.st_mode, size: st.st_size as u64, mtime: Time { sec: st.st_mtime, nsec: st.st_mtime_nsec as u32 } }
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl Dir {
    /// Opens the restore's target by its path: the user named it, so symlinks on the way to it
    /// are the user's choice.
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let c = cbytes(path.as_os_str().as_bytes())?;
        // SAFETY: c is NUL-terminated; open returns a new descriptor or -1.
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn at(&self, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let c = cname(name)?;
        // SAFETY: the directory descriptor is open and c is NUL-terminated.
        let fd = check(unsafe { libc::openat(self.0.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) })?;
        // SAFETY: fd was just returned by openat and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Opens a subdirectory; a symlink in its place is an error (ELOOP or ENOTDIR).
    pub fn open(&self, name: &OsStr) -> io::Result<Dir> {
        self.at(name, DIR_FLAGS, 0).map(Dir)
    }

    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: the descriptor is open and c is NUL-terminated.
        check(unsafe { libc::mkdirat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// The entry's own metadata (a symlink is not followed); None when there is no entry.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        let c = cname(name)?;
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open, c is NUL-terminated and st outlives the call.
        let rc = unsafe { libc::fstatat(self.0.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        match check(rc) {
            Ok(_) => Ok(Some(stat_of(&st))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a new regular file; an entry of that name (a symlink too) is an error.
    pub fn create(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        self.at(name, flags, mode).map(File::from)
    }

    /// Opens a regular file for reading; a symlink or anything but a regular file is an error
    /// (O_NONBLOCK, so a FIFO put in its place does not hang the open).
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        let f = File::from(self.at(name, flags, 0)?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok(f)
    }

    pub fn symlink(&self, target: &[u8], name: &OsStr) -> io::Result<()> {
        let (t, c) = (cbytes(target)?, cname(name)?);
        // SAFETY: both strings are NUL-terminated and the descriptor is open.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.0.as_raw_fd(), c.as_ptr()) }).map(drop)
    }

    pub fn mknod(&self, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: the descriptor is open and c is NUL-terminated.
        check(unsafe { libc::mknodat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
            .map(drop)
    }

    /// A hard link `to/new` of `self/old` (flags 0: a symlink at `old` is linked, not followed).
    pub fn link(&self, old: &OsStr, to: &Dir, new: &OsStr) -> io::Result<()> {
        let (o, n) = (cname(old)?, cname(new)?);
        // SAFETY: both descriptors are open and both names NUL-terminated.
        check(unsafe { libc::linkat(self.0.as_raw_fd(), o.as_ptr(), to.0.as_raw_fd(), n.as_ptr(), 0) }).map(drop)
    }

    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        self.unlinkat(name, 0)
    }

    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        self.unlinkat(name, libc::AT_REMOVEDIR)
    }

    fn unlinkat(&self, name: &OsStr, flags: libc::c_int) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: the descriptor is open and c is NUL-terminated.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
    }

    /// Removes an entry and, for a directory, everything below it, through descriptors.
    /// `found` is called for every entry removed, with its metadata; with `dry` nothing is
    /// removed, only reported.
    pub fn remove_all(&self, name: &OsStr, dry: bool, found: &mut dyn FnMut(&Stat)) -> io::Result<()> {
        let Some(st) = self.stat(name)? else { return Ok(()) };
        if st.is_dir() {
            let sub = self.open(name)?;
            for n in sub.names()? {
                sub.remove_all(&n, dry, found)?;
            }
            if !dry {
                self.rmdir(name)?;
            }
        } else if !dry {
            self.unlink(name)?;
        }
        found(&st);
        Ok(())
    }

    /// The names in this directory, without `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // SAFETY: dup of an open descriptor; the copy is handed to fdopendir, which owns it.
        let fd = check(unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: fd is a fresh directory descriptor; on success closedir closes it.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so fd is still ours to close.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        // The copy shares its offset with ours: start from the beginning whatever read before.
        // SAFETY: dir is a valid DIR stream.
        unsafe { libc::rewinddir(dir) };
        let mut out = Vec::new();
        loop {
            // SAFETY: dir is a valid DIR stream; the entry is copied before the next call.
            let ent = unsafe { libc::readdir(dir) };
            if ent.is_null() {
                break;
            }
            // SAFETY: readdir returned an entry whose d_name is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        // SAFETY: dir is valid and not used after this.
        unsafe { libc::closedir(dir) };
        Ok(out)
    }

    /// Owner of an entry, not following a symlink.
    pub fn chown_entry(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: the descriptor is open and c is NUL-terminated.
        check(unsafe { libc::fchownat(self.0.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) }).map(drop)
    }

    /// Times of an entry, not following a symlink.
    pub fn set_times_entry(&self, name: &OsStr, atime: Time, mtime: Time) -> io::Result<()> {
        let c = cname(name)?;
        let times = [ts(atime), ts(mtime)];
        // SAFETY: the descriptor is open, c is NUL-terminated and times has the two entries read.
        let rc = unsafe { libc::utimensat(self.0.as_raw_fd(), c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
        check(rc).map(drop)
    }

    /// The mode of an entry that is not a symlink (FIFOs and nodes, which cannot be opened
    /// safely): through an O_PATH descriptor checked not to be a symlink, as glibc does for
    /// `fchmodat(AT_SYMLINK_NOFOLLOW)`, so it is never a path the kernel resolves again.
    pub fn chmod_entry(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let fd = self.at(name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0)?;
        // SAFETY: a zeroed stat is a valid out-parameter; the descriptor is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open and st outlives the call.
        check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a symlink"));
        }
        let c = cbytes(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
        // SAFETY: c is NUL-terminated; it names the inode fd holds.
        check(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// An xattr of an entry, not following a symlink: `lsetxattr` below this descriptor's
    /// /proc link, which pins the directory.
    pub fn set_xattr_entry(&self, name: &OsStr, key: &[u8], value: &[u8]) -> io::Result<()> {
        let mut p = format!("/proc/self/fd/{}/", self.0.as_raw_fd()).into_bytes();
        p.extend_from_slice(cname(name)?.as_bytes());
        let (p, k) = (cbytes(&p)?, cbytes(key)?);
        // SAFETY: both strings are NUL-terminated and value's pointer and length go together.
        check(unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Metadata calls on an open descriptor (a directory or a file): nothing is looked up by name.
pub fn fchown(fd: &impl AsRawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: the descriptor is open for the borrow's lifetime.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

pub fn fchmod(fd: &impl AsRawFd, mode: u32) -> io::Result<()> {
    // SAFETY: the descriptor is open for the borrow's lifetime.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

pub fn fsetxattr(fd: &impl AsRawFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let k = cbytes(key)?;
    // SAFETY: the descriptor is open, k is NUL-terminated, value's pointer and length go together.
    check(unsafe { libc::fsetxattr(fd.as_raw_fd(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// The process's soft limit on open descriptors.
pub fn open_files_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes one rlimit into r, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    r.rlim_cur
}

/// The file system's block size for `f`: the granularity of holes.
pub fn block_size(f: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(f.metadata()?.blksize().max(512))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_one_component_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Dir::open_path(tmp.path()).unwrap();
        for bad in ["", ".", "..", "a/b", "/etc"] {
            let e = d.mkdir(OsStr::new(bad), 0o700).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(d.mkdir(OsStr::from_bytes(b"a\0b"), 0o700).is_err());
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let t = tmp.path().join("t");
        std::fs::create_dir(&t).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), t.join("flink")).unwrap();
        let d = Dir::open_path(&t).unwrap();
        assert!(d.open(OsStr::new("link")).is_err());
        assert!(d.create(OsStr::new("flink"), 0o644).is_err());
        assert!(d.open_file(OsStr::new("flink")).is_err());
        assert!(d.chmod_entry(OsStr::new("link"), 0o777).is_err());
        assert!(d.stat(OsStr::new("link")).unwrap().unwrap().is_symlink());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
