//! Command-line conventions: what a restic user expects of snapfs.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn setup() -> (tempfile::TempDir, PathBuf, Snapfs) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    (tmp, base, s)
}

fn make_files(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
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
