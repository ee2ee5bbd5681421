//! Bad and awkward input: missing and unreadable paths, relative and repeated paths, choosing a
//! snapshot by time, snapshot filters, dry runs and exclude patterns.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn missing_path_fails_and_writes_no_snapshot() {
    let (_tmp, base, s) = setup();
    let good = base.join("good");
    make_files(&good, &[("a", b"a")]);
    let missing = base.join("no-such-dir");
    for args in [vec![missing.clone()], vec![good.clone(), missing.clone()]] {
        let out = s.run(std::iter::once(PathBuf::from("backup")).chain(args.clone()));
        assert_eq!(out.status.code(), Some(1), "{}", describe(&format!("backup {args:?}"), &out));
        let line = assert_error_line(&out);
        assert!(line.contains("no-such-dir"), "error does not name the missing path: {line}");
    }
    assert!(s.snapshots(Vec::<&str>::new()).is_empty(), "a snapshot was written despite a missing path");
    assert_eq!(dir_size(&s.repo.join("snapshots")), 0);
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_r(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_r(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn unreadable_file_gives_exit_3_and_a_snapshot_of_the_rest() {
    if !have_tool("setpriv") {
        panic!("setpriv (util-linux) is required to run a backup as an unprivileged user");
    }
    let (_tmp, base, s) = setup();
    chmod(&base, 0o755);
    let data = base.join("data");
    make_files(&data, &[("readable-1", b"one"), ("sub/readable-2", b"two"), ("sub/secret-unreadable", b"hidden")]);
    chmod(&data.join("sub/secret-unreadable"), 0o000);
    // The repository belongs to `nobody`, who runs the backup.
    chown_r(&s.repo, 65534);
    let home = base.join("home");
    fs::create_dir(&home).unwrap();
    chown_r(&home, 65534);

    let inner = s.command();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(inner.get_program()).args(inner.get_args());
    c.arg("backup").arg(&data).env("SNAPFS_PASSWORD", PASSWORD).env("HOME", &home).stdin(std::process::Stdio::null());
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(3), "{}", describe("backup with an unreadable file", &out));
    assert!(
        stderr_of(&out).contains("secret-unreadable"),
        "{}",
        describe("the unreadable file is not named on stderr", &out)
    );
    snapshot_id_from(&stdout_of(&out));

    let snaps = s.snapshots(Vec::<&str>::new());
    assert_eq!(snaps.len(), 1, "the snapshot was not saved");
    assert!(num(&snaps[0]["summary"], "errors") >= 1, "summary does not count the error: {}", snaps[0]);
    let target = base.join("restore");
    s.restore("latest", &target, &[]);
    let r = restored(&target, &data);
    assert_eq!(fs::read(r.join("readable-1")).unwrap(), b"one");
    assert_eq!(fs::read(r.join("sub/readable-2")).unwrap(), b"two");
    if let Ok(got) = fs::read(r.join("sub/secret-unreadable")) {
        assert_ne!(got, b"hidden", "content nobody could read was restored?");
    }
}

#[test]
fn relative_and_repeated_paths() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("x", b"x"), ("y/z", b"z"), ("y/w", b"w")]);

    // Relative to the working directory.
    let mut c = s.command();
    c.args(["backup", "data"]).current_dir(&base);
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe("backup with a relative path", &out));
    let snaps = s.snapshots(Vec::<&str>::new());
    assert_eq!(snaps[0]["paths"], serde_json::json!([data.to_str().unwrap()]), "paths not made absolute");
    let target = base.join("r1");
    s.restore("latest", &target, &[]);
    assert_same_tree(&data, &restored(&target, &data));

    // The same path twice: accepted once.
    let mut c = s.command();
    c.args(["backup", "--json"]).arg(&data).arg(&data);
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe("backup with a path given twice", &out));
    assert!(!out.stderr.is_empty(), "no warning about the repeated path");
    let sum = parse_json_object(&stdout_of(&out));
    assert_eq!(num(&sum, "total_files"), 3, "files counted twice: {sum}");
    let snaps = s.snapshots(Vec::<&str>::new());
    assert_eq!(snaps.len(), 2);
    let latest = snaps.iter().find(|v| v["id"] == sum["snapshot_id"]).unwrap_or_else(|| panic!("{sum} not listed"));
    assert_eq!(latest["paths"], serde_json::json!([data.to_str().unwrap()]));
    let target = base.join("r2");
    s.restore("latest", &target, &[]);
    assert_same_tree(&data, &restored(&target, &data));
}

