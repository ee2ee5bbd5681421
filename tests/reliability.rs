//! Regressions of the reliability suite (issue 20): a mount whose stderr nobody reads, a
//! password left in a running mount's environment, staging files of killed writers, and a
//! tree that expands without end. Each runs the real binary or the real library.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// Runs `f` on a thread and fails the test when it has not returned within `limit`: a request
/// stuck in the kernel must show as a failure, not as a test that never ends.
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}: the mount hangs"))
}

#[test]
fn a_mount_whose_stderr_is_never_read_still_answers_and_unmounts() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    let mut rng = Rng::new(0x10ad);
    fs::write(src.join("damaged"), rng.bytes(50_000)).unwrap();
    let good = rng.bytes(200_000);
    fs::write(src.join("good"), &good).unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    damage_first_chunk(&repo, &src, b"damaged");

    let mp = repo.subdir("mnt");
    // A pipe that is never drained: it fills after 64 KiB, a few hundred log lines.
    let mut c = repo.cmd(&["mount"]);
    c.arg(&mp).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _stderr = child.stderr.take().unwrap();
    let start = Instant::now();
    while !(is_mounted(&mp) && mp.join("snapshots").is_dir()) {
        assert!(start.elapsed() < Duration::from_secs(30), "the mount did not come up");
        assert!(child.try_wait().unwrap().is_none(), "the mount exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let view = mp.join("snapshots/latest").join(src.strip_prefix("/").unwrap());

    // Each failed read logs a line naming the blob and pack (~200 bytes): 3,000 of them are
    // far more than the pipe holds.
    let damaged = view.join("damaged");
    let eio = within(Duration::from_secs(120), "3,000 failing reads", move || {
        let f = fs::File::open(&damaged).unwrap();
        let mut buf = vec![0u8; 4096];
        (0..3000).filter(|_| f.read_at(&mut buf, 0).err().and_then(|e| e.raw_os_error()) == Some(libc::EIO)).count()
    });
    assert_eq!(eio, 3000, "every read of the damaged chunk must fail with EIO");
    let good_view = view.join("good");
    let read = within(Duration::from_secs(30), "a read after the log filled", move || fs::read(good_view).unwrap());
    assert!(read == good, "the undamaged file reads back exactly");

    let mp2 = mp.clone();
    let ok = within(Duration::from_secs(30), "fusermount3 -u", move || {
        Command::new("fusermount3").arg("-u").arg(&mp2).status().unwrap().success()
    });
    assert!(ok, "fusermount3 -u failed");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the mount did not exit after unmounting (blocked on its stderr?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the mount exited with {status}");
}

#[test]
fn a_running_mount_does_not_keep_the_password_in_its_environment() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src");
    fs::write(src.join("f"), b"x").unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    let mut m = repo.mount(&[]);
    let environ = fs::read(format!("/proc/{}/environ", m.child.id())).unwrap();
    let has = |needle: &[u8]| environ.windows(needle.len()).any(|w| w == needle);
    assert!(!has(PASSWORD.as_bytes()), "the password is readable in /proc/<pid>/environ");
    assert!(!has(b"SNAPFS_PASSWORD="), "SNAPFS_PASSWORD is still set in the running mount");
    // The rest of the environment is left alone, and the mount works.
    assert!(has(b"SNAPFS_REPOSITORY="), "the scrub removed more than the password");
    assert!(m.mp.join("snapshots/latest").is_dir());
    assert_eq!(m.wait_exit(Duration::from_millis(10)), None);
}

fn tmp_files(repo: &Path) -> Vec<PathBuf> {
    fs::read_dir(repo.join("tmp")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// Starts a backup of `src` and stops it with `signal` at the moment a staging file is in
/// `tmp/` (other than `known`); returns the child and that file, or None when the backup
/// finished first.
fn catch_with_tmp(
    repo: &TestRepo,
    src: &Path,
    signal: libc::c_int,
    known: Option<&Path>,
) -> Option<(std::process::Child, PathBuf)> {
    let mut child = repo.cmd(&["backup"]).arg(src).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    loop {
        if let Some(f) = tmp_files(&repo.path).into_iter().find(|f| Some(f.as_path()) != known) {
            // SAFETY: kill on the pid of a child we have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            // The signal lands asynchronously: only a stopped or dead writer no longer removes
            // its own file.
            settle(&mut child);
            if f.exists() {
                return Some((child, f));
            }
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
    }
}

/// Waits until the child is stopped (state T) or dead.
fn settle(child: &mut std::process::Child) {
    let stat = format!("/proc/{}/stat", child.id());
    for _ in 0..1000 {
        let text = fs::read_to_string(&stat).unwrap_or_default();
        let state = text.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if matches!(state, Some('T' | 't' | 'Z' | 'X') | None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn staging_files_of_a_killed_writer_go_at_once_and_a_live_writers_stay() {
    let repo = TestRepo::new();
    let src = repo.subdir("src");
    let mut rng = Rng::new(0x7e5);
    for i in 0..24 {
        fs::write(src.join(format!("f{i}")), rng.bytes(3 << 20)).unwrap();
    }
    // A writer killed while its staging file exists leaves it behind.
    let mut killed = None;
    for _ in 0..50 {
        if let Some((mut child, f)) = catch_with_tmp(&repo, &src, libc::SIGKILL, None) {
            child.wait().unwrap();
            if f.exists() {
                killed = Some(f);
                break;
            }
        }
    }
    let killed = killed.expect("no SIGKILL in 50 backups landed while a staging file existed");

    // A live writer, stopped while its staging file exists, beside the next backup.
    let other = repo.subdir("other");
    fs::write(other.join("g"), rng.bytes(1 << 20)).unwrap();
    let mut stopped = None;
    for _ in 0..50 {
        if let Some(found) = catch_with_tmp(&repo, &src, libc::SIGSTOP, Some(&killed)) {
            stopped = Some(found);
            break;
        }
    }
    let (mut live, live_tmp) = stopped.expect("no SIGSTOP in 50 backups landed while a staging file existed");
    repo.ok(&["backup", other.to_str().unwrap()]);
    assert!(!killed.exists(), "the staging file of a killed writer survived the next write: {}", killed.display());
    assert!(live_tmp.exists(), "the staging file of a running writer was removed");
    // SAFETY: kill on the pid of a child we have not reaped yet.
    unsafe { libc::kill(live.id() as libc::pid_t, libc::SIGCONT) };
    let status = live.wait().unwrap();
    assert!(status.success(), "the stopped backup failed after it was continued: {status}");
    repo.ok(&["check", "--read-data"]);
}

#[test]
fn a_tree_referencing_one_subtree_over_and_over_is_refused_not_walked() {
    let repo = TestRepo::new();
    let src = repo.subdir("src");
    fs::write(src.join("leaf"), b"leaf").unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);

    // 30 levels, each listing its child twice: 2^30 paths from 60 entries.
    let backend: Arc<dyn snapfs::backend::Backend> = Arc::new(snapfs::backend::LocalBackend::new(&repo.path));
    let r = snapfs::repo::Repository::open(backend, PASSWORD.as_bytes(), snapfs::repo::LockMode::Shared, "test")
        .unwrap()
        .load_index(&snapfs::repo::Cache::memory())
        .unwrap()
        .0;
    let (snaps, _) = r.snapshots().unwrap();
    let mut snap = snaps.last().unwrap().1.clone();
    let time = snapfs::format::tree::Time { sec: 1_700_000_000, nsec: 0 };
    let (root, _) = snapfs::repo::packer::with_packer(&r, false, |p| {
        let file = snapfs::format::tree::Node::made_up(b"leaf", snapfs::format::tree::Kind::File, 0o644, time);
        let mut tree = p.add(snapfs::crypto::ObjType::Tree, &snapfs::format::tree::encode(&[file]))?;
        for _ in 0..30 {
            let dir = |name: &[u8]| {
                let mut n = snapfs::format::tree::Node::made_up(name, snapfs::format::tree::Kind::Dir, 0o755, time);
                n.content = vec![tree];
                n
            };
            tree = p.add(snapfs::crypto::ObjType::Tree, &snapfs::format::tree::encode(&[dir(b"a"), dir(b"b")]))?;
        }
        Ok(tree)
    })
    .unwrap();
    snap.tree = root;
    snap.tags = vec!["bomb".into()];
    snap.paths = vec!["/bomb".into()];
    r.save_snapshot(&snap).unwrap();
    r.unlock();
    drop(r);

    let target = repo.subdir("target");
    for (what, args) in [
        ("restore", vec!["restore", "latest", "--tag", "bomb", "--target", target.to_str().unwrap()]),
        ("dump", vec!["dump", "latest", "--tag", "bomb", "--archive", "tar"]),
        ("check", vec!["check"]),
    ] {
        let mut c = repo.cmd(&args);
        // A dump that did not refuse would write its archive: never into the test's memory.
        c.stdout(if what == "dump" { Stdio::null() } else { Stdio::piped() }).stderr(Stdio::piped());
        let out = within(Duration::from_secs(60), what, move || c.output().unwrap());
        let err = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        assert!(!out.status.success(), "{what} of a 2^30-path tree succeeded");
        assert!(err.contains(&root.hex()) && err.contains("referenced over and over"), "{what}: {err}");
    }
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "restore wrote something before refusing");
    // The honest snapshot beside it still restores.
    let honest = repo.subdir("honest");
    let mut c = repo.cmd(&["restore", "latest", "--target", honest.to_str().unwrap()]);
    let out = c.arg("--path").arg(src.to_str().unwrap()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut s = String::new();
    fs::File::open(honest.join(src.strip_prefix("/").unwrap()).join("leaf")).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "leaf");
}

fn pack_files(repo: &Path) -> Vec<PathBuf> {
    let mut packs = Vec::new();
    for d in fs::read_dir(repo.join("packs")).unwrap().flatten() {
        packs.extend(fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()));
    }
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    packs
}

#[test]
fn two_swapped_packs_are_summarised_per_pack_not_listed_per_blob() {
    let repo = TestRepo::new();
    let mut rng = Rng::new(0x5a9);
    // Two backups of 300 small files each: two data packs of 300 blobs.
    for round in 0..2usize {
        let src = repo.subdir(&format!("src{round}"));
        for i in 0..300 {
            // Different sizes: the index's record of each pack's size then disagrees too.
            fs::write(src.join(format!("f{i}")), rng.bytes(2000 + round * 100)).unwrap();
        }
        repo.ok(&["backup", src.to_str().unwrap()]);
    }
    let packs = pack_files(&repo.path);
    let (a, b) = (&packs[0], &packs[1]);
    let (ba, bb) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    fs::write(a, &bb).unwrap();
    fs::write(b, &ba).unwrap();

    let out = repo.run(&["check", "--read-data", "--json"]);
    assert!(!out.status.success(), "check passed with two packs swapped: {}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let index_lines = v["index"]["problems"].as_array().unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(
        index_lines.len() + problems.len() <= 6,
        "{} lines for two swapped packs: {stdout}",
        index_lines.len() + problems.len()
    );
    for p in [a, b] {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(stdout.contains(name), "pack {name} is not named: {stdout}");
    }
    let plain = repo.run(&["check", "--read-data"]);
    let shown = String::from_utf8_lossy(&plain.stdout).lines().count();
    assert!(shown < 40, "check printed {shown} lines for two swapped packs");
}

#[test]
fn a_lost_root_tree_is_reported_as_the_whole_snapshot_lost() {
    let repo = TestRepo::new();
    let src = repo.subdir("src");
    fs::write(src.join("f"), b"content").unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    let r = repo.open();
    let (snaps, _) = r.snapshots().unwrap();
    let root = snaps.last().unwrap().1.tree;
    let loc = r.index().lookup(&root).unwrap().unwrap();
    drop(r);
    let pack = repo.path.join("packs").join(&loc.pack.hex()[..2]).join(loc.pack.hex());
    let mut bytes = fs::read(&pack).unwrap();
    bytes[(loc.offset + loc.length / 2) as usize] ^= 0x01;
    fs::write(&pack, bytes).unwrap();

    let out = repo.run(&["check", "--read-data"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check passed with the root tree damaged: {stdout}");
    assert!(stdout.contains(&format!("its root tree {} is lost", root.short())), "{stdout}");
    assert!(!stdout.contains("everything else in it restores"), "{stdout}");
}
