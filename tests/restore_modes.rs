//! `restore --overwrite` modes, `--delete`, `--verify`, the per-kind counts of the summary
//! line and of `--json`, `--dry-run`'s counts, and bad input, through the real binary.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// A backed-up tree: 3 files, a symlink and a FIFO in `proj/`, 2 files in `proj/sub/`.
fn setup_tree() -> (tempfile::TempDir, PathBuf, PathBuf, Snapfs) {
    let (tmp, base, s) = setup();
    let tree = base.join("proj");
    make_files(
        &tree,
        &[
            ("a.txt", b"alpha\n"),
            ("b.txt", b"bravo\n"),
            ("c.txt", b"charlie\n"),
            ("sub/d.txt", b"delta\n"),
            ("sub/e.txt", b"echo\n"),
        ],
    );
    symlink("a.txt", tree.join("link")).unwrap();
    sh("mkfifo", &[tree.join("fifo")]);
    // Old times, so that a local edit is newer and a file set back in time is older.
    for rel in ["a.txt", "b.txt", "c.txt", "sub/d.txt", "sub/e.txt"] {
        set_mtime_secs(&tree.join(rel), 1_600_000_000);
    }
    s.backup([&tree]);
    (tmp, base, tree, s)
}

/// `setup_tree`, restored once into `t`: (temp dir, tree, repository, t).
fn setup_restored() -> (tempfile::TempDir, PathBuf, Snapfs, PathBuf) {
    let (tmp, base, tree, s) = setup_tree();
    let t = base.join("t");
    s.restore(&spec(&tree), &t, &[]);
    (tmp, tree, s, t)
}

fn set_mtime_secs(p: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    fs::File::options().write(true).open(p).unwrap().set_times(fs::FileTimes::new().set_modified(t)).unwrap();
}

/// The spec restoring `tree`'s contents straight into a target.
fn spec(tree: &Path) -> String {
    format!("latest:{}", tree.display())
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

fn ok_json(s: &Snapfs, spec: &str, target: &Path, extra: &[&str]) -> serde_json::Value {
    let (out, v) = s.restore_json(spec, target, extra);
    assert!(out.status.success(), "{}", describe(&format!("restore {extra:?}"), &out));
    v
}

#[test]
fn summary_line_and_json_count_every_kind() {
    let (_tmp, base, tree, s) = setup_tree();
    let t1 = base.join("t1");
    let out = s.restore(&spec(&tree), &t1, &[]);
    assert!(
        out.contains("restored 5 files, 1 directory, 1 symlink, 1 other entry"),
        "summary line does not count by kind:\n{out}"
    );
    assert!(out.contains("skipped 0; renamed 0; deleted 0; failed 0"), "{out}");
    assert_same_contents(&tree, &t1);

    let t2 = base.join("t2");
    let v = ok_json(&s, &spec(&tree), &t2, &[]);
    assert_eq!((count_of(&v, "restored", "files"), count_of(&v, "restored", "dirs")), (5, 1), "{v}");
    assert_eq!((count_of(&v, "restored", "symlinks"), count_of(&v, "restored", "others")), (1, 1), "{v}");
    for what in ["skipped", "renamed", "deleted", "failed"] {
        for kind in ["files", "dirs", "symlinks", "others"] {
            assert_eq!(count_of(&v, what, kind), 0, "{what}.{kind} in {v}");
        }
    }
    // Again into the same target: everything is there, so everything but the directory is skipped.
    let v = ok_json(&s, &spec(&tree), &t2, &[]);
    assert_eq!(count_of(&v, "skipped", "files"), 5, "{v}");
    assert_eq!(count_of(&v, "skipped", "symlinks"), 1, "{v}");
    assert_eq!(count_of(&v, "restored", "files"), 0, "{v}");
}

#[test]
fn if_newer_replaces_only_what_is_older_than_the_snapshot() {
    let (_tmp, tree, s, t) = setup_restored();
    // a.txt: edited now, newer than the snapshot: kept. b.txt: edited and set back before the
    // snapshot's time: replaced.
    fs::write(t.join("a.txt"), b"local a").unwrap();
    fs::write(t.join("b.txt"), b"local b").unwrap();
    set_mtime_secs(&t.join("b.txt"), 1_500_000_000);
    let v = ok_json(&s, &spec(&tree), &t, &["--overwrite", "if-newer"]);
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"local a", "if-newer replaced a newer file");
    assert_eq!(fs::read(t.join("b.txt")).unwrap(), b"bravo\n", "if-newer kept an older file");
    assert_eq!(count_of(&v, "restored", "files"), 1, "{v}");
}

