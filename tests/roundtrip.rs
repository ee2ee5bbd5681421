//! Backup → restore round trips through the real binary, compared with `diff -r`, `find -printf`
//! and `getfattr`: the generated hostile tree, subtree restores, include/exclude, dry runs,
//! overwrite policies, and a real directory nobody here wrote.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn generated_tree_roundtrip_latest_prefix_and_subtree() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let repo = base.join("repo");
    let s = Snapfs::new(&repo);
    let init = s.init();
    assert!(init.contains("created snapfs repository"), "init output: {init}");
    assert!(init.contains(&repo.display().to_string()), "init output does not name {}: {init}", repo.display());

    let tree = gen_tree(&base.join("data"), 1).root;
    let out = s.ok([std::ffi::OsStr::new("backup"), tree.as_os_str()]);
    let id1 = snapshot_id_from(&out);
    for word in ["files:", "dirs:", "read ", "added "] {
        assert!(out.contains(word), "backup summary lacks {word:?}:\n{out}");
    }

    // latest → the whole tree, metadata and all, under its absolute path.
    let r1 = base.join("restore-latest");
    s.restore("latest", &r1, &[]);
    assert_same_tree(&tree, &restored(&r1, &tree));
    assert!(repo.join("snapshots").join(&id1).is_file(), "no snapshots/<id> file for {id1}");
    // Nothing but the snapshot's path (and its parents) appears in the target.
    let top: Vec<_> = fs::read_dir(&r1).unwrap().map(|e| e.unwrap().file_name()).collect();
    let first = tree.components().nth(1).unwrap().as_os_str().to_owned();
    assert_eq!(top, vec![first], "unexpected entries at the top of the restore");

    // A second, different snapshot becomes `latest`; an id prefix must still find the first.
    let other = base.join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("only-in-second"), b"second snapshot\n").unwrap();
    let id2 = s.backup([&other]);
    assert_ne!(id1, id2);

    let r2 = base.join("restore-latest-2");
    s.restore("latest", &r2, &[]);
    assert_same_tree(&other, &restored(&r2, &other));
    assert!(!restored(&r2, &tree).exists(), "`latest` restored the first snapshot's tree too");

    // PREFIX:/sub/path puts that subtree's contents directly into the target.
    let r3 = base.join("restore-prefix-sub");
    let names = tree.join("names");
    s.restore(&format!("{}:{}", &id1[..10], names.display()), &r3, &[]);
    assert_same_contents(&names, &r3);

    let r4 = base.join("restore-prefix-deep");
    let deep = tree.join("deep/d00/d01");
    s.restore(&format!("{}:{}", &id1[..8], deep.display()), &r4, &[]);
    assert_same_contents(&deep, &r4);
    assert!(r4.join("d02").is_dir() && !r4.join("d01").exists() && !r4.join("names").exists());
}

#[test]
fn restore_into_a_setgid_directory_keeps_the_snapshot_groups() {
    // An empty target that is setgid and of another group hands that group to everything
    // created in it; the restored entries must still get the owners and modes recorded.
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let data = base.join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    for (name, mode) in [("a", 0o644), ("b", 0o666), ("sub/c", 0o755)] {
        fs::write(data.join(name), name).unwrap();
        fs::set_permissions(data.join(name), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::chown(data.join("sub/c"), Some(1234), Some(5678)).unwrap();
    let s = Snapfs::new(base.join("repo"));
    s.init();
    s.backup([&data]);

    let target = base.join("target");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::chown(&target, None, Some(4242)).unwrap();
    fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o2775)).unwrap();
    // The directory's contents, so that files land in the target itself.
    s.restore(&format!("latest:{}", data.display()), &target, &[]);
    assert_same_contents(&data, &target);
}

#[test]
fn restore_beside_unrelated_entries_leaves_them_alone() {
    // Like a new filesystem's root with its lost+found: the target is not empty, but nothing
    // in it is in the snapshot's way.
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let tree = gen_tree(&base.join("data"), 3).root;
    let s = Snapfs::new(base.join("repo"));
    s.init();
    s.backup([&tree]);
    let target = base.join("target");
    fs::create_dir_all(target.join("lost+found")).unwrap();
    fs::write(target.join("lost+found/keep"), b"untouched").unwrap();
    s.restore("latest", &target, &[]);
    assert_same_tree(&tree, &restored(&target, &tree));
    assert_eq!(fs::read(target.join("lost+found/keep")).unwrap(), b"untouched");
}

/// Backs up a file whose atime lies in the future (reads do not move it under relatime) and
/// checks the restored atime, to the nanosecond.
fn atime_roundtrip(backup_flags: &[&str]) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    let tree = gen_tree_times_only(&base.join("data"));
    let mut args: Vec<std::ffi::OsString> = backup_flags.iter().map(Into::into).collect();
    args.push(tree.clone().into());
    s.backup(&args);
    let target = base.join("r");
    s.restore("latest", &target, &[]);
    let want = atime_of(&tree.join("atime"));
    assert_eq!(want, "1900000000.1234567890", "the source's atime moved");
    assert_eq!(atime_of(&restored(&target, &tree).join("atime")), want, "atime not restored (backup {backup_flags:?})");
}