#[test]
fn backup_dry_run_writes_nothing() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("a", &Rng::new(5).bytes(300_000)), ("b", b"b")]);
    let before = repo_data_size(&s.repo);
    let out = s.ok(["backup".as_ref(), "--dry-run".as_ref(), data.as_os_str()]);
    // Contract: a line `dry run: ... would be added`.
    assert!(
        out.lines().any(|l| l.starts_with("dry run:") && l.contains("would be added")),
        "no `dry run: ... would be added` line in the output:\n{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("snapshot ") && l.ends_with(" saved")), "{out}");
    assert!(s.snapshots(Vec::<&str>::new()).is_empty(), "--dry-run wrote a snapshot");
    assert_eq!(repo_data_size(&s.repo), before, "--dry-run wrote packs");
}

#[test]
fn backup_exclude_and_exclude_file() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(
        &data,
        &[
            ("keep.txt", b"k"),
            ("drop.log", b"d"),
            ("sub/drop2.log", b"d"),
            ("sub/keep.rs", b"k"),
            ("sub/scratch.tmp", b"t"),
            ("cache/x", b"x"),
        ],
    );
    let exfile = base.join("excludes");
    fs::write(&exfile, format!("# comment\n*.tmp\n\n{}/cache/x\n", data.display())).unwrap();
    let mut c = s.command();
    c.args(["backup", "--exclude", "*.log", "--exclude-file"]).arg(&exfile).arg(&data);
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe("backup with excludes", &out));
    let target = base.join("r");
    s.restore("latest", &target, &[]);
    let r = restored(&target, &data);
    let got: BTreeSet<String> =
        files_under(&r).iter().map(|p| p.strip_prefix(&r).unwrap().to_string_lossy().into_owned()).collect();
    let want: BTreeSet<String> = ["keep.txt", "sub/keep.rs"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
}

