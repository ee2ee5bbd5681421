//! Crash consistency with real SIGKILLs of `snapfs backup`, and lock handling: stale locks of dead
//! processes are ignored, live exclusive locks block (exit 11) until `unlock --remove-all`.

mod common;
use common::*;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// ~150 MB in ~60 files over a few directories, mostly random, some compressible.
fn crash_data(root: &Path, rng: &mut Rng) -> u64 {
    let mut total = 0;
    let mut i = 0;
    while total < 150_000_000 {
        let dir = root.join(format!("d{}", i % 5));
        fs::create_dir_all(&dir).unwrap();
        let len = 512 * KIB + rng.below(4 * MIB);
        let path = dir.join(format!("file-{i:03}"));
        if i % 4 == 0 {
            fs::write(&path, text_bytes(len as usize, rng)).unwrap();
        } else {
            write_random(&path, len, rng);
        }
        total += len;
        i += 1;
    }
    total
}

#[test]
fn sigkill_during_backup_never_damages_the_repository() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let data = base.join("data");
    let mut rng = Rng::new(2024);
    crash_data(&data, &mut rng);
    let s = Snapfs::new(base.join("repo"));
    s.init();
    let first = s.backup([&data]);

    // The reference: the first snapshot restored, checked against the source.
    let reference = base.join("reference");
    s.restore(&first, &reference, &[]);
    let reference = restored(&reference, &data);
    assert_same_tree(&data, &reference);

    // How long the kind of backup we kill (a full re-read) takes here; kill anywhere from before
    // the key derivation to its end (at most 2 s).
    let started = Instant::now();
    let second = s.backup(["--force".as_ref(), data.as_os_str()]);
    let full_backup = started.elapsed();
    let mut completed = vec![first.clone(), second];
    completed.sort();
    let mut killed = 0;
    let window = full_backup.max(Duration::from_millis(300)).min(Duration::from_secs(2)).as_millis() as u64;
    for round in 0..8 {
        // New data, so that the killed backup has packs to write.
        fs::create_dir_all(data.join("new")).unwrap();
        write_random(&data.join(format!("new/round-{round}")), 8 * MIB + rng.below(8 * MIB), &mut rng);
        let i = round * 7;
        let existing = data.join(format!("d{}/file-{i:03}", i % 5));
        assert!(existing.exists(), "{}", existing.display());
        write_random(&existing, 2 * MIB, &mut rng);

        let delay = Duration::from_millis(rng.below(window + 1));
        let mut c = s.command();
        c.args(["backup", "--force"]).arg(&data).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        }
        let left = |d: &str| fs::read_dir(s.repo.join(d)).map(|r| r.count()).unwrap_or(0);
        eprintln!(
            "round {round}: killed after {delay:?}: {status}; left {} lock(s), {} tmp file(s)",
            left("locks"),
            left("tmp")
        );

        // The repository still lists its snapshots: every earlier one, plus at most the killed
        // backup's (exactly that one if it finished before the kill).
        let ids = s.snapshot_ids(Vec::<&str>::new());
        for id in &completed {
            assert!(ids.contains(id), "round {round}: snapshot {id} vanished after a SIGKILL");
        }
        let added = ids.len() - completed.len();
        assert!(added <= 1, "round {round}: {added} snapshots appeared from one backup: {ids:?}");
        if status.success() {
            assert_eq!(added, 1, "round {round}: the backup finished but no snapshot was listed");
        }
        completed = ids;

        // The first snapshot restores exactly.
        let target = base.join(format!("restore-{round}"));
        s.restore(&first[..12], &target, &[]);
        assert_same_tree(&reference, &restored(&target, &data));
        fs::remove_dir_all(&target).unwrap();

        // And the next backup works (a dead process's lock is stale, not exit 11).
        let out = s.run(["backup".as_ref(), data.as_os_str()]);
        assert!(out.status.success(), "{}", describe(&format!("round {round}: backup after a SIGKILL"), &out));
        completed.push(snapshot_id_from(&stdout_of(&out)));
        completed.sort();
    }
    eprintln!("{killed} of 8 backups were killed mid-run (a full re-read took {full_backup:?})");
    assert!(killed >= 1, "no backup was killed while running: the test exercised nothing");

    // `unlock` clears whatever stale locks the killed backups left behind.
    s.ok(["unlock"]);
    let left: Vec<_> = fs::read_dir(s.repo.join("locks")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "`unlock` left locks of dead processes: {left:?}");

    // The last snapshot holds the current data.
    let target = base.join("restore-last");
    s.restore("latest", &target, &[]);
    assert_same_tree(&data, &restored(&target, &data));
}

