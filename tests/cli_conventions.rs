//! What a restic user expects of the command line: a closed pipe is no error, passwords come
//! from the sources restic reads in restic's order and are never empty, the repository is
//! private, messages count in the right number and say what happened, Ctrl-C cleans up, and the
//! version, help and exit codes follow the conventions.

mod common;
use common::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with its standard output a pipe whose reading end is already closed, as under
/// `| head -0`; stderr is captured.
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let err = tempfile::tempfile().unwrap();
    cmd.stdout(Stdio::piped()).stderr(err.try_clone().unwrap());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < COMMAND_TIMEOUT, "{cmd:?} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = Vec::new();
    use std::io::{Read, Seek};
    let mut err = err;
    err.rewind().unwrap();
    err.read_to_end(&mut stderr).unwrap();
    Output { status, stdout: Vec::new(), stderr }
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    let names: Vec<String> = (0..50).map(|i| format!("f{i:02}")).collect();
    for n in &names {
        make_files(&data, &[(n.as_str(), n.as_bytes())]);
    }
    let target = base.join("r");
    let runs: [(&str, Vec<&std::ffi::OsStr>); 4] = [
        ("backup --json", vec!["backup".as_ref(), "--json".as_ref(), data.as_os_str()]),
        ("snapshots", vec!["snapshots".as_ref()]),
        (
            "restore --dry-run",
            vec!["restore".as_ref(), "latest".as_ref(), "--dry-run".as_ref(), "--target".as_ref(), target.as_os_str()],
        ),
        ("check", vec!["check".as_ref()]),
    ];
    for (what, args) in runs {
        let mut c = s.command();
        c.args(&args);
        let out = with_closed_stdout(&mut c);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&format!("{what} into a closed pipe"), &out));
        let err = stderr_of(&out);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{what}: {err}");
    }
    // The backup whose reader went away still saved its snapshot.
    assert_eq!(s.snapshots(Vec::<&str>::new()).len(), 1);
}

#[test]
fn empty_passwords_are_refused_from_every_source() {
    let (_tmp, base, existing) = setup();
    let empty = base.join("empty");
    fs::write(&empty, "\n").unwrap();
    let cases: [(&str, Vec<String>, Option<&str>); 3] = [
        ("SNAPFS_PASSWORD", vec![], Some("")),
        ("password file", vec!["--password-file".into(), empty.to_str().unwrap().into()], None),
        ("password command", vec!["--password-command".into(), "true".into()], None),
    ];
    for (i, (source, args, env)) in cases.into_iter().enumerate() {
        // Creating a repository, and opening one: refused before any key is derived, naming
        // where the empty password came from (not "wrong password").
        let mut fresh = Snapfs::new(base.join(format!("repo{i}")));
        let mut open = Snapfs::new(&existing.repo);
        fresh.password = env.map(String::from);
        open.password = env.map(String::from);
        for (s, cmd) in [(&fresh, "init"), (&open, "snapshots")] {
            let out = s.run(args.iter().map(String::as_str).chain([cmd]));
            assert_eq!(out.status.code(), Some(1), "{}", describe(&format!("{cmd} with an empty {source}"), &out));
            let line = assert_error_line(&out);
            assert!(line.contains(source) && line.contains("empty password is not allowed"), "{cmd}: {line}");
        }
        assert!(!fresh.repo.join("config").exists(), "init with an empty {source} created a repository");
    }
}

