//! Retention the way it fails in the field: four backups and a mount running while forget and
//! prune run in a loop, each of them killed with SIGKILL at random moments. Afterwards every
//! snapshot that exists restores exactly to the tree its backup read, and check --read-data
//! passes. Seeded: the seed is printed, and SNAPFS_CHAOS_SEED replays a run.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What each attempt's tree held, by its unique tag, so a snapshot of a killed attempt that
/// still committed is checked too.
type Expected = Arc<Mutex<BTreeMap<String, (PathBuf, BTreeMap<String, Vec<u8>>)>>>;

fn snapshot_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        m.insert(p.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&p).unwrap());
    }
    m
}

/// Runs `c`, killing it after `kill_after` when given. Returns its stdout when it exited 0.
fn run_maybe_killed(mut c: Command, kill_after: Option<Duration>) -> Option<String> {
    let mut child: Child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some(d) = kill_after {
        let start = Instant::now();
        while start.elapsed() < d {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "a command panicked: {err}");
    // Beside the others, a command may meet a lock (exit 11); anything else but a kill is a bug.
    if kill_after.is_none() && !out.status.success() && out.status.code() != Some(11) {
        panic!("a command failed on its own: {err}");
    }
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn backups_a_mount_and_forget_prune_killed_at_random_lose_nothing() {
    let seed: u64 = std::env::var("SNAPFS_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xc4a05);
    eprintln!("chaos seed {seed} (SNAPFS_CHAOS_SEED={seed} replays it)");
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Arc::new(Snapfs::new(base.join("repo")));
    s.init();
    let expected: Expected = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(24);
    let mount_until = Instant::now() + Duration::from_secs(10);

    // A mount for the first part of the run: it holds deletions back while it lives.
    let mp = base.join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut mount = {
        let mut c = s.command();
        c.args(["mount".as_ref(), mp.as_os_str()]).stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().unwrap()
    };

    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (s, expected) = (s.clone(), expected.clone());
        let dir = base.join(format!("data{w}"));
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ ((w + 1) * 0x9e37_79b9));
            let mut n = 0;
            while Instant::now() < deadline {
                // Each worker owns its directory: it changes only between its own backups.
                fs::create_dir_all(&dir).unwrap();
                for i in 0..3 {
                    if rng.below(2) == 0 {
                        write_random(&dir.join(format!("f{i}")), 100_000 + rng.below(900_000), &mut rng);
                    }
                }
                let tag = format!("w{w}n{n}");
                n += 1;
                expected.lock().unwrap().insert(tag.clone(), (dir.clone(), snapshot_of(&dir)));
                let mut c = s.command();
                c.args(["backup", "--tag", &tag]).arg(&dir);
                let kill = (rng.below(3) == 0).then(|| Duration::from_millis(rng.below(400)));
                run_maybe_killed(c, kill);
            }
        }));
    }
    let pruner = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0x5eed);
            let (mut rounds, mut deleted) = (0, 0);
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
                let mut c = s.command();
                c.args(["forget", "--keep-last", "2", "--group-by", "paths", "--prune", "--json"]);
                let kill = (rng.below(3) == 0).then(|| Duration::from_millis(rng.below(600)));
                if let Some(out) = run_maybe_killed(c, kill) {
                    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
                    deleted += summary["deleted_packs"].as_u64().unwrap();
                }
                rounds += 1;
            }
            (rounds, deleted)
        })
    };
    // Read through the mount while it lives: what it lists must read back.
    let fuse = fuse_available_or_ci();
    while fuse && Instant::now() < mount_until {
        if let Ok(entries) = fs::read_dir(mp.join("snapshots/latest")) {
            let _ = entries.count();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("fusermount3").arg("-u").arg(&mp).status();
    let _ = mount.kill();
    let _ = mount.wait();
    for w in workers {
        w.join().unwrap();
    }
    let (rounds, deleted) = pruner.join().unwrap();

    // Afterwards: the locks of killed processes are stale, a last prune finishes what a killed
    // one left, and every snapshot there is restores to what its backup read.
    s.ok(["unlock"]);
    s.ok(["prune"]);
    s.ok(["check", "--read-data"]);
    let snaps = s.snapshots(Vec::<&str>::new());
    assert!(!snaps.is_empty());
    let expected = expected.lock().unwrap();
    for snap in &snaps {
        let tag = snap["tags"][0].as_str().unwrap();
        let (dir, want) = &expected[tag];
        let target = base.join(format!("restore-{tag}"));
        s.restore(snap["id"].as_str().unwrap(), &target, &[]);
        assert_eq!(&snapshot_of(&restored(&target, dir)), want, "snapshot {tag} does not restore exactly");
        fs::remove_dir_all(&target).unwrap();
    }
    eprintln!(
        "chaos: {} backup attempts, {rounds} forget+prune rounds deleting {deleted} packs beside them, {} snapshots verified",
        expected.len(),
        snaps.len()
    );
    assert!(deleted > 0, "no prune deleted anything beside the backups: the run proves too little");
}

/// FUSE is optional here (the retention part runs without it), except in CI.
fn fuse_available_or_ci() -> bool {
    let ok = Path::new("/dev/fuse").exists() && have_tool("fusermount3");
    assert!(ok || std::env::var_os("CI").is_none(), "CI must have FUSE for the chaos test's mount");
    ok
}
