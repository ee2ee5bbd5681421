//! Real kernel mounts of `snapfs mount`, checked with ordinary tools against the source tree.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// A tree with what real filesystems hold: odd sizes around the chunker's limits, a large file,
/// a sparse file, hardlinks across directories, every kind of symlink, a FIFO, a device node,
/// odd names, deep nesting, a big directory, special modes, xattrs and odd times.
fn make_tree(root: &Path) {
    let mut rng = Rng::new(0x5eed);
    let d = |p: &str| {
        let p = root.join(p);
        fs::create_dir_all(&p).unwrap();
        p
    };
    let files = d("files");
    for (i, size) in [0usize, 1, 4095, 512 << 10, (512 << 10) + 1, (1 << 20) - 1, 1 << 20, 8 << 20, (8 << 20) + 1]
        .into_iter()
        .enumerate()
    {
        fs::write(files.join(format!("size-{i}-{size}")), rng.bytes(size)).unwrap();
    }
    fs::write(files.join("large"), rng.bytes(24 << 20)).unwrap();
    let sparse = fs::File::create(files.join("sparse")).unwrap();
    sparse.set_len(6 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"end of a sparse file", 6 << 20).unwrap();
    let links = d("links");
    fs::write(links.join("h1"), b"hardlinked content\n").unwrap();
    fs::hard_link(links.join("h1"), links.join("h2")).unwrap();
    fs::hard_link(links.join("h1"), files.join("h3")).unwrap();
    symlink("../files/size-1-1", links.join("relative")).unwrap();
    symlink("/etc/hostname", links.join("absolute")).unwrap();
    symlink("nowhere/at/all", links.join("dangling")).unwrap();
    symlink("../files", links.join("to-dir")).unwrap();
    let special = d("special");
    assert!(Command::new("mkfifo").arg(special.join("fifo")).status().unwrap().success());
    if support::is_root() {
        assert!(Command::new("mknod").arg(special.join("null")).args(["c", "1", "3"]).status().unwrap().success());
    }
    let names = d("names");
    for n in [&b"with space"[..], b"new\nline", b"bad\xffutf8", &[b'n'; 255][..], b"-dash", b"*star?"] {
        fs::write(names.join(OsStr::from_bytes(n)), n).unwrap();
    }
    let mut deep = d("deep");
    for i in 0..30 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"deep").unwrap();
    let many = d("many");
    for i in 0..3000 {
        fs::write(many.join(format!("f{i:05}")), format!("file {i}\n")).unwrap();
    }
    let modes = d("modes");
    for (name, m) in [("setuid", 0o4755), ("setgid", 0o2750), ("private", 0o600), ("none", 0o000)] {
        fs::write(modes.join(name), name).unwrap();
        mode(&modes.join(name), m);
    }
    let sticky = d("modes/sticky");
    mode(&sticky, 0o1777);
    let x = d("xattrs");
    fs::write(x.join("file"), b"has xattrs").unwrap();
    xattr::set(x.join("file"), "user.comment", b"hello from the source").unwrap();
    xattr::set(x.join("file"), "user.binary", &[0, 1, 2, 255]).unwrap();
    xattr::set(&x, "user.on_dir", b"dir value").unwrap();
    set_mtime(&files.join("size-1-1"), 1_700_000_000, 123_456_789);
    set_mtime(&files.join("size-2-4095"), -86_400 * 365, 5);
    set_mtime(&names.join("with space"), 0, 1);
}