#[test]
fn explicit_password_sources_win_over_the_environment() {
    let (_tmp, base, mut s) = setup();
    s.password = Some("wrong".into());
    let file = base.join("pw");
    // A file's line ending goes, whichever it is; what follows the first line is not the password.
    for content in
        [format!("{PASSWORD}\n"), format!("{PASSWORD}\r\n"), format!("{PASSWORD}\r"), format!("{PASSWORD}\nnotes")]
    {
        fs::write(&file, &content).unwrap();
        let out = s.run(["--password-file".as_ref(), file.as_os_str(), "snapshots".as_ref()]);
        assert!(out.status.success(), "{}", describe(&format!("--password-file holding {content:?}"), &out));
    }
    let cmd = format!("printf '%s\\n' '{PASSWORD}'");
    let out = s.run(["--password-command", &cmd, "snapshots"]);
    assert!(out.status.success(), "{}", describe("--password-command beside a wrong SNAPFS_PASSWORD", &out));
    // The environment alone still works, and a wrong one is a wrong password.
    assert_eq!(s.run(["snapshots"]).status.code(), Some(12));
    let out = s.run([
        "--password-command".as_ref(),
        cmd.as_ref(),
        "--password-file".as_ref(),
        file.as_os_str(),
        "snapshots".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe("both --password-file and --password-command", &out));
}

/// Every file and directory under `root` with its permission bits.
fn modes(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
        let md = fs::symlink_metadata(p).unwrap();
        out.push((p.to_path_buf(), md.mode() & 0o7777, md.is_dir()));
        if md.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    walk(root, &mut out);
    out
}

/// Runs snapfs under a permissive umask (002), which must not loosen the repository's modes.
fn run_umask_002(s: &Snapfs, args: &[&std::ffi::OsStr]) -> Output {
    let inner = s.command();
    let mut c = Command::new("sh");
    c.args(["-c", "umask 002 && exec \"$0\" \"$@\""]).arg(inner.get_program()).args(inner.get_args()).args(args);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(Stdio::null());
    run_cmd(&mut c)
}

#[test]
fn the_repository_is_private_unless_its_owner_shares_it_with_a_group() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    let out = run_umask_002(&s, &["init".as_ref()]);
    assert!(out.status.success(), "{}", describe("init", &out));
    let data = base.join("data");
    make_files(&data, &[("a", &Rng::new(1).bytes(200_000))]);
    let out = run_umask_002(&s, &["backup".as_ref(), data.as_os_str()]);
    assert!(out.status.success(), "{}", describe("backup", &out));
    for (p, mode, dir) in modes(&s.repo) {
        let want = if dir {
            0o700
        } else if p.parent().unwrap().ends_with("keys") {
            0o400
        } else {
            0o600
        };
        assert_eq!(mode, want, "{} has mode {mode:o}, want {want:o}", p.display());
    }

    // Shared with a group the way restic documents it: from then on, new files stay readable.
    sh("chmod", &["-R".as_ref(), "g+rX".as_ref(), s.repo.as_os_str()]);
    let before: Vec<PathBuf> = modes(&s.repo).into_iter().map(|(p, _, _)| p).collect();
    make_files(&data, &[("b", &Rng::new(2).bytes(300_000))]);
    let out = run_umask_002(&s, &["backup".as_ref(), data.as_os_str()]);
    assert!(out.status.success(), "{}", describe("backup into the shared repository", &out));
    let new: Vec<_> = modes(&s.repo).into_iter().filter(|(p, _, _)| !before.contains(p)).collect();
    assert!(new.iter().any(|(p, _, _)| p.starts_with(s.repo.join("snapshots"))), "no new snapshot file: {new:?}");
    for (p, mode, dir) in new {
        let want = if dir { 0o750 } else { 0o640 };
        assert_eq!(mode, want, "{} has mode {mode:o} in a shared repository, want {want:o}", p.display());
    }
}

#[test]
fn messages_count_in_the_right_number() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("only", b"one small file")]);
    let out = s.ok(["backup".as_ref(), data.as_os_str()]);
    assert!(out.contains("(1 new data blob)") && out.contains(", 1 file / "), "{out}");
    let out = s.ok(["check"]);
    assert!(out.contains("checked 1 snapshot:"), "{out}");
    assert!(s.ok(["snapshots"]).lines().any(|l| l.starts_with("1 snapshot;")));
    let spec = format!("latest:{}", data.join("only").display());
    let target = base.join("r");
    let out = s.ok(["restore".as_ref(), spec.as_ref(), "--dry-run".as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert!(
        out.contains("dry run: would have restored 1 file; skipped 0;") && out.contains("nothing written"),
        "{out}"
    );
    let out = s.restore(&spec, &target, &[]);
    assert!(out.contains("restored 1 file (14 B); skipped 0; renamed 0; deleted 0; failed 0 in "), "{out}");
    let out = s.restore(&spec, &target, &["--overwrite", "if-changed"]);
    assert!(out.contains("kept 1 existing file that already matches the snapshot"), "{out}");
    assert!(!out.contains("use --overwrite"), "--overwrite if-changed told to use if-changed:\n{out}");
}

#[test]
fn an_os_error_is_printed_once() {
    let tmp = tempdir();
    let file = canonical(tmp.path()).join("a-file");
    fs::write(&file, b"").unwrap();
    // Reading `a-file/config` fails with ENOTDIR, an I/O error of the library under anyhow's context.
    let out = Snapfs::new(&file).run(["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("snapshots of a file", &out));
    let line = assert_error_line(&out);
    assert_eq!(line.matches("os error").count(), 1, "{line}");

    let out = Snapfs::new(&file).run(["init"]);
    let line = assert_error_line(&out);
    assert!(line.contains("is not a directory") && !line.contains("os error"), "{line}");
}

#[test]
fn an_include_that_matches_nothing_is_an_error() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("x", b"x")]);
    s.backup([&data]);
    let target = base.join("r");
    let out = s.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--include".as_ref(),
        "nope*".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("restore --include nope*", &out));
    assert!(assert_error_line(&out).contains("matches nothing"), "{}", stderr_of(&out));
}