/// `date -u` at an offset from now, e.g. "+30 min" or "-31 min".
fn rfc3339_at(offset: &str) -> String {
    String::from_utf8(sh("date", &["-u", "-d", offset, "+%Y-%m-%dT%H:%M:%SZ"])).unwrap().trim().to_string()
}

/// Writes a lock file in the spec's format (§10) and returns its path.
fn write_lock(repo: &Path, host: &str, pid: u32, exclusive: bool, seed: u64) -> PathBuf {
    write_lock_at(repo, host, pid, exclusive, seed, "now", "+30 min")
}

fn write_lock_at(repo: &Path, host: &str, pid: u32, exclusive: bool, seed: u64, time: &str, expires: &str) -> PathBuf {
    let name = hex(&Rng::new(seed).bytes(16));
    let path = repo.join("locks").join(name);
    fs::create_dir_all(repo.join("locks")).unwrap();
    let (time, expires) = (rfc3339_at(time), rfc3339_at(expires));
    fs::write(
        &path,
        format!(
            "host={host}\npid={pid}\ntime={time}\nexpires={expires}\nexclusive={exclusive}\ncommand=test lock holder\n"
        ),
    )
    .unwrap();
    path
}

fn small_repo() -> (tempfile::TempDir, PathBuf, Snapfs) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"locked?").unwrap();
    let s = Snapfs::new(base.join("repo"));
    s.init();
    (tmp, data, s)
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn live_exclusive_lock_blocks_until_unlock_remove_all() {
    let (_tmp, data, s) = small_repo();
    let holder = KillOnDrop(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = holder.0.id();
    let host = this_hostname();

    // A live shared lock does not block a backup (backups share).
    let shared = write_lock(&s.repo, &host, pid, false, 1);
    s.backup([&data]);
    assert!(shared.exists(), "a live process's shared lock was removed");
    fs::remove_file(&shared).unwrap();

    let lock = write_lock(&s.repo, &host, pid, true, 2);
    let out = s.run(["backup".as_ref(), data.as_os_str()]);
    assert_eq!(out.status.code(), Some(11), "{}", describe("backup under a live exclusive lock", &out));
    assert_error_line(&out);

    // Plain unlock removes only stale locks: this one is live.
    s.ok(["unlock"]);
    assert!(lock.exists(), "`unlock` removed a live process's lock");
    assert_eq!(s.run(["backup".as_ref(), data.as_os_str()]).status.code(), Some(11));

    s.ok(["unlock", "--remove-all"]);
    assert!(!lock.exists(), "`unlock --remove-all` left the lock");
    s.backup([&data]);
    assert_eq!(s.snapshots(Vec::<&str>::new()).len(), 2);
}

#[test]
fn lock_of_a_dead_process_on_this_host_is_stale() {
    let (_tmp, data, s) = small_repo();
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let lock = write_lock(&s.repo, &this_hostname(), pid, true, 3);
    let out = s.run(["backup".as_ref(), data.as_os_str()]);
    assert!(out.status.success(), "{}", describe("backup with a dead process's exclusive lock", &out));
    assert!(!lock.exists(), "the stale lock was not removed");
}

#[test]
fn fresh_lock_from_another_host_blocks_until_removed() {
    let (_tmp, data, s) = small_repo();
    // Liveness cannot be checked on another host: a fresh exclusive lock must be respected.
    let lock = write_lock(&s.repo, "some-other-host.example", 1, true, 4);
    let out = s.run(["backup".as_ref(), data.as_os_str()]);
    assert_eq!(out.status.code(), Some(11), "{}", describe("backup under another host's lock", &out));
    s.ok(["unlock"]);
    assert!(lock.exists(), "`unlock` removed another host's fresh lock");
    s.ok(["unlock", "--remove-all"]);
    assert!(!lock.exists());
    s.backup([&data]);
}

#[test]
fn an_expired_lock_of_another_host_is_stale() {
    let (_tmp, data, s) = small_repo();
    // A machine that died an hour ago: its lock was never refreshed and has expired.
    let lock = write_lock_at(&s.repo, "dead-host.example", 1, true, 5, "-60 min", "-30 min");
    let out = s.run(["backup".as_ref(), data.as_os_str()]);
    assert!(out.status.success(), "{}", describe("backup beside an expired lock", &out));
    assert!(!lock.exists(), "the expired lock was not removed");
}

#[test]
fn a_file_in_locks_that_is_no_lock_blocks_nothing() {
    let (_tmp, data, s) = small_repo();
    let junk = s.repo.join("locks").join(".x");
    fs::create_dir_all(s.repo.join("locks")).unwrap();
    fs::write(&junk, b"hi\n").unwrap();
    s.backup([&data]);
    let out = s.ok(["unlock"]);
    assert!(out.contains("removed 1 lock"), "{out}");
    assert!(!junk.exists(), "`unlock` left a file that is not a lock");
}
