//! `snapfs mount`: serves the repository's snapshots as a read-only filesystem in the
//! foreground until it is unmounted or the process gets SIGINT, SIGTERM or SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal};

use super::Global;
use snapfs::fuse::{self, MountOptions};
use snapfs::vfs::{Options, Vfs};

#[derive(clap::Args)]
pub struct Args {
    /// An empty directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
    /// Let other users use the mount (each access is then checked against the stored modes);
    /// needs `user_allow_other` in /etc/fuse.conf unless run as root
    #[arg(long)]
    allow_other: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Memory for decompressed file contents, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    cache_size: usize,
}

const INSTALL_HINT: &str = "install fuse3 (Debian/Ubuntu: apt-get install fuse3; Fedora: dnf install fuse3) and load the module (modprobe fuse)";

/// Refuses what would make a confusing mount: a missing, non-directory or non-empty mount point,
/// or a system without FUSE.
fn check_mountpoint(mp: &Path) -> Result<()> {
    let meta = match std::fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount point {} does not exist; create an empty directory first", mp.display())
        }
        Err(e) => return Err(e).with_context(|| format!("mount point {}", mp.display())),
    };
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", mp.display());
    }
    let mut entries = std::fs::read_dir(mp).with_context(|| format!("read mount point {}", mp.display()))?;
    if entries.next().is_some() {
        bail!("mount point {} is not empty; mount on an empty directory", mp.display());
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("FUSE is not available: /dev/fuse is missing; {INSTALL_HINT}");
    }
    let in_path =
        |bin: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    if snapfs::sys::uid() != 0 && !in_path("fusermount3") && !in_path("fusermount") {
        bail!("FUSE is not available: fusermount3 is missing (mounting as a user needs it); {INSTALL_HINT}");
    }
    Ok(())
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // Block the signals before any thread starts (opening the repository starts rayon's pool for
    // Argon2): every thread inherits the mask, so they reach only the waiter below, which unmounts.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("block signals")?;
    check_mountpoint(&a.mountpoint)?;
    let mountpoint = a.mountpoint.canonicalize().with_context(|| format!("resolve {}", a.mountpoint.display()))?;
    // A shared lock: backups take shared locks too, so they run while this is mounted.
    let repo = Arc::new(super::open(g, snapfs::repo::LockMode::Reader, "mount")?);
    let held = repo.clone();
    let opts = Options {
        filter: a.filter.into(),
        chunk_cache: a.cache_size.max(1) << 20,
        tree_cache: 8 << 20,
        // From request threads too (a snapshot list refresh): never a blocking write.
        warn: Box::new(|m| fuse::log(format_args!("snapfs: warning: {m}"))),
    };
    let vfs = Arc::new(Vfs::new(repo, opts)?);
    let count = vfs.snapshot_count();

    let session = fuse::mount(vfs, &mountpoint, &MountOptions { allow_other: a.allow_other, threads: 4 })
        .map_err(|e| mount_error(e, &mountpoint))?;
    let mut session = session;
    let mut unmounter = session.unmount_callable();
    if !g.quiet {
        outln!(
            "serving {count} snapshot{} at {}; unmount with `fusermount3 -u {}` or Ctrl-C",
            if count == 1 { "" } else { "s" },
            mountpoint.display(),
            mountpoint.display()
        );
    }
    let serve = std::thread::Builder::new().name("fuse-session".into()).spawn(move || session.run())?;
    let waiter_lock = held.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(sig) = signals.wait() else { return };
        errln!("snapfs: {sig}: unmounting {}", mountpoint.display());
        if let Err(e) = unmounter.unmount() {
            errln!("snapfs: unmount: {e}");
        }
        // Normally the session ends right away. If the mount is busy (a shell sitting in it),
        // detach it lazily and exit: the kernel drops it when its last user goes.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        errln!("snapfs: {} is busy; detaching it lazily", mountpoint.display());
        if nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH).is_err() {
            let _ = std::process::Command::new("fusermount3").arg("-uz").arg(&mountpoint).status();
        }
        // Exiting skips destructors: release the lock first (the vfs holds the last handle).
        waiter_lock.unlock();
        std::process::exit(0);
    })?;
    let result = serve.join().map_err(|_| anyhow::anyhow!("the FUSE session thread panicked"))?;
    held.unlock();
    result.context("serving the mount")?;
    if !g.quiet {
        outln!("unmounted");
    }
    Ok(0)
}

fn mount_error(e: std::io::Error, mp: &Path) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENOENT) => format!("; is FUSE available? {INSTALL_HINT}"),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "; mounting needs root, or fusermount3 (with user_allow_other in /etc/fuse.conf for --allow-other)"
                .to_string()
        }
        _ => String::new(),
    };
    anyhow::anyhow!("cannot mount on {}: {e}{hint}", mp.display())
}