/// Runs a snapfs command as `nobody` (the repository and a home are made theirs first).
fn as_nobody(s: &Snapfs, base: &Path, args: &[&std::ffi::OsStr]) -> Output {
    assert!(have_tool("setpriv"), "setpriv (util-linux) is required to run snapfs as an unprivileged user");
    fs::create_dir_all(cache_dir(&s.repo)).unwrap();
    sh("chown", &["-R".as_ref(), "65534:65534".as_ref(), s.repo.as_os_str(), cache_dir(&s.repo).as_os_str()]);
    let home = base.join("home");
    fs::create_dir_all(&home).unwrap();
    sh("chown", &["65534:65534".as_ref(), home.as_os_str()]);
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    let inner = s.command();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(inner.get_program()).args(inner.get_args());
    c.args(args).env("HOME", &home).stdin(Stdio::null());
    if let Some(p) = &s.password {
        c.env("SNAPFS_PASSWORD", p);
    }
    c.env("SNAPFS_CACHE_DIR", cache_dir(&s.repo));
    run_cmd(&mut c)
}

#[test]
fn a_restore_into_a_read_only_target_says_nothing_was_restored() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("a", b"a"), ("sub/b", b"b")]);
    s.backup([&data]);
    // Root's directory: nobody may not write in it.
    let target = base.join("ro");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&s, &base, &["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("restore into a read-only target", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("nothing was restored"), "{line}");
}

#[test]
fn an_unreadable_directory_keeps_its_entry_and_gives_exit_3() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("open/a", b"a"), ("locked/secret", b"s")]);
    fs::set_permissions(data.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = as_nobody(&s, &base, &["backup".as_ref(), data.as_os_str()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe("backup with an unreadable directory", &out));
    let err = stderr_of(&out);
    assert!(err.contains("locked") && err.contains("cannot read directory"), "{err}");
    assert!(!err.contains("saved without"), "the directory is in the snapshot, the message says not:\n{err}");
    snapshot_id_from(&stdout_of(&out));

    let target = base.join("r");
    s.restore("latest", &target, &[]);
    let locked = restored(&target, &data).join("locked");
    let md = fs::symlink_metadata(&locked).unwrap_or_else(|e| panic!("{} not restored: {e}", locked.display()));
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o000, "the directory's metadata was not kept");
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 0);
    assert_eq!(fs::read(restored(&target, &data).join("open/a")).unwrap(), b"a");
}

#[test]
fn a_file_that_grows_while_read_is_reported_as_stored() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    let big = data.join("growing");
    write_random(&big, 48 * MIB, &mut Rng::new(3));
    // A writer appends while the backup reads; a few tries, as the race is the kernel's to call.
    for attempt in 0..5 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, big) = (stop.clone(), big.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = fs::OpenOptions::new().append(true).open(&big).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    f.write_all(b"more").unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let out = s.run(["backup".as_ref(), "--force".as_ref(), data.as_os_str()]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        let err = stderr_of(&out);
        if !err.contains("changed while it was read") {
            eprintln!("attempt {attempt}: the file did not change during its read");
            continue;
        }
        assert_eq!(out.status.code(), Some(3), "{}", describe("backup of a growing file", &out));
        assert!(!err.contains("without it"), "the file is in the snapshot, the message says not:\n{err}");
        assert!(err.contains("1 entry is in the snapshot as far as"), "{err}");
        let id = snapshot_id_from(&stdout_of(&out));
        let target = base.join(format!("r{attempt}"));
        s.restore(&id, &target, &[]);
        assert!(fs::metadata(restored(&target, &big)).unwrap().len() >= 48 * MIB);
        return;
    }
    panic!("in 5 backups the file never changed while it was read");
}