fn gen_tree_times_only(root: &Path) -> PathBuf {
    fs::create_dir_all(root).unwrap();
    let f = root.join("atime");
    fs::write(&f, b"atime").unwrap();
    let t = |s: u64, n: u32| std::time::UNIX_EPOCH + std::time::Duration::new(s, n);
    fs::File::open(&f)
        .unwrap()
        .set_times(
            fs::FileTimes::new().set_modified(t(1_700_000_000, 5)).set_accessed(t(ATIME_SECS as u64, ATIME_NANOS)),
        )
        .unwrap();
    root.to_path_buf()
}

/// Without `--with-atime` no access time is stored (reading a file changes it, and it must not
/// churn the trees), and restore sets atime to mtime, as tar does.
#[test]
fn without_with_atime_restore_sets_atime_to_mtime() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    let tree = gen_tree_times_only(&base.join("data"));
    s.backup(&[tree.clone().into_os_string()]);
    let target = base.join("r");
    s.restore("latest", &target, &[]);
    assert_eq!(atime_of(&restored(&target, &tree).join("atime")), "1700000000.0000000050");
}

/// The binary's opt-in flag for access times.
#[test]
fn atime_is_restored_with_with_atime() {
    atime_roundtrip(&["--with-atime"]);
}

/// A small tree for the selection tests: {relative path: contents}.
fn small_tree(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng::new(99);
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("src/a.rs", text_bytes(3000, &mut rng)),
        ("src/b.rs", text_bytes(10, &mut rng)),
        ("src/c.txt", rng.bytes(700_000)),
        ("src/notes.md", b"notes\n".to_vec()),
        ("src/nested/e.log", b"log\n".to_vec()),
        ("docs/readme.md", b"readme\n".to_vec()),
        ("docs/big.bin", rng.bytes(2_500_000)),
        ("other/z.rs", b"fn z() {}\n".to_vec()),
        ("build.log", b"build log\n".to_vec()),
    ];
    for (rel, data) in &files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    files
}