fn run_ok(cmd: &mut Command) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `find -printf` of what the format stores, sorted (directory sizes are not stored).
fn listing(dir: &Path) -> Vec<String> {
    let out =
        run_ok(Command::new("find").arg(dir).args(["-printf", "%P\\0%y %m %U %G %n %T@ %s %l\\0"]).env("LC_ALL", "C"));
    let parts: Vec<&str> = out.split('\0').collect();
    let mut lines: Vec<String> = parts
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| {
            let mut f: Vec<&str> = c[1].split(' ').collect();
            if f[0] == "d" {
                f[6] = "-";
            }
            format!("{:?} {}", c[0], f.join(" "))
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn mount_shows_the_snapshot_exactly() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src");
    make_tree(&src);
    let src = src.canonicalize().unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    let m = repo.mount(&[]);
    let top: Vec<String> =
        fs::read_dir(&m.mp).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for d in ["snapshots", "ids", "tags", "hosts", "at"] {
        assert!(top.contains(&d.to_string()), "{top:?}");
    }
    let view = m.latest(&src);

    // Contents: diff compares files byte for byte and symlinks by target.
    let diff = sh(Command::new("diff").args(["-r", "--no-dereference"]).arg(&src).arg(&view));
    let report = String::from_utf8_lossy(&diff.stdout);
    // diff cannot compare FIFOs and devices; everything else must be identical.
    let real: Vec<&str> = report.lines().filter(|l| !l.contains("special/")).collect();
    assert!(real.is_empty(), "diff -r found differences:\n{report}");

    // Contents and metadata, as rsync sees them: nothing to do.
    let rsync = run_ok(
        Command::new("rsync")
            .args(["-aHAX", "--numeric-ids", "--checksum", "--dry-run", "--itemize-changes", "--delete"])
            .arg(format!("{}/", src.display()))
            .arg(format!("{}/", view.display())),
    );
    assert!(rsync.trim().is_empty(), "rsync lists differences:\n{rsync}");

    // Metadata of every entry, including the two dirs rsync does not look at as closely.
    assert_eq!(listing(&src), listing(&view));

    // Hardlinks are one inode, in one directory and across two.
    let inos: Vec<(u64, u64)> = ["links/h1", "links/h2", "files/h3"]
        .iter()
        .map(|p| fs::symlink_metadata(view.join(p)).map(|m| (m.ino(), m.nlink())).unwrap())
        .collect();
    assert!(inos.iter().all(|&i| i == inos[0]) && inos[0].1 == 3, "{inos:?}");
    assert_ne!(fs::metadata(view.join("files/size-1-1")).unwrap().ino(), inos[0].0);

    // Xattrs, listed and read, on a file and a directory.
    let f = view.join("xattrs/file");
    let mut names: Vec<_> = xattr::list(&f).unwrap().collect();
    names.sort();
    assert_eq!(names, ["user.binary", "user.comment"]);
    assert_eq!(xattr::get(&f, "user.comment").unwrap().unwrap(), b"hello from the source");
    assert_eq!(xattr::get(&f, "user.binary").unwrap().unwrap(), [0, 1, 2, 255]);
    assert_eq!(xattr::get(&f, "user.missing").unwrap(), None);
    assert_eq!(xattr::get(view.join("xattrs"), "user.on_dir").unwrap().unwrap(), b"dir value");

    // FIFOs and device nodes are themselves.
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(view.join("special/fifo")).unwrap().file_type()
    ));
    if support::is_root() {
        let dev = fs::symlink_metadata(view.join("special/null")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&dev.file_type()));
        assert_eq!(dev.rdev(), fs::symlink_metadata(src.join("special/null")).unwrap().rdev());
    }

    // Every kind of write is refused with EROFS.
    let erofs = |r: std::io::Result<()>, what: &str| {
        assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EROFS), "{what}");
    };
    erofs(fs::write(view.join("new"), b"x"), "create");
    erofs(fs::OpenOptions::new().write(true).open(view.join("files/size-1-1")).map(drop), "open for writing");
    erofs(fs::create_dir(view.join("newdir")), "mkdir");
    erofs(fs::remove_file(view.join("files/size-1-1")), "unlink");
    erofs(fs::rename(view.join("files/size-1-1"), view.join("files/renamed")), "rename");
    erofs(fs::set_permissions(view.join("files/size-1-1"), fs::Permissions::from_mode(0o777)), "chmod");
    erofs(xattr::set(&f, "user.new", b"v"), "setxattr");
    erofs(symlink("x", view.join("newlink")), "symlink");
    erofs(fs::create_dir(m.mp.join("snapshots/new")), "mkdir above snapshots");
    assert!(m.log_text().is_empty(), "the mount logged: {}", m.log_text());
}

