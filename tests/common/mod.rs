//! Shared helpers for the end-to-end CLI tests: running the real `snapfs` binary, generating a
//! hostile test tree, and comparing trees with ordinary tools (`diff`, `find`, `getfattr`).
#![allow(dead_code)]

pub mod garage;
pub mod tree;

#[allow(unused_imports)]
pub use tree::*;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

/// Longest any single snapfs command may take before the test kills it and fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_snapfs")
}

/// A seeded splitmix64 generator: deterministic data without the rand crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_5EED_5EED_5EED)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Writes `len` pseudo-random bytes to `path`.
pub fn write_random(path: &Path, len: u64, rng: &mut Rng) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// Compressible "text" of `len` bytes: words drawn from a small vocabulary.
pub fn text_bytes(len: usize, rng: &mut Rng) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "snapshot", "chunk", "pack", "tree", "blob", "the", "a", "of", "restore", "backup", "index", "lorem", "ipsum",
        "dolor", "\n", "fn", "let", "mut", "{", "}", ";",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Human-readable account of a finished command, for panic messages.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}\n  exit: {:?}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to completion with a time limit; stdout and stderr are captured in anonymous files
/// (no pipe can fill up and deadlock). Fails the test on timeout.
pub fn run_cmd(cmd: &mut Command) -> Output {
    let mut out_f = tempfile::tempfile().unwrap();
    let mut err_f = tempfile::tempfile().unwrap();
    cmd.stdout(out_f.try_clone().unwrap()).stderr(err_f.try_clone().unwrap());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let start = Instant::now();
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {COMMAND_TIMEOUT:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    out_f.seek(SeekFrom::Start(0)).unwrap();
    out_f.read_to_end(&mut stdout).unwrap();
    err_f.seek(SeekFrom::Start(0)).unwrap();
    err_f.read_to_end(&mut stderr).unwrap();
    Output { status, stdout, stderr }
}

/// Runs an ordinary system tool and returns its stdout; panics when it fails.
pub fn sh<S: AsRef<OsStr>>(prog: &str, args: &[S]) -> Vec<u8> {
    let mut c = Command::new(prog);
    c.args(args).stdin(Stdio::null());
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe(&format!("{prog} {:?}", c.get_args().collect::<Vec<_>>()), &out));
    out.stdout
}

pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} >/dev/null"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One repository plus the way to reach it.
#[derive(Clone)]
pub struct Snapfs {
    pub repo: PathBuf,
    /// Given to the binary as `SNAPFS_PASSWORD` when set.
    pub password: Option<String>,
    /// Extra environment for every command (e.g. `TZ`).
    pub env: Vec<(OsString, OsString)>,
}

impl Snapfs {
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        Snapfs { repo: repo.into(), password: Some(PASSWORD.to_string()), env: Vec::new() }
    }

    /// A command with a clean snapfs environment, `--repo` and the password; no stdin.
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--repo").arg(&self.repo);
        c.env_remove("SNAPFS_REPOSITORY")
            .env_remove("SNAPFS_PASSWORD")
            .env_remove("SNAPFS_PASSWORD_FILE")
            .env_remove("SNAPFS_PASSWORD_COMMAND")
            .env("SNAPFS_CACHE_DIR", cache_dir(&self.repo))
            .stdin(Stdio::null());
        if let Some(p) = &self.password {
            c.env("SNAPFS_PASSWORD", p);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command();
        c.args(args);
        run_cmd(&mut c)
    }

    /// Runs and requires exit 0; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(out.status.success(), "{}", describe(&format!("snapfs {args:?} must succeed"), &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn init(&self) -> String {
        self.ok(["init"])
    }

    /// `snapfs backup ARGS...`; requires exit 0 and returns the saved snapshot's id.
    pub fn backup<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["backup".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let stdout = self.ok(&all);
        snapshot_id_from(&stdout)
    }

    /// `snapfs backup --json ARGS...`: the summary object printed last on stdout.
    pub fn backup_json<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["backup".into(), "--json".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let stdout = self.ok(&all);
        let v = parse_json_object(&stdout);
        check_summary_keys(&v);
        let id = v["snapshot_id"].as_str().unwrap_or("");
        assert!(is_hex(id, 64), "backup --json summary without a 64-hex snapshot_id: {v}");
        v
    }

    /// `snapfs snapshots --json [ARGS]`, parsed.
    pub fn snapshots<I, S>(&self, args: I) -> Vec<serde_json::Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["snapshots".into(), "--json".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let stdout = self.ok(&all);
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("snapshots --json is not JSON ({e}):\n{stdout}"));
        v.as_array().unwrap_or_else(|| panic!("snapshots --json is not an array:\n{stdout}")).clone()
    }

    /// Ids of the snapshots listed by `snapshots --json ARGS`, sorted.
    pub fn snapshot_ids<I, S>(&self, args: I) -> Vec<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut ids: Vec<String> = self
            .snapshots(args)
            .iter()
            .map(|s| s["id"].as_str().expect("snapshot without string id").to_string())
            .collect();
        ids.sort();
        ids
    }

    /// `snapfs restore SPEC --target DIR [EXTRA]`; requires exit 0; returns stdout.
    pub fn restore(&self, spec: &str, target: &Path, extra: &[&str]) -> String {
        let mut args: Vec<OsString> = vec!["restore".into(), spec.into(), "--target".into(), target.into()];
        args.extend(extra.iter().map(OsString::from));
        self.ok(&args)
    }

    /// `snapfs restore SPEC --target DIR --json [EXTRA]`, run to the end whatever its exit code:
    /// the exit code and the summary object.
    pub fn restore_json(&self, spec: &str, target: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
        let mut args: Vec<OsString> =
            vec!["restore".into(), spec.into(), "--target".into(), target.into(), "--json".into()];
        args.extend(extra.iter().map(OsString::from));
        let out = self.run(&args);
        let v = parse_json_object(&stdout_of(&out));
        (out, v)
    }
}