/// Relative paths of the regular files under `dir`.
fn rel_files(dir: &Path) -> BTreeSet<String> {
    files_under(dir).iter().map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Relative paths and contents of the files in a generated tree.
type Files = Vec<(&'static str, Vec<u8>)>;

fn setup_small() -> (tempfile::TempDir, PathBuf, Snapfs, Files) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let tree = base.join("proj");
    let files = small_tree(&tree);
    let s = Snapfs::new(base.join("repo"));
    s.init();
    s.backup([&tree]);
    (tmp, tree, s, files)
}

#[test]
fn include_and_exclude_select_exactly_the_matching_files() {
    let (tmp, tree, s, files) = setup_small();
    let base = canonical(tmp.path());
    let t = tree.display().to_string();
    let all: BTreeSet<String> = files.iter().map(|(r, _)| r.to_string()).collect();

    let check = |name: &str, flags: &[&str], expected: BTreeSet<String>| {
        let target = base.join(name);
        s.restore("latest", &target, flags);
        let got = rel_files(&restored(&target, &tree));
        assert_eq!(got, expected, "restore {flags:?} selected the wrong files");
        for rel in &got {
            let want = &files.iter().find(|(r, _)| r == rel).unwrap().1;
            assert!(
                fs::read(restored(&target, &tree).join(rel)).unwrap() == *want,
                "{rel} restored with wrong content"
            );
        }
    };
    // Absolute-path glob.
    check("inc-path", &["--include", &format!("{t}/src/*.rs")], set(&["src/a.rs", "src/b.rs"]));
    // Base-name glob.
    check("inc-base", &["--include", "*.md"], set(&["src/notes.md", "docs/readme.md"]));
    // Excludes: by base name, and by absolute path.
    let no_logs: BTreeSet<String> = all.iter().filter(|r| !r.ends_with(".log")).cloned().collect();
    check("exc-base", &["--exclude", "*.log"], no_logs);
    let no_src_rs: BTreeSet<String> =
        all.iter().filter(|r| !(r.starts_with("src/") && r.ends_with(".rs"))).cloned().collect();
    check("exc-path", &["--exclude", &format!("{t}/src/*.rs")], no_src_rs);
}

#[test]
fn restore_dry_run_writes_nothing() {
    let (tmp, tree, s, files) = setup_small();
    let base = canonical(tmp.path());
    let missing = base.join("dry-missing");
    let out = s.restore("latest", &missing, &["--dry-run"]);
    assert!(!missing.exists(), "--dry-run created the target directory");
    for (rel, _) in &files {
        let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
        assert!(out.contains(name), "--dry-run output does not list {rel}:\n{out}");
    }

    // Into an existing directory: still nothing written.
    let existing = base.join("dry-existing");
    fs::create_dir(&existing).unwrap();
    fs::write(existing.join("mine"), b"mine").unwrap();
    s.restore("latest", &existing, &["--dry-run"]);
    assert_eq!(fs::read_dir(&existing).unwrap().count(), 1, "--dry-run wrote into the target");
    assert!(!restored(&existing, &tree).exists());
    assert_eq!(fs::read(existing.join("mine")).unwrap(), b"mine");
}

#[test]
fn overwrite_never_always_if_changed() {
    let (tmp, tree, s, files) = setup_small();
    let base = canonical(tmp.path());
    let target = base.join("target");
    s.restore("latest", &target, &[]);
    let here = restored(&target, &tree);
    assert_same_tree(&tree, &here);
    let a = here.join("src/a.rs");
    let orig_a = files.iter().find(|(r, _)| *r == "src/a.rs").unwrap().1.clone();

    // never (the default): the existing file is skipped and left alone; a missing one is restored.
    fs::write(&a, b"local edit").unwrap();
    fs::remove_file(here.join("docs/readme.md")).unwrap();
    let out = s.restore("latest", &target, &[]);
    assert_eq!(fs::read(&a).unwrap(), b"local edit", "default overwrite policy replaced an existing file");
    assert!(out.to_lowercase().contains("skipped"), "restore output does not report skipped files:\n{out}");
    assert_eq!(fs::read(here.join("docs/readme.md")).unwrap(), b"readme\n", "a missing file was not restored");
    s.restore("latest", &target, &["--overwrite", "never"]);
    assert_eq!(fs::read(&a).unwrap(), b"local edit", "--overwrite never replaced an existing file");

    // always: replaced, with the snapshot's metadata.
    s.restore("latest", &target, &["--overwrite", "always"]);
    assert_eq!(fs::read(&a).unwrap(), orig_a, "--overwrite always did not replace the file");
    assert_same_tree(&tree, &here);

    // if-changed: a file with other content (and size, and mtime) is replaced.
    fs::write(&a, b"edited again, another size").unwrap();
    s.restore("latest", &target, &["--overwrite", "if-changed"]);
    assert_eq!(fs::read(&a).unwrap(), orig_a, "--overwrite if-changed did not replace a changed file");
    assert_same_tree(&tree, &here);
}

/// Total apparent size of regular files under `dir`, and every directory under it with its size,
/// computed in one walk.
fn sizes(dir: &Path, out: &mut Vec<(PathBuf, u64, usize)>) -> u64 {
    let mut total = 0;
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    for e in rd {
        let p = e.unwrap().path();
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            total += sizes(&p, out);
        } else if md.is_file() {
            total += md.len();
        }
    }
    out.push((dir.to_path_buf(), total, dir.components().count()));
    total
}

/// A directory of 50–150 MB inside an installed Rust toolchain.
fn toolchain_dir() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME unset");
    let root = Path::new(&home).join(".rustup/toolchains");
    let mut tcs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no toolchains under {}: {e}", root.display()))
        .map(|e| canonical(&e.unwrap().path()))
        .collect();
    tcs.sort();
    tcs.dedup();
    let preferred = [
        "lib/rustlib/src",
        "share/doc/rust/html/src",
        "share/doc/rust/html/std",
        "share",
        "lib/rustlib/x86_64-unknown-linux-gnu/lib",
    ];
    let in_range = |b: u64| (50_000_000..=150_000_000).contains(&b);
    for rel in preferred {
        for tc in &tcs {
            let d = tc.join(rel);
            if d.is_dir() && in_range(sizes(&d, &mut Vec::new())) {
                return d;
            }
        }
    }
    // None of the usual places: the shallowest directory of the right size anywhere.
    let mut all = Vec::new();
    for tc in &tcs {
        sizes(tc, &mut all);
    }
    all.sort_by_key(|(p, _, depth)| (*depth, p.clone()));
    all.into_iter()
        .find(|(_, b, _)| in_range(*b))
        .map(|(p, _, _)| p)
        .unwrap_or_else(|| panic!("no 50–150 MB directory under {}", root.display()))
}

#[test]
fn real_toolchain_directory_roundtrip() {
    let src = toolchain_dir();
    eprintln!("backing up {}", src.display());
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    let summary = s.backup_json([&src]);
    let expected_files = files_under(&src).len() as u64;
    assert_eq!(num(&summary, "total_files"), expected_files, "total_files in {summary}");
    assert_eq!(num(&summary, "files_new"), expected_files, "files_new in {summary}");
    assert_eq!(num(&summary, "errors"), 0);
    let target = base.join("restore");
    s.restore("latest", &target, &[]);
    assert_same_tree(&src, &restored(&target, &src));
}