fn read_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn time_tag_and_host_views_and_new_snapshots() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    let s = src.to_str().unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    repo.ok(&["backup", s, "--time", "2026-01-01T10:00:00Z", "--tag", "daily", "--host", "alpha"]);
    fs::write(src.join("f"), b"two").unwrap();
    repo.ok(&["backup", s, "--time", "2026-01-02T10:00:00Z", "--tag", "daily,weekly", "--host", "beta"]);
    fs::write(src.join("f"), b"three").unwrap();
    // Same second as the one before: named with a suffix.
    repo.ok(&["backup", s, "--time", "2026-01-02T10:00:00.5Z", "--host", "beta"]);
    let m = repo.mount(&[]);
    let rel = src.strip_prefix("/").unwrap();
    let f = |p: &str| fs::read_to_string(m.mp.join(p).join(rel).join("f")).map_err(|e| e.raw_os_error());

    assert_eq!(
        read_names(&m.mp.join("snapshots")),
        ["2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z", "2026-01-02T10:00:00Z-2", "latest"]
    );
    assert_eq!(fs::read_link(m.mp.join("snapshots/latest")).unwrap(), Path::new("2026-01-02T10:00:00Z-2"));
    assert_eq!(f("snapshots/latest").unwrap(), "three");
    assert_eq!(f("snapshots/2026-01-01T10:00:00Z").unwrap(), "one");

    assert_eq!(read_names(&m.mp.join("tags")), ["daily", "weekly"]);
    assert_eq!(read_names(&m.mp.join("tags/daily")), ["2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z", "latest"]);
    assert_eq!(f("tags/daily/latest").unwrap(), "two");
    assert_eq!(f("tags/weekly/2026-01-02T10:00:00Z").unwrap(), "two");
    assert_eq!(read_names(&m.mp.join("hosts")), ["alpha", "beta"]);
    assert_eq!(f("hosts/alpha/latest").unwrap(), "one");
    assert_eq!(f("hosts/beta/2026-01-02T10:00:00Z-2").unwrap(), "three");

    let ids = read_names(&m.mp.join("ids"));
    assert_eq!(ids.len(), 3);
    let contents: Vec<String> = ids.iter().map(|id| f(&format!("ids/{id}")).unwrap()).collect();
    assert!(contents.contains(&"one".to_string()) && contents.contains(&"three".to_string()));

    // at/<T>: not listed, resolved on lookup, in every format restore --timestamp takes.
    assert!(read_names(&m.mp.join("at")).is_empty());
    assert_eq!(f("at/2026-01-01T10:00:00Z").unwrap(), "one");
    assert_eq!(f("at/2026-01-02T09:59:59Z").unwrap(), "one");
    // A time to the second covers that whole second, so the newest snapshot in it is found.
    assert_eq!(f("at/2026-01-02T10:00:00Z").unwrap(), "three");
    assert_eq!(f("at/2026-01-02T10:00:00.000Z").unwrap(), "two");
    assert_eq!(f("at/2026-01-02T11:00:00+01:00").unwrap(), "three");
    assert_eq!(f("at/2030-01-01").unwrap(), "three");
    assert_eq!(f("at/2026-01-03 00:00").unwrap(), "three");
    assert_eq!(f("at/2025-12-31T00:00:00Z"), Err(Some(libc::ENOENT)));
    assert_eq!(f("at/not a time"), Err(Some(libc::ENOENT)));

    // A backup while mounted is not blocked, and its snapshot shows up within seconds.
    fs::write(src.join("f"), b"four").unwrap();
    let started = Instant::now();
    repo.ok(&["backup", s, "--tag", "late"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_names(&m.mp.join("snapshots")).len() < 5 {
        assert!(Instant::now() < deadline, "the new snapshot did not appear");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(f("snapshots/latest").unwrap(), "four");
    assert_eq!(f("at/2100-01-01").unwrap(), "four");
    assert_eq!(f("tags/late/latest").unwrap(), "four");
}

/// Every regular file under `root` (relative path → absolute path).
fn regular_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            regular_files(root, &r, out);
        } else if t.is_file() {
            out.push(r);
        }
    }
}