/// Three snapshots at known times, with tags, each with different content in `marker`.
/// Times (UTC): S1 2024-03-10T10:00:00Z, S2 2024-03-10T12:30:30Z, S3 2024-03-12T08:00:00Z.
/// In Asia/Tokyo (UTC+9, no DST): 19:00, 21:30:30 on the 10th, 17:00 on the 12th.
#[test]
fn restore_by_timestamp_picks_the_newest_at_or_before() {
    let (_tmp, base, mut s) = setup();
    s.env.push(("TZ".into(), "Asia/Tokyo".into()));
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    let mut ids = Vec::new();
    for (i, (time, tag)) in
        [("2024-03-10T10:00:00Z", "a"), ("2024-03-10T12:30:30Z", "b"), ("2024-03-12T08:00:00Z", "a")].iter().enumerate()
    {
        fs::write(data.join("marker"), format!("S{}", i + 1)).unwrap();
        ids.push(s.backup(["--time".as_ref(), time.as_ref(), "--tag".as_ref(), tag.as_ref(), data.as_os_str()]));
    }
    let mut n = 0;
    let mut pick = |t: &str, extra: &[&str], want: &str| {
        n += 1;
        let target = base.join(format!("r{n}"));
        let mut args = vec!["restore", "--timestamp", t, "--target", target.to_str().unwrap()];
        args.extend(extra);
        let out = s.run(&args);
        assert!(out.status.success(), "{}", describe(&format!("restore --timestamp {t:?} {extra:?}"), &out));
        let got = fs::read_to_string(restored(&target, &data).join("marker")).unwrap();
        assert_eq!(got, want, "--timestamp {t:?} {extra:?} chose the wrong snapshot");
    };
    // RFC 3339, inclusive.
    pick("2024-03-10T10:00:00Z", &[], "S1");
    pick("2024-03-10T12:30:29Z", &[], "S1");
    pick("2024-03-10T12:30:30Z", &[], "S2");
    pick("2024-03-10T21:30:30+09:00", &[], "S2");
    pick("2024-03-10T07:30:29-05:00", &[], "S1");
    pick("2030-01-01T00:00:00Z", &[], "S3");
    // Local dates: the end of the day (2024-03-10 23:59:59 JST = 14:59:59Z).
    pick("2024-03-10", &[], "S2");
    pick("2024-03-11", &[], "S2");
    pick("2024-03-12", &[], "S3");
    // Local HH:MM means the end of that minute; HH:MM:SS exactly.
    pick("2024-03-10 21:30", &[], "S2");
    pick("2024-03-10 21:29", &[], "S1");
    pick("2024-03-10 21:30:29", &[], "S1");
    pick("2024-03-10 21:30:30", &[], "S2");
    // Local, not UTC: 16:59:59 JST is before S3 (17:00 JST), 16:59:59Z would be after it.
    pick("2024-03-12 16:59:59", &[], "S2");
    pick("2024-03-12 17:00:00", &[], "S3");
    // Filters.
    pick("2024-03-11", &["--tag", "a"], "S1");
    pick("2024-03-12", &["--tag", "b"], "S2");

    // Too early: an error naming the oldest snapshot (18:59 JST ends at 09:59:59Z, before S1).
    for t in ["2024-03-10T09:59:59Z", "2024-03-09", "2024-03-10 18:59"] {
        let target = base.join("too-early");
        let out = s.run(["restore", "--timestamp", t, "--target", target.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            describe(&format!("restore --timestamp {t:?} before every snapshot"), &out)
        );
        let err = stderr_of(&out);
        assert_error_line(&out);
        assert!(err.contains(&ids[0][..8]), "the error does not name the oldest snapshot {}:\n{err}", &ids[0][..8]);
        assert!(!target.join("tmp").exists(), "something was restored");
    }
}

#[test]
fn snapshots_json_fields_and_filters() {
    let (_tmp, base, s) = setup();
    let p1 = base.join("p1");
    let p2 = base.join("p2");
    make_files(&p1, &[("f", b"1")]);
    make_files(&p2, &[("g", b"2")]);
    let b = |time: &str, tags: &[&str], host: &str, path: &Path, desc: &str| {
        let mut args: Vec<String> =
            vec!["--time".into(), time.into(), "--host".into(), host.into(), "--description".into(), desc.into()];
        for t in tags {
            args.extend(["--tag".to_string(), t.to_string()]);
        }
        args.push(path.to_str().unwrap().into());
        s.backup(&args)
    };
    let s1 = b("2024-01-01T00:00:00Z", &["a"], "h1", &p1, "first one");
    let s2 = b("2024-01-02T00:00:00Z", &["b"], "h1", &p1, "");
    let s3 = b("2024-01-03T00:00:00Z", &["a", "c"], "h2", &p1, "");
    let s4 = b("2024-01-04T00:00:00Z", &[], "h1", &p2, "");
    let ids = |v: &[&String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(s.snapshot_ids(Vec::<&str>::new()), ids(&[&s1, &s2, &s3, &s4]));
    assert_eq!(s.snapshot_ids(["--tag", "a"]), ids(&[&s1, &s3]));
    assert_eq!(s.snapshot_ids(["--tag", "c"]), ids(&[&s3]));
    assert_eq!(s.snapshot_ids(["--host", "h1"]), ids(&[&s1, &s2, &s4]));
    assert_eq!(s.snapshot_ids(["--host", "h2", "--tag", "a"]), ids(&[&s3]));
    assert_eq!(s.snapshot_ids(["--path", p2.to_str().unwrap()]), ids(&[&s4]));
    assert_eq!(s.snapshot_ids(["--tag", "nope"]), Vec::<String>::new());
    assert_eq!(s.snapshot_ids(["--host", "h1", "--path", p1.to_str().unwrap(), "--last", "1"]), ids(&[&s2]));
    assert_eq!(s.snapshot_ids(["--host", "h1", "--path", p1.to_str().unwrap(), "--last", "2"]), ids(&[&s1, &s2]));

    // The JSON fields.
    let mut c = s.command();
    c.args(["snapshots", "--json"]).env("TZ", "UTC");
    let out = run_cmd(&mut c);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = all.as_array().unwrap().iter().find(|v| v["id"] == s1.as_str()).unwrap();
    assert_eq!(v["short_id"], s1[..8], "{v}");
    assert!(v["time"].as_str().unwrap().starts_with("2024-01-01T00:00:00"), "{v}");
    assert_eq!(v["hostname"], "h1");
    assert_eq!(v["paths"], serde_json::json!([p1.to_str().unwrap()]));
    assert_eq!(v["tags"], serde_json::json!(["a"]));
    assert_eq!(v["description"], "first one");
    assert_eq!((v["uid"].as_u64(), v["gid"].as_u64()), (Some(0), Some(0)), "{v}");
    assert!(v["username"].is_string(), "{v}");
    assert!(is_hex(v["tree"].as_str().unwrap_or(""), 64), "{v}");
    check_summary_keys(&v["summary"]);
    assert_eq!(num(&v["summary"], "total_files"), 1);

    // The table names every snapshot by its short id.
    let table = s.ok(["snapshots"]);
    for id in [&s1, &s2, &s3, &s4] {
        assert!(table.contains(&id[..8]), "table lacks {}:\n{table}", &id[..8]);
    }
}