#[test]
fn if_changed_keeps_files_of_the_same_size_and_time() {
    let (_tmp, tree, s, t) = setup_restored();
    // Same size and mtime, other bytes: taken for unchanged (as restic's quick check does).
    fs::write(t.join("a.txt"), b"ALPHA\n").unwrap();
    set_mtime_secs(&t.join("a.txt"), 1_600_000_000);
    fs::write(t.join("b.txt"), b"bravo, longer\n").unwrap();
    let v = ok_json(&s, &spec(&tree), &t, &["--overwrite", "if-changed"]);
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"ALPHA\n");
    assert_eq!(fs::read(t.join("b.txt")).unwrap(), b"bravo\n", "if-changed kept a changed file");
    assert_eq!(count_of(&v, "skipped", "files"), 4, "{v}");
}

#[test]
fn rename_keeps_the_existing_file_and_writes_the_snapshot_beside_it() {
    let (_tmp, base, tree, s) = setup_tree();
    let t = base.join("t");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::write(t.join("a.txt"), b"mine").unwrap();
    fs::write(t.join("sub/d.txt"), b"mine too").unwrap();
    let v = ok_json(&s, &spec(&tree), &t, &["--overwrite", "rename"]);
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"mine", "rename replaced the existing file");
    let beside: Vec<String> = names(&t).into_iter().filter(|n| n.starts_with("a.txt.snapfs-")).collect();
    assert_eq!(beside.len(), 1, "no renamed copy beside a.txt: {:?}", names(&t));
    let stamp = beside[0].strip_prefix("a.txt.snapfs-").unwrap();
    let b = stamp.as_bytes();
    assert!(
        b.len() == 16 && b[8] == b'T' && b[15] == b'Z' && stamp.chars().filter(char::is_ascii_digit).count() == 14,
        "not a UTC time like 20261201T223000Z: {stamp}"
    );
    assert_eq!(fs::read(t.join(&beside[0])).unwrap(), b"alpha\n");
    assert_eq!(fs::read(t.join("sub/d.txt")).unwrap(), b"mine too");
    assert_eq!(fs::read(t.join(format!("sub/d.txt.snapfs-{stamp}"))).unwrap(), b"delta\n");
    assert_eq!(fs::read(t.join("b.txt")).unwrap(), b"bravo\n", "a missing file was not restored");
    assert_eq!(count_of(&v, "renamed", "files"), 2, "{v}");
    assert_eq!(count_of(&v, "restored", "files"), 3, "{v}");
}

#[test]
fn error_mode_writes_nothing_when_anything_is_in_the_way() {
    let (_tmp, base, tree, s) = setup_tree();
    let t = base.join("t");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::write(t.join("sub/e.txt"), b"in the way").unwrap();
    let mut c = s.command();
    c.args(["restore", &spec(&tree), "--overwrite", "error", "--target"]).arg(&t);
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(1), "{}", describe("--overwrite error with an entry in the way", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("sub/e.txt") && line.contains("nothing was restored"), "{line}");
    assert_eq!(names(&t), ["sub"], "--overwrite error wrote something");
    assert_eq!(names(&t.join("sub")), ["e.txt"]);
    assert_eq!(fs::read(t.join("sub/e.txt")).unwrap(), b"in the way");
    // Nothing in the way: it restores.
    fs::remove_file(t.join("sub/e.txt")).unwrap();
    ok_json(&s, &spec(&tree), &t, &["--overwrite", "error"]);
    assert_same_contents(&tree, &t);
}

/// A target holding what the snapshot does not: a file, a directory tree, a symlink.
fn add_extras(t: &Path) {
    fs::write(t.join("extra.txt"), b"extra").unwrap();
    fs::create_dir_all(t.join("extra-dir/deeper")).unwrap();
    fs::write(t.join("extra-dir/deeper/f"), b"f").unwrap();
    fs::write(t.join("sub/extra.log"), b"log").unwrap();
    symlink("/etc", t.join("sub/extra-link")).unwrap();
}

#[test]
fn delete_removes_what_the_snapshot_does_not_have_and_dry_run_only_counts() {
    let (_tmp, tree, s, t) = setup_restored();
    add_extras(&t);
    fs::remove_file(t.join("c.txt")).unwrap();
    let before = names(&t);

    let dry = ok_json(&s, &spec(&tree), &t, &["--delete", "--dry-run"]);
    assert_eq!(names(&t), before, "--dry-run --delete changed the target");
    assert!(t.join("extra-dir/deeper/f").exists() && t.join("sub/extra.log").exists());
    let real = ok_json(&s, &spec(&tree), &t, &["--delete"]);
    for what in ["restored", "skipped", "deleted", "renamed", "failed"] {
        assert_eq!(dry[what], real[what], "--dry-run counted {what} otherwise than the restore: {dry} vs {real}");
    }
    // extra.txt, extra-dir/deeper/f, sub/extra.log; extra-dir and deeper; sub/extra-link.
    assert_eq!(count_of(&real, "deleted", "files"), 3, "{real}");
    assert_eq!(count_of(&real, "deleted", "dirs"), 2, "{real}");
    assert_eq!(count_of(&real, "deleted", "symlinks"), 1, "{real}");
    assert_eq!(count_of(&real, "restored", "files"), 1, "c.txt: {real}");
    assert_same_contents(&tree, &t);
    assert!(Path::new("/etc/hostname").exists(), "a symlink's target was deleted");
}