/// A `restore --json` count: `v[what][kind]`, e.g. `count_of(&v, "restored", "files")`.
pub fn count_of(v: &serde_json::Value, what: &str, kind: &str) -> u64 {
    v[what][kind].as_u64().unwrap_or_else(|| panic!("{what}.{kind} missing or not a number in {v}"))
}

/// A fresh temporary directory (canonical) with an initialized repository `repo` in it.
pub fn setup() -> (tempfile::TempDir, PathBuf, Snapfs) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    (tmp, base, s)
}

/// Writes each `(relative path, bytes)` under `root`, making the directories on the way.
pub fn make_files(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
}

/// Extracts `<id>` from the `snapshot <id> saved` line.
pub fn snapshot_id_from(stdout: &str) -> String {
    for line in stdout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() == 3 && w[0] == "snapshot" && w[2] == "saved" {
            assert!(is_hex(w[1], 64), "snapshot id is not 64 lower-case hex digits: {line:?}");
            return w[1].to_string();
        }
    }
    panic!("no `snapshot <id> saved` line in stdout:\n{stdout}");
}

/// The JSON object on stdout: the whole output or, failing that, its last non-empty line.
pub fn parse_json_object(stdout: &str) -> serde_json::Value {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout.trim())
        && v.is_object()
    {
        return v;
    }
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    match serde_json::from_str::<serde_json::Value>(last) {
        Ok(v) if v.is_object() => v,
        _ => panic!("no JSON summary object on stdout:\n{stdout}"),
    }
}

pub const SUMMARY_KEYS: &[&str] = &[
    "files_new",
    "files_changed",
    "files_unchanged",
    "dirs_new",
    "dirs_changed",
    "dirs_unchanged",
    "bytes_read",
    "bytes_added",
    "data_blobs_added",
    "total_files",
    "total_bytes",
    "errors",
    "duration_ns",
];

pub fn check_summary_keys(v: &serde_json::Value) {
    for k in SUMMARY_KEYS {
        assert!(v[*k].is_u64(), "summary key {k:?} missing or not an unsigned integer in {v}");
    }
    if let Some(id) = v.get("snapshot_id").and_then(|id| id.as_str()) {
        assert!(is_hex(id, 64), "snapshot_id not 64 hex: {v}");
    }
}

pub fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key:?} missing or not a number in {v}"))
}

/// Sum of the sizes of all regular files under `dir` (0 if it does not exist).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    for e in rd {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() {
            total += dir_size(&e.path());
        } else if md.is_file() {
            total += md.len();
        }
    }
    total
}

/// Every regular file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                walk(&p, out);
            } else if md.is_file() {
                out.push(p);
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

/// The index cache the test commands use for `repo`: beside it, so it goes with the test.
pub fn cache_dir(repo: &Path) -> PathBuf {
    repo.with_extension("cache")
}

/// The index cache file of `repo` (the one repository under its cache directory).
pub fn index_file(repo: &Path) -> PathBuf {
    let dir = cache_dir(repo);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path().join("index.redb"))
        .collect();
    assert_eq!(found.len(), 1, "one repository cache under {}", dir.display());
    found.pop().unwrap()
}

/// Bytes under `packs/` plus `snapshots/`.
pub fn repo_data_size(repo: &Path) -> u64 {
    dir_size(&repo.join("packs")) + dir_size(&repo.join("snapshots"))
}

/// Where a restore into `target` puts the absolute source path `src`.
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    assert!(src.is_absolute(), "{} is not absolute", src.display());
    target.join(src.strip_prefix("/").unwrap())
}

/// A fresh temporary directory whose path is canonical (restores mirror absolute paths).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error line contract: the first line of stderr that starts `snapfs: error: `.
pub fn assert_error_line(out: &Output) -> String {
    let err = stderr_of(out);
    let line = err
        .lines()
        .find(|l| l.starts_with("snapfs: error: "))
        .unwrap_or_else(|| panic!("{}", describe("stderr has no `snapfs: error: ` line", out)));
    line.to_string()
}

pub fn this_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}