#[test]
fn ctrl_c_in_a_backup_removes_its_lock_and_staging_files() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("small", &Rng::new(4).bytes(3 * MIB as usize))]);
    // Long to read, nothing on disk: the backup is surely still reading it when the signal comes.
    let sparse = fs::File::create(data.join("sparse")).unwrap();
    sparse.set_len(64 << 30).unwrap();
    drop(sparse);
    let mut c = s.command();
    c.args(["backup".as_ref(), "--json".as_ref(), data.as_os_str()]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The first status line comes a second into the backup proper: the lock is held by then.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a status line").unwrap();
    assert!(first.contains("\"status\""), "{first}");
    assert_eq!(fs::read_dir(s.repo.join("locks")).unwrap().count(), 1, "no lock while backing up");
    sh("kill", &["-INT", &child.id().to_string()]);
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the backup did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "exit status {status} after SIGINT; stderr:\n{err}");
    let left = |d: &str| fs::read_dir(s.repo.join(d)).map(|r| r.count()).unwrap_or(0);
    assert_eq!(left("locks"), 0, "the lock was left behind; stderr:\n{err}");
    assert_eq!(left("tmp"), 0, "staging files were left behind; stderr:\n{err}");
    assert!(s.snapshots(Vec::<&str>::new()).is_empty(), "an interrupted backup saved a snapshot");
    s.ok(["check"]);
}