#[test]
fn delete_stays_within_what_the_includes_and_excludes_select() {
    let (_tmp, tree, s, t) = setup_restored();
    add_extras(&t);
    let sub = format!("{}/sub", tree.display());
    let v = ok_json(&s, &spec(&tree), &t, &["--delete", "--include", &sub, "--exclude", "*.log"]);
    assert!(t.join("extra.txt").exists() && t.join("extra-dir/deeper/f").exists(), "deleted outside the include");
    assert!(t.join("sub/extra.log").exists(), "deleted an excluded entry");
    assert!(fs::symlink_metadata(t.join("sub/extra-link")).is_err(), "kept an extra inside the include");
    assert_eq!(count_of(&v, "deleted", "symlinks"), 1, "{v}");
    assert_eq!(count_of(&v, "deleted", "files"), 0, "{v}");
}

#[test]
fn delete_replaces_a_non_empty_directory_with_the_snapshots_file() {
    let (_tmp, base, tree, s) = setup_tree();
    let t = base.join("t");
    fs::create_dir_all(t.join("a.txt/inner")).unwrap();
    fs::write(t.join("a.txt/inner/x"), b"x").unwrap();
    // Without --delete a non-empty directory is not removed for a file.
    let (out, v) = s.restore_json(&spec(&tree), &t, &["--overwrite", "always"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("file over a non-empty directory", &out));
    assert_eq!(count_of(&v, "failed", "files"), 1, "{v}");
    assert!(t.join("a.txt/inner/x").exists());
    let v = ok_json(&s, &spec(&tree), &t, &["--overwrite", "always", "--delete"]);
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(count_of(&v, "deleted", "dirs"), 2, "{v}");
}

#[test]
fn verify_passes_a_good_restore_and_catches_a_file_changed_after_its_write() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    // "a-victim" first in the walk, then thousands of files: the window between its write and
    // the verification is long.
    let mut rng = Rng::new(3);
    make_files(&data, &[("a-victim", &rng.bytes(300_000))]);
    for d in 0..20 {
        for f in 0..100 {
            make_files(&data, &[(&format!("d{d:02}/f{f:03}"), format!("{d} {f}").as_bytes())]);
        }
    }
    s.backup([&data]);
    let good = base.join("good");
    let v = ok_json(&s, &spec(&data), &good, &["--verify"]);
    assert_eq!(v["verified"].as_u64(), Some(2001), "{v}");
    assert_eq!(v["mismatches"].as_array().map(Vec::len), Some(0), "{v}");

    // A thread keeps scribbling over the victim once it exists, until the restore ends.
    let bad = base.join("bad");
    let victim = bad.join("a-victim");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbler = {
        let (stop, victim) = (stop.clone(), victim.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(f) = fs::OpenOptions::new().write(true).open(&victim) {
                    let _ = f.write_all_at(b"SCRIBBLED", 0);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let (out, v) = s.restore_json(&spec(&data), &bad, &["--verify"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    scribbler.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe("restore --verify of a file changed under it", &out));
    let mism: Vec<&str> = v["mismatches"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
    assert!(mism.len() == 1 && mism[0].contains("a-victim"), "{v}");
    assert!(assert_error_line(&out).contains("verify"), "{}", stderr_of(&out));
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure() {
    let (_tmp, base, tree, s) = setup_tree();
    let file = base.join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let out = s.run(["restore".as_ref(), spec(&tree).as_ref(), "--target".as_ref(), file.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("restore into a regular file", &out));
    let line = assert_error_line(&out);
    assert!(line.contains(&file.display().to_string()), "the error does not name the target: {line}");
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");

    let out = s.run(["restore", "latest", "--target", "/nonexistent-x", "--overwrite", "sometimes"]);
    assert_ne!(out.status.code(), Some(0), "{}", describe("--overwrite sometimes", &out));
    let err = stderr_of(&out);
    assert!(err.contains("sometimes") && err.contains("if-newer"), "the error does not list the modes:\n{err}");
    assert!(!Path::new("/nonexistent-x").exists());
}
