//! The libc boundary: the few system calls std does not expose. Every `unsafe` lives here.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::format::tree::Time;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

pub fn gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

/// The owner and group a new file gets (the effective ids), before its directory has a say.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The process's umask, read from /proc: umask(2) can only be read by setting it, which would
/// race with other threads creating files. None where /proc does not say.
pub fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// The name of a user id, or empty when the id has no passwd entry.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed with it.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return String::new();
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points at a NUL-terminated string inside buf.
    unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned()
}

/// The name of a group id, or empty when the id has no group entry.
pub fn group_name(gid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed group is a valid out-parameter for getgrgid_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed with it.
    let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || gr.gr_name.is_null() {
        return String::new();
    }
    // SAFETY: getgrgid_r succeeded, so gr_name points at a NUL-terminated string inside buf.
    unsafe { CStr::from_ptr(gr.gr_name) }.to_string_lossy().into_owned()
}

/// Whether a process with this pid exists on this host (EPERM still means it exists).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn ts(t: Option<Time>) -> libc::timespec {
    match t {
        Some(t) => libc::timespec { tv_sec: t.sec as libc::time_t, tv_nsec: t.nsec as _ },
        None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT as _ },
    }
}

/// Sets atime and mtime with nanoseconds without following a final symlink.
pub fn set_times(path: &Path, atime: Option<Time>, mtime: Time) -> io::Result<()> {
    let c = cpath(path)?;
    let times = [ts(atime), ts(Some(mtime))];
    // SAFETY: c is NUL-terminated and times has the two entries utimensat reads.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Sets atime and mtime with nanoseconds on an open file, without a path lookup.
pub fn set_file_times(f: &impl AsRawFd, atime: Option<Time>, mtime: Time) -> io::Result<()> {
    let times = [ts(atime), ts(Some(mtime))];
    // SAFETY: the descriptor is open for the borrow's lifetime, and times has the two entries
    // futimens reads.
    let rc = unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Creates a FIFO, device node or socket node.
pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: c is NUL-terminated; mknod only reads it.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// The width in columns of the terminal `f` is, if it is one that says.
pub fn terminal_columns(f: &impl AsRawFd) -> Option<usize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ only writes one winsize into the struct passed, which outlives the call;
    // on a descriptor that is no terminal it fails and writes nothing.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// The start of the first data at or after `off` (SEEK_DATA); `None` when only a hole follows.
pub fn seek_data(f: &impl AsRawFd, off: u64) -> io::Result<Option<u64>> {
    match seek(f, off, libc::SEEK_DATA) {
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        r => r.map(Some),
    }
}

/// The start of the first hole at or after `off` (SEEK_HOLE; the end of the file is one).
pub fn seek_hole(f: &impl AsRawFd, off: u64) -> io::Result<u64> {
    seek(f, off, libc::SEEK_HOLE)
}

fn seek(f: &impl AsRawFd, off: u64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: lseek only moves the offset of a descriptor that is open for the borrow's lifetime.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as u64) }
}

/// Asks the kernel to start reading `len` bytes at `off` into the page cache, without waiting.
/// Only a hint: where it fails the read that follows is merely slower.
pub fn advise_willneed(f: &impl AsRawFd, off: u64, len: u64) {
    // SAFETY: posix_fadvise only reads its arguments, on a descriptor open for the borrow.
    let _ = unsafe {
        libc::posix_fadvise(f.as_raw_fd(), off as libc::off_t, len as libc::off_t, libc::POSIX_FADV_WILLNEED)
    };
}

/// What the metadata walk ahead needs of an entry.
pub struct StatAt {
    pub is_dir: bool,
    pub dev: u64,
}

/// `fstatat` of `name` in the directory `dir`, not following a final symlink: relative to the
/// directory's descriptor, so the kernel does not walk the whole path again.
pub fn stat_at(dir: &impl AsRawFd, name: &OsStr) -> io::Result<StatAt> {
    let c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
    // SAFETY: a zeroed stat is a valid out-parameter for fstatat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the borrow, c is NUL-terminated, st outlives the call.
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(StatAt { is_dir: st.st_mode & libc::S_IFMT == libc::S_IFDIR, dev: st.st_dev })
}

unsafe extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

/// Removes the variable `name` from the environment and overwrites its bytes where they live.
/// Unsetting alone is not enough for a secret: `/proc/<pid>/environ` shows the block the process
/// started with, which `unsetenv` only stops pointing at.
///
/// Call it before starting threads that read the environment (it is read at startup only).
pub fn scrub_env(name: &str) {
    let prefix: Vec<u8> = [name.as_bytes(), b"="].concat();
    let mut found = Vec::new();
    // SAFETY: `environ` is the NUL-terminated array of NUL-terminated strings libc keeps; it is
    // only read here. The caller runs before other threads touch the environment.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if bytes.starts_with(&prefix) {
                found.push((*entry, bytes.len()));
            }
            entry = entry.add(1);
        }
        std::env::remove_var(name);
    }
    for (s, len) in found {
        // SAFETY: the `len` bytes at `s` were the entry's string, which libc no longer points to
        // after `remove_var` and never frees (the initial block is on the stack; setenv copies
        // are leaked by glibc by design), so they are still ours to overwrite.
        unsafe {
            for i in 0..len {
                std::ptr::write_volatile(s.add(i), 0);
            }
        }
    }
}