#[test]
fn damaged_blob_gives_eio_for_exactly_the_files_using_it() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    let mut rng = Rng::new(42);
    // Longer than the largest chunk (8 MiB), so the victim has a second, undamaged chunk whatever
    // the repository's keyed chunk boundaries turn out to be.
    let victim = rng.bytes(10 << 20);
    fs::write(src.join("victim"), &victim).unwrap();
    fs::create_dir(src.join("sub")).unwrap();
    fs::write(src.join("sub/same-content"), &victim).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("other{i}")), rng.bytes(1000 + i * 50_000)).unwrap();
    }
    repo.ok(&["backup", src.to_str().unwrap()]);

    // Flip a byte in the middle of the victim's first chunk.
    let damaged = damage_first_chunk(&repo, &src, b"victim");
    assert!(damaged.chunks >= 2, "victim has {} chunk(s)", damaged.chunks);

    let m = repo.mount(&[]);
    let view = m.latest(&src);
    let mut files = Vec::new();
    regular_files(&src, Path::new(""), &mut files);
    assert_eq!(files.len(), 22);
    for rel in &files {
        let mut buf = Vec::new();
        let got = fs::File::open(view.join(rel)).and_then(|mut f| f.read_to_end(&mut buf));
        if rel.ends_with("victim") || rel.ends_with("same-content") {
            assert_eq!(got.err().and_then(|e| e.raw_os_error()), Some(libc::EIO), "{}", rel.display());
        } else {
            got.unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            assert!(buf == fs::read(src.join(rel)).unwrap(), "{} differs", rel.display());
        }
    }
    // The data after the damaged chunk is still readable (EIO is for that read only).
    let f = fs::File::open(view.join("victim")).unwrap();
    let mut tail = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut tail, victim.len() as u64 - 4096).unwrap();
    assert_eq!(tail, victim[victim.len() - 4096..]);
    // The mount is still up, and the log names the blob and its pack.
    assert!(view.join("other3").exists());
    let log = m.log_text();
    assert!(log.contains(&damaged.chunk.hex()) && log.contains(&damaged.pack.hex()), "log: {log}");
}

#[test]
fn sigterm_unmounts_and_exits_zero() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    let mut m = repo.mount(&[]);
    assert!(fs::read_dir(m.mp.join("snapshots")).unwrap().count() == 2);
    let pid = m.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(m.wait_exit(Duration::from_secs(10)), Some(0), "log: {}", m.log_text());
    assert!(!is_mounted(&m.mp));
    // No lock is left behind either.
    assert_eq!(fs::read_dir(repo.path.join("locks")).unwrap().count(), 0);
}

