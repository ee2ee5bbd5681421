//! The thin fuser adapter over [`crate::vfs::Vfs`]: converts requests to calls, results to
//! replies and errors to errnos. Writes never get here: the mount is read-only, so the kernel
//! answers them with EROFS itself.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyXattr, Request, Session, SessionACL,
};

use crate::format::tree::Time;
use crate::vfs::{Attr, FileKind, Vfs, VfsError, VfsResult};

pub struct MountOptions {
    /// Let other users in (their access then checked against the stored modes).
    pub allow_other: bool,
    /// Request-serving threads.
    pub threads: usize,
}

/// Mounts `vfs` at `mountpoint`; the returned session serves it once `run` is called.
pub fn mount(vfs: Arc<Vfs>, mountpoint: &Path, opts: &MountOptions) -> std::io::Result<Session<SnapFs>> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("snapfs".into()),
        MountOption::Subtype("snapfs".into()),
        // Stored setuid bits and device nodes are shown, never honoured.
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    if opts.allow_other {
        config.acl = SessionACL::All;
        // Without this every user could read every file, whatever its stored mode.
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    Session::new(SnapFs { vfs }, mountpoint, &config)
}

pub struct SnapFs {
    vfs: Arc<Vfs>,
}

/// Lines waiting for the writer thread; past this many, new ones are dropped and counted.
const LOG_QUEUE: usize = 1024;

/// Lines dropped since the writer last reported, because its queue was full.
static LOG_DROPPED: AtomicU64 = AtomicU64::new(0);

/// One line on stderr, without ever waiting for it. A request handler must answer, and a write
/// to a pipe nobody drains blocks forever (the thread then sits in an unkillable FUSE wait), so
/// the handler only queues the line; one writer thread does the blocking writes. When the queue
/// is full the line is dropped and counted, and the count is written once the pipe moves again.
/// Not `eprintln!`, which panics when stderr is gone.
pub fn log(line: std::fmt::Arguments) {
    static QUEUE: OnceLock<Option<SyncSender<String>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<String>(LOG_QUEUE);
        let writer = move || {
            use std::io::Write;
            for line in rx {
                let mut err = std::io::stderr().lock();
                let dropped = LOG_DROPPED.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let _ = writeln!(err, "snapfs: {dropped} log line(s) dropped: stderr was not being read");
                }
                let _ = writeln!(err, "{line}");
            }
        };
        std::thread::Builder::new().name("fuse-log".into()).spawn(writer).ok().map(|_| tx)
    });
    match queue {
        Some(tx) if tx.try_send(line.to_string()).is_ok() => {}
        _ => {
            LOG_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How many lines [`log`] has dropped and not yet reported.
pub fn log_dropped() -> u64 {
    LOG_DROPPED.load(Ordering::Relaxed)
}

/// Runs a handler body, turning a panic (a bug) into EIO instead of a dead session thread.
fn guard<T>(op: impl std::fmt::Display, f: impl FnOnce() -> VfsResult<T>) -> Result<T, Errno> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(errno(op, e)),
        Err(_) => {
            log(format_args!("snapfs: internal error in {op}; answered EIO"));
            Err(Errno::EIO)
        }
    }
}

fn errno(op: impl std::fmt::Display, e: VfsError) -> Errno {
    match e {
        VfsError::NotFound => Errno::ENOENT,
        VfsError::NotDir => Errno::ENOTDIR,
        VfsError::NotLink => Errno::EINVAL,
        VfsError::IsDir => Errno::EISDIR,
        VfsError::NoXattr => Errno::NO_XATTR,
        VfsError::BadHandle => Errno::EBADF,
        VfsError::Io(e) => {
            // The one place damage is reported: the caller only sees EIO.
            log(format_args!("snapfs: {op}: {e}"));
            Errno::EIO
        }
    }
}

fn system_time(t: Time) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        // Before 1970: whole seconds back, then the nanoseconds forward.
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(u64::from(t.nsec))
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.mtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 128 * 1024,
        flags: 0,
    }
}

/// Replies to getxattr/listxattr: the size when asked for it, ERANGE when it does not fit.
fn reply_xattr(reply: ReplyXattr, size: u32, data: Result<Vec<u8>, Errno>) {
    match data {
        Ok(d) if size == 0 => reply.size(d.len() as u32),
        Ok(d) if d.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(e),
    }
}

impl fuser::Filesystem for SnapFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Ask for as much read-ahead as the kernel allows; it says how much that is.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        // Each is an optimisation: take whichever the kernel offers.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // Safe: a symlink's inode number includes its target.
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match guard("lookup", || self.vfs.lookup(parent.0, name.as_bytes())) {
            Ok(e) => reply.entry_with_ttls(&e.attr_ttl, &e.entry_ttl, &file_attr(&e.attr), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _ = guard("forget", || {
            self.vfs.forget(ino.0, nlookup);
            Ok(())
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match guard("getattr", || self.vfs.getattr(ino.0)) {
            Ok((a, ttl)) => reply.attr(&ttl, &file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match guard("readlink", || self.vfs.readlink(ino.0)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Declining tells the kernel that opens need no request (nor releases): contents never
        // change, so it keeps their page cache across opens as FOPEN_KEEP_CACHE would, and reads
        // are served by inode number.
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match guard(format_args!("read of inode {}", ino.0), || self.vfs.read(ino.0, offset, size)) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Listings inside snapshots never change: let the kernel cache them across opens.
        let flags = if self.vfs.is_snapshot_dir(ino.0) {
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        reply.opened(FileHandle(0), flags);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = guard("readdir", || {
            self.vfs.readdir(ino.0, offset, false, &mut |off, e| {
                reply.add(INodeNo(e.ino), off, file_type(e.kind), OsStr::from_bytes(e.name))
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let r = guard("readdirplus", || {
            self.vfs.readdir(ino.0, offset, true, &mut |off, e| {
                let Some(entry) = e.entry else { return true };
                let ttl = entry.entry_ttl.min(entry.attr_ttl);
                reply.add(INodeNo(e.ino), off, OsStr::from_bytes(e.name), &ttl, &file_attr(&entry.attr), Generation(0))
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, guard("getxattr", || self.vfs.getxattr(ino.0, name.as_bytes())));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, guard("listxattr", || self.vfs.listxattr(ino.0)));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Only reached without default_permissions, where the owner may read everything; writing
        // is refused for the whole (read-only) mount.
        if mask.contains(fuser::AccessFlags::W_OK) { reply.error(Errno::EROFS) } else { reply.ok() }
    }
}
