//! Helpers for tests that run the real `snapfs` binary and mount it with the real kernel.

#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PASSWORD: &str = "correct horse battery staple";

/// Whether FUSE tests can run here. A test binary that reports "ok" for tests that never ran
/// looks green, so a missing FUSE fails the test, unless `SNAPFS_SKIP_FUSE=1` asks to skip it
/// (never in CI): then the test says so and returns early.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3").arg("-V").output().is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let why = "this FUSE mount test needs /dev/fuse and fusermount3 (apt-get install fuse3)";
    if std::env::var_os("CI").is_some_and(|v| v != "false") {
        panic!("FUSE is required in CI: {why}");
    }
    if std::env::var_os("SNAPFS_SKIP_FUSE").is_none_or(|v| v != "1") {
        panic!("{why}; set SNAPFS_SKIP_FUSE=1 to skip the FUSE tests instead");
    }
    eprintln!("\n!!!!!!!! SKIPPED (SNAPFS_SKIP_FUSE=1): {why} !!!!!!!!\n");
    false
}

/// A repository in a temporary directory, driven through the CLI.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("repo");
        let t = TestRepo { dir, path };
        t.ok(&["init"]);
        t
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_snapfs"));
        c.args(args)
            .env("SNAPFS_REPOSITORY", &self.path)
            .env("SNAPFS_PASSWORD", PASSWORD)
            .env("SNAPFS_CACHE_DIR", self.path.with_extension("cache"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run snapfs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "snapfs {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The repository through the library, with its index caught up in memory.
    pub fn open(&self) -> snapfs::repo::Repository {
        let backend: std::sync::Arc<dyn snapfs::backend::Backend> =
            std::sync::Arc::new(snapfs::backend::LocalBackend::new(&self.path));
        let r = snapfs::repo::Repository::open(backend, PASSWORD.as_bytes(), snapfs::repo::LockMode::None, "test")
            .expect("open the repository");
        r.load_index(&snapfs::repo::Cache::memory()).expect("load the index").0
    }

    /// A fresh empty directory inside the test's temporary directory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    pub fn mount(&self, args: &[&str]) -> Mounted {
        let mp = self.subdir("mnt");
        let log = self.dir.path().join("mount.log");
        let mut c = self.cmd(&["mount"]);
        c.arg(&mp).args(args).stdout(Stdio::null()).stderr(File::create(&log).expect("log file"));
        let child = c.spawn().expect("spawn snapfs mount");
        let mut m = Mounted { child, mp, log };
        m.wait_ready();
        m
    }
}

pub fn is_mounted(mp: &Path) -> bool {
    let info = fs::read("/proc/self/mountinfo").unwrap_or_default();
    let needle = mp.as_os_str().as_bytes();
    info.split(|&b| b == b'\n').any(|l| l.split(|&b| b == b' ').nth(4) == Some(needle))
}

/// A running `snapfs mount`; unmounted and reaped on drop, also when the test fails.
pub struct Mounted {
    pub child: Child,
    pub mp: PathBuf,
    pub log: PathBuf,
}

impl Mounted {
    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("snapfs mount exited with {status}: {}", self.log_text());
            }
            if is_mounted(&self.mp) && self.mp.join("snapshots").is_dir() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the mount did not come up within 30 s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `snapshots/latest` followed by the absolute source path: where a backed-up tree appears.
    pub fn latest(&self, src: &Path) -> PathBuf {
        self.mp.join("snapshots/latest").join(src.strip_prefix("/").expect("absolute"))
    }

    /// Waits for the process to exit by itself, returning its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.mp) {
            let ok = Command::new("fusermount3").arg("-u").arg(&self.mp).status().is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.mp).status();
            }
        }
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

pub fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    };
    File::open(p).expect("open for times").set_modified(t).expect("set mtime");
}

pub fn mode(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
}

pub fn sh(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

pub fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos() as i128
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What [`damage_first_chunk`] damaged: the chunk, its pack, and the file's number of chunks.
pub struct Damaged {
    pub chunk: snapfs::id::Id,
    pub pack: snapfs::id::Id,
    pub chunks: usize,
}

/// Flips one byte in the middle of the first chunk of `/…/src/name` in the latest snapshot.
pub fn damage_first_chunk(repo: &TestRepo, src: &Path, name: &[u8]) -> Damaged {
    let r = repo.open();
    let (snaps, _) = r.snapshots().unwrap();
    let mut tree = snaps.last().unwrap().1.tree;
    for c in src.components().skip(1) {
        let nodes = r.load_tree(&tree).unwrap();
        tree = nodes.iter().find(|n| n.name == c.as_os_str().as_bytes()).unwrap().subtree().unwrap();
    }
    let nodes = r.load_tree(&tree).unwrap();
    let content = &nodes.iter().find(|n| n.name == name).unwrap().content;
    let chunk = content[0];
    let loc = r.index().lookup(&chunk).unwrap().unwrap();
    let pack = repo.path.join("packs").join(&loc.pack.hex()[..2]).join(loc.pack.hex());
    let mut bytes = fs::read(&pack).unwrap();
    bytes[(loc.offset + loc.length / 2) as usize] ^= 0x40;
    fs::write(&pack, bytes).unwrap();
    Damaged { chunk, pack: loc.pack, chunks: content.len() }
}