#[test]
fn restore_allow_damaged_writes_the_rest_with_holes() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    let content = Rng::new(5).bytes(8 * MIB as usize);
    make_files(&data, &[("big", &content), ("other", b"fine")]);
    s.backup([&data]);
    // Damage the second chunk of `big` in its pack.
    let (range, pack, at) = {
        use snapfs::backend::{Backend, LocalBackend};
        use snapfs::repo::{Cache, LockMode, Repository};
        let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(LocalBackend::new(&s.repo));
        let repo = Repository::open(backend, PASSWORD.as_bytes(), LockMode::None, "test").unwrap();
        let repo = repo.load_index(&Cache::memory()).unwrap().0;
        let (snaps, _) = repo.snapshots().unwrap();
        let node =
            snapfs::trees::Trees::new(&repo, 1 << 20).resolve(snaps[0].1.tree, &data.join("big")).unwrap().unwrap();
        assert!(node.content.len() >= 3, "want a file of several chunks, got {}", node.content.len());
        let index = repo.index().reader().unwrap();
        let locs: Vec<_> = node.content.iter().map(|id| index.get(id).unwrap().unwrap()).collect();
        let start = u64::from(locs[0].raw_len);
        let loc = &locs[1];
        let h = loc.pack.hex();
        (
            start..start + u64::from(loc.raw_len),
            s.repo.join("packs").join(&h[..2]).join(&h),
            u64::from(loc.offset + loc.length / 2),
        )
    };
    let mut bytes = fs::read(&pack).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(&pack, bytes).unwrap();

    // Without the option the file is not restored; the rest is.
    let plain = base.join("plain");
    let out = s.run(["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), plain.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("restore of a damaged file", &out));
    assert!(!restored(&plain, &data).join("big").exists());
    assert_eq!(fs::read(restored(&plain, &data).join("other")).unwrap(), b"fine");

    let target = base.join("r");
    let out = s.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--allow-damaged".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe("restore --allow-damaged", &out));
    let want = format!("holes at bytes {}-{}", range.start, range.end - 1);
    assert!(stderr_of(&out).contains(&want), "stderr does not list {want:?}:\n{}", stderr_of(&out));
    let got = fs::read(restored(&target, &data).join("big")).unwrap();
    assert_eq!(got.len(), content.len());
    let (lo, hi) = (range.start as usize, range.end as usize);
    assert!(got[..lo] == content[..lo] && got[hi..] == content[hi..], "the undamaged bytes differ");
    assert!(got[lo..hi].iter().all(|&b| b == 0), "the damaged range is not a hole");
}

#[test]
fn version_help_and_usage_errors_follow_the_conventions() {
    let out = run_cmd(Command::new(bin()).arg("--version"));
    let text = stdout_of(&out);
    assert!(
        out.status.success() && text.contains(env!("CARGO_PKG_VERSION")) && text.contains("repository format 2"),
        "{text}"
    );
    let out = run_cmd(Command::new(bin()).args(["version", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("version --json is JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["repository_format"], 2);
    assert_eq!(v["os"], std::env::consts::OS);

    let help = stdout_of(&run_cmd(Command::new(bin()).args(["backup", "--help"])));
    assert!(help.contains("Global options:") && help.contains("SNAPFS_REPOSITORY"), "{help}");
    assert!(!help.contains("[default: ]"), "{help}");
    let top = stdout_of(&run_cmd(Command::new(bin()).arg("--help")));
    assert!(top.contains("SNAPFS_PASSWORD "), "{top}");
    // Usage errors are clap's 2, distinct from runtime errors (1).
    assert_eq!(run_cmd(Command::new(bin()).args(["backup", "--no-such-flag"])).status.code(), Some(2));
}

#[test]
fn backup_parent_and_ignore_inode() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    let other = base.join("other");
    make_files(&data, &[("f", &Rng::new(6).bytes(100_000))]);
    make_files(&other, &[("g", b"g")]);
    let first = s.backup_json([&data]);
    let first = first["snapshot_id"].as_str().unwrap().to_string();
    // Other paths: no parent by default, the given one with --parent.
    let v = s.backup_json([&other]);
    assert!(v["parent"].is_null(), "{v}");
    let v = s.backup_json(["--parent".as_ref(), first[..8].as_ref(), other.as_os_str()]);
    assert_eq!(v["parent"], first.as_str(), "{v}");

    // The same file under a new inode (copied with its times, moved into place).
    let f = data.join("f");
    let new_inode = || {
        sh("cp", &["-p".as_ref(), f.as_os_str(), data.join("f.new").as_os_str()]);
        fs::rename(data.join("f.new"), &f).unwrap();
    };
    new_inode();
    let v = s.backup_json(["--ignore-inode".as_ref(), data.as_os_str()]);
    assert_eq!((num(&v, "files_unchanged"), num(&v, "files_changed")), (1, 0), "{v}");
    new_inode();
    let v = s.backup_json([&data]);
    assert_eq!((num(&v, "files_unchanged"), num(&v, "files_changed")), (0, 1), "{v}");
}

#[test]
fn retry_lock_waits_for_a_lock_to_go() {
    let (_tmp, _base, s) = setup();
    let locks = s.repo.join("locks");
    fs::create_dir_all(&locks).unwrap();
    let lock = locks.join("0123456789abcdef0123456789abcdef");
    let now = jiff::Timestamp::now();
    let expires = now.checked_add(jiff::SignedDuration::from_secs(600)).unwrap();
    fs::write(&lock, format!("host=elsewhere\npid=1\ntime={now}\nexpires={expires}\nexclusive=true\ncommand=prune\n"))
        .unwrap();
    assert_eq!(s.run(["check"]).status.code(), Some(11), "the lock does not block");
    let remover = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            fs::remove_file(lock).unwrap();
        })
    };
    let started = Instant::now();
    let out = s.run(["--retry-lock", "1m", "check"]);
    remover.join().unwrap();
    assert!(out.status.success(), "{}", describe("check --retry-lock 1m", &out));
    assert!(started.elapsed() >= Duration::from_millis(1500), "it did not wait for the lock");
}

#[test]
fn exclude_patterns_follow_restic() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(
        &data,
        &[
            ("deep/data/doc/x", b"x"),
            ("data/doc/y", b"y"),
            ("mydata/doc/kept", b"k"),
            ("src/drop.c", b"c"),
            ("src/keep.c", b"c"),
            ("photo.JPG", b"j"),
            ("notes.txt", b"t"),
        ],
    );
    let mut c = s.command();
    c.arg("backup").arg(&data);
    for p in ["data/doc", "*.c", "!keep.c"] {
        c.args(["--exclude", p]);
    }
    c.args(["--iexclude", "*.jpg"]);
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe("backup with restic patterns", &out));
    let target = base.join("r");
    s.restore("latest", &target, &[]);
    let r = restored(&target, &data);
    let got: Vec<String> =
        files_under(&r).iter().map(|p| p.strip_prefix(&r).unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(got, ["mydata/doc/kept", "notes.txt", "src/keep.c"]);

    // Restore's --iinclude: by name, ignoring case.
    let only = base.join("only");
    s.restore("latest", &only, &["--iinclude", "NOTES.TXT"]);
    let r = restored(&only, &data);
    let got: Vec<PathBuf> = files_under(&r).iter().map(|p| p.strip_prefix(&r).unwrap().to_path_buf()).collect();
    assert_eq!(got, [PathBuf::from("notes.txt")]);
}
