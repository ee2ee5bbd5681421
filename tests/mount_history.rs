//! The mount's `history/<absolute path>/` directories: one file per distinct version of a file,
//! named by the UTC time of its first snapshot, read by ordinary tools through the kernel; and
//! the same through the filesystem model where the kernel cannot mount.

mod support;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use support::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const VERSIONS: [(&str, &[u8]); 3] = [
    ("2026-01-01T12:00:00Z", b"first version\n"),
    ("2026-01-02T12:00:00Z", b"the second version, longer\n"),
    ("2026-01-05T12:00:00Z", b"third\n"),
];

/// Five snapshots: v1, v2, v2 unchanged, the file gone, v3.
fn five_snapshots(repo: &TestRepo) -> std::path::PathBuf {
    let src = repo.subdir("src").canonicalize().unwrap();
    fs::write(src.join("other"), b"always here").unwrap();
    let f = src.join("report.txt");
    let backup = |day: u32| repo.ok(&["backup", "--time", &format!("2026-01-0{day}T12:00:00Z"), src.to_str().unwrap()]);
    fs::write(&f, VERSIONS[0].1).unwrap();
    backup(1);
    fs::write(&f, VERSIONS[1].1).unwrap();
    backup(2);
    backup(3);
    fs::remove_file(&f).unwrap();
    backup(4);
    fs::write(&f, VERSIONS[2].1).unwrap();
    backup(5);
    src
}

#[test]
fn history_directory_has_one_file_per_version() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = five_snapshots(&repo);
    let m = repo.mount(&[]);
    let hist = m.mp.join("history").join(src.strip_prefix("/").unwrap());
    assert!(names(&m.mp).contains(&"history".to_string()));
    let first = src.components().nth(1).unwrap().as_os_str().to_string_lossy().into_owned();
    assert_eq!(names(&m.mp.join("history")), [first]);
    assert_eq!(names(&hist), ["other", "report.txt"]);
    let versions = hist.join("report.txt");
    assert_eq!(names(&versions), VERSIONS.map(|(n, _)| n.to_string()));
    for (name, bytes) in VERSIONS {
        let p = versions.join(name);
        assert_eq!(fs::read(&p).unwrap(), bytes, "{}", p.display());
        assert_eq!(fs::metadata(&p).unwrap().len(), bytes.len() as u64);
    }
    // An ordinary copy gets a version back.
    let out = repo.subdir("out");
    let st = std::process::Command::new("cp").arg(versions.join(VERSIONS[1].0)).arg(&out).status().unwrap();
    assert!(st.success());
    assert_eq!(fs::read(out.join(VERSIONS[1].0)).unwrap(), VERSIONS[1].1);
    assert!(fs::write(versions.join("new"), b"x").is_err(), "the history directory took a write");
    assert!(fs::metadata(hist.join("never-there")).is_err());
}

#[test]
fn history_in_the_model_without_the_kernel() {
    use snapfs::vfs::{FileKind, Options, Vfs};
    let repo = TestRepo::new();
    let src = five_snapshots(&repo);
    let opts =
        Options { filter: Default::default(), chunk_cache: 1 << 20, tree_cache: 1 << 20, warn: Box::new(|_| {}) };
    let vfs = Vfs::new(std::sync::Arc::new(repo.open()), opts).unwrap();
    let mut ino = vfs.lookup(1, b"history").unwrap().attr.ino;
    for c in src.components().skip(1) {
        ino = vfs.lookup(ino, c.as_os_str().as_bytes()).unwrap().attr.ino;
    }
    let dir = vfs.lookup(ino, b"report.txt").unwrap().attr;
    assert_eq!(dir.kind, FileKind::Dir);
    let mut listed = Vec::new();
    vfs.readdir(dir.ino, 0, false, &mut |_, e| {
        listed.push((String::from_utf8_lossy(e.name).into_owned(), e.kind, e.ino));
        false
    })
    .unwrap();
    let files: Vec<_> = listed.iter().filter(|(n, _, _)| n != "." && n != "..").collect();
    assert_eq!(files.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(), VERSIONS.map(|(n, _)| n));
    for ((name, kind, _), (_, bytes)) in files.iter().zip(VERSIONS) {
        assert_eq!(*kind, FileKind::File);
        // As the kernel does: a lookup before the read.
        let attr = vfs.lookup(dir.ino, name.as_bytes()).unwrap().attr;
        assert_eq!(attr.size, bytes.len() as u64);
        assert_eq!(&*vfs.read(attr.ino, 0, 4096).unwrap(), bytes);
    }
}