#[test]
fn bad_mount_points_are_refused_clearly() {
    let repo = TestRepo::new();
    let missing = repo.dir.path().join("missing");
    let out = repo.run(&["mount", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{out:?}");
    let full = repo.subdir("full");
    fs::write(full.join("x"), b"").unwrap();
    let out = repo.run(&["mount", full.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{out:?}");
}

/// Reads are served by inode number, with one read state per file: readers of the same file at
/// different places, and a file read again from the start, must still get exactly its bytes.
#[test]
fn interleaved_readers_of_one_file_get_its_bytes() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    let content = Rng::new(7).bytes(40 << 20);
    fs::write(src.join("big"), &content).unwrap();
    fs::hard_link(src.join("big"), src.join("link")).unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    let m = repo.mount(&[]);
    let view = m.latest(&src);
    // O_DIRECT bypasses the kernel's page cache, so every read below reaches the mount.
    let open = |name: &str| {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(view.join(name)).unwrap()
    };
    let block = 1 << 20;
    let half = content.len() / 2;
    let (a, b) = (open("big"), open("link"));
    let mut buf = vec![0u8; block];
    for pass in 0..2 {
        for i in (0..half).step_by(block) {
            for (f, off) in [(&a, i), (&b, content.len() - block - i)] {
                std::os::unix::fs::FileExt::read_exact_at(f, &mut buf, off as u64).unwrap();
                assert!(buf == content[off..off + block], "pass {pass}: bytes at {off} differ");
            }
        }
    }
}

/// The filesystem model without the kernel, with caches too small to hold anything: inodes name
/// their listings instead of holding them, so every attribute, link and read after the walk
/// moved on must find its listing again, and still the right one.
#[test]
fn model_serves_everything_with_caches_that_hold_nothing() {
    use snapfs::vfs::{FileKind, Options, Vfs};
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    let mut rng = Rng::new(3);
    for d in 0..6 {
        let dir = src.join(format!("d{d}/inner{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..15 {
            fs::write(dir.join(format!("f{f}")), rng.bytes(f * 3000 + d)).unwrap();
        }
        symlink(format!("target-{d}"), dir.join("link")).unwrap();
    }
    repo.ok(&["backup", src.to_str().unwrap()]);
    let r = repo.open();
    let opts = Options { filter: Default::default(), chunk_cache: 1, tree_cache: 1, warn: Box::new(|_| {}) };
    let vfs = Vfs::new(std::sync::Arc::new(r), opts).unwrap();

    let mut ino = vfs.lookup(vfs.lookup(1, b"snapshots").unwrap().attr.ino, b"latest").unwrap().attr.ino;
    ino = vfs.lookup(2, &vfs.readlink(ino).unwrap()).unwrap().attr.ino;
    for c in src.components().skip(1) {
        ino = vfs.lookup(ino, c.as_os_str().as_bytes()).unwrap().attr.ino;
    }
    // Walk everything first, then check each entry, so the listings are long gone from the cache.
    let mut found = Vec::new();
    let mut dirs = vec![(ino, PathBuf::new())];
    while let Some((dir, rel)) = dirs.pop() {
        vfs.readdir(dir, 0, true, &mut |_, e| {
            if e.name != b"." && e.name != b".." {
                let rel = rel.join(OsStr::from_bytes(e.name));
                if e.kind == FileKind::Dir {
                    dirs.push((e.ino, rel.clone()));
                }
                found.push((e.ino, e.kind, rel));
            }
            false
        })
        .unwrap();
    }
    assert_eq!(found.len(), 6 * 2 + 6 * 16);
    for (ino, kind, rel) in found {
        let path = src.join(&rel);
        let (attr, _) = vfs.getattr(ino).unwrap();
        assert_eq!(attr.size, if kind == FileKind::Dir { 0 } else { fs::symlink_metadata(&path).unwrap().len() });
        match kind {
            FileKind::File => {
                let data = vfs.read(ino, 0, attr.size as u32 + 1).unwrap();
                assert!(*data == fs::read(&path).unwrap()[..], "{} differs", rel.display());
            }
            FileKind::Symlink => {
                assert_eq!(vfs.readlink(ino).unwrap(), fs::read_link(&path).unwrap().as_os_str().as_bytes())
            }
            _ => {}
        }
    }
}

#[test]
fn mount_rebuilds_a_lost_index_cache() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    fs::write(src.join("f"), b"served after the cache is gone").unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    fs::remove_dir_all(repo.path.with_extension("cache")).unwrap();
    let m = repo.mount(&[]);
    assert_eq!(fs::read(m.latest(&src).join("f")).unwrap(), b"served after the cache is gone");
    assert!(m.log_text().contains("index: no cache for this repository yet"), "log: {}", m.log_text());
}

#[test]
fn a_snapshot_written_by_another_machine_is_readable_in_a_running_mount() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src").canonicalize().unwrap();
    fs::write(src.join("f"), b"first").unwrap();
    repo.ok(&["backup", src.to_str().unwrap()]);
    let m = repo.mount(&[]);
    // Another machine: its own cache, so this mount's index knows none of its packs.
    fs::write(src.join("f"), b"written elsewhere, new data").unwrap();
    let other_cache = repo.subdir("other-cache");
    let out = repo.cmd(&["backup", src.to_str().unwrap()]).env("SNAPFS_CACHE_DIR", &other_cache).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let start = Instant::now();
    while read_names(&m.mp.join("snapshots")).len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "the new snapshot did not appear");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fs::read(m.latest(&src).join("f")).unwrap(), b"written elsewhere, new data", "log: {}", m.log_text());
}

/// Without FUSE a mount test fails, unless skipping was asked for: a skipped test must not look
/// like a passing one. Runs this test binary again with a PATH that has no fusermount3.
#[test]
fn a_missing_fuse_fails_the_test_unless_skipping_is_asked_for() {
    let empty = tempfile::tempdir().expect("tempdir");
    let me = std::env::current_exe().expect("this test binary");
    let run = |skip: Option<&str>| {
        let mut c = Command::new(&me);
        c.args(["--exact", "sigterm_unmounts_and_exits_zero", "--test-threads=1", "--nocapture"])
            .env("PATH", empty.path())
            .env_remove("CI")
            .env_remove("SNAPFS_SKIP_FUSE");
        if let Some(v) = skip {
            c.env("SNAPFS_SKIP_FUSE", v);
        }
        sh(&mut c)
    };
    let out = run(None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a mount test without fusermount3 passed:\n{text}");
    assert!(text.contains("SNAPFS_SKIP_FUSE=1"), "the failure does not say how to skip:\n{text}");
    let out = run(Some("1"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "SNAPFS_SKIP_FUSE=1 did not skip:\n{text}");
    assert!(text.contains("1 passed"), "the filter ran no test:\n{text}");
    assert!(text.contains("SKIPPED"), "the skip is not announced:\n{text}");
}
