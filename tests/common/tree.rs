//! The generated test tree and tree comparison with ordinary tools.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, FileTimes};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt, chown, lchown, symlink};
use std::time::{SystemTime, UNIX_EPOCH};

/// What `gen_tree` made, for tests that want to point at parts of it.
pub struct GenTree {
    pub root: PathBuf,
    pub sparse: PathBuf,
    pub big: PathBuf,
    pub have_xattrs: bool,
}

/// The access time of `times/atime` in the generated tree.
pub const ATIME_SECS: i64 = 1_900_000_000;
pub const ATIME_NANOS: u32 = 123_456_789;

/// Access time of `path` as `find -printf %A@` prints it.
pub fn atime_of(path: &Path) -> String {
    String::from_utf8(sh(
        "find",
        &[path.as_os_str(), OsStr::new("-maxdepth"), OsStr::new("0"), OsStr::new("-printf"), OsStr::new("%A@")],
    ))
    .unwrap()
}

/// Chunker sizes from the format spec's defaults.
pub const CHUNK_MIN: u64 = 512 * KIB;
pub const CHUNK_AVG: u64 = MIB;
pub const CHUNK_MAX: u64 = 8 * MIB;

fn at(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        // secs + nanos/1e9 with secs negative, e.g. (-1000001, 876543211) = -1000000.123456789
        UNIX_EPOCH - Duration::new((-secs) as u64, 0) + Duration::new(0, nanos)
    }
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = File::options().read(true).open(path).or_else(|_| File::open(path)).unwrap();
    f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap_or_else(|e| panic!("set_times {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdirs(p: &Path) {
    fs::create_dir_all(p).unwrap();
}

/// Sets an extended attribute with the `setfattr` tool (the `attr` package).
pub fn setfattr(path: &Path, name: &str, value: &str) {
    sh(
        "setfattr",
        &[OsStr::new("-h"), OsStr::new("-n"), OsStr::new(name), OsStr::new("-v"), OsStr::new(value), path.as_os_str()],
    );
}

/// Builds everything the testing guide lists under `root` (which must not exist or be empty).
/// About 50 MiB of data, a 64 MiB sparse file and ~10,100 entries.
pub fn gen_tree(root: &Path, seed: u64) -> GenTree {
    let mut rng = Rng::new(seed);
    mkdirs(root);
    let p = |rel: &str| root.join(rel);

    // Empty things.
    fs::write(p("empty"), b"").unwrap();
    mkdirs(&p("empty-dir"));

    // Exactly the chunker's min / avg / max, and one byte either side.
    mkdirs(&p("sizes"));
    for (name, base) in [("min", CHUNK_MIN), ("avg", CHUNK_AVG), ("max", CHUNK_MAX)] {
        write_random(&p(&format!("sizes/{name}-1")), base - 1, &mut rng);
        write_random(&p(&format!("sizes/{name}")), base, &mut rng);
        write_random(&p(&format!("sizes/{name}+1")), base + 1, &mut rng);
    }
    // A compressible file and a large one.
    fs::write(p("sizes/text.txt"), text_bytes(3 * MIB as usize + 17, &mut rng)).unwrap();
    let big = p("big.bin");
    write_random(&big, 20 * MIB + 12345, &mut rng);

    // Sparse: 64 MiB apparent, 4 x 64 KiB of data.
    let sparse = p("sparse.img");
    {
        let f = File::create(&sparse).unwrap();
        f.set_len(64 * MIB).unwrap();
        for off in [0, 5 * MIB + 7, 33 * MIB, 64 * MIB - 64 * KIB] {
            f.write_all_at(&rng.bytes(64 * KIB as usize), off).unwrap();
        }
        // Data, then a hole to the end: restore must still give it its full length.
        let tail = File::create(p("sparse-tail.img")).unwrap();
        tail.write_all_at(&rng.bytes(64 * KIB as usize), 0).unwrap();
        tail.set_len(20 * MIB).unwrap();
    }

    // Hardlinks: one group inside links/, one group across directories.
    mkdirs(&p("links/other"));
    mkdirs(&p("elsewhere"));
    fs::write(p("links/a"), rng.bytes(10_000)).unwrap();
    fs::hard_link(p("links/a"), p("links/a2")).unwrap();
    fs::hard_link(p("links/a"), p("links/other/a3")).unwrap();
    fs::write(p("links/g2"), text_bytes(5_000, &mut rng)).unwrap();
    fs::hard_link(p("links/g2"), p("elsewhere/g2-link")).unwrap();

    // Symlinks.
    mkdirs(&p("symlinks"));
    symlink("../links/a", p("symlinks/relative")).unwrap();
    symlink("/etc/hostname", p("symlinks/absolute")).unwrap();
    symlink("does/not/exist", p("symlinks/dangling")).unwrap();
    symlink("../sizes", p("symlinks/to-dir")).unwrap();

    // FIFO and a character device (1,3 = /dev/null's numbers).
    mkdirs(&p("special"));
    sh("mkfifo", &[p("special/fifo")]);
    sh("mknod", &[p("special/null").as_os_str(), OsStr::new("c"), OsStr::new("1"), OsStr::new("3")]);

    // Hard names.
    mkdirs(&p("names"));
    fs::write(p("names/with space"), b"space\n").unwrap();
    fs::write(p("names/new\nline"), b"newline\n").unwrap();
    fs::write(root.join("names").join(OsStr::from_bytes(b"bad-\xff\xfe-utf8")), b"not utf-8\n").unwrap();
    fs::write(root.join("names").join("n".repeat(255)), b"long name\n").unwrap();
    fs::write(p("names/\u{fc}n\u{ef}c\u{f6}d\u{e9}"), b"unicode\n").unwrap();
    mkdirs(&p("names/dir with space"));
    fs::write(p("names/dir with space/-leading-dash"), b"dash\n").unwrap();

    // 30 levels deep.
    let mut deep = p("deep");
    for i in 0..30 {
        deep.push(format!("d{i:02}"));
    }
    mkdirs(&deep);
    fs::write(deep.join("leaf.txt"), b"deep leaf\n").unwrap();

    // A directory of 10,000 small files.
    mkdirs(&p("many"));
    for i in 0..10_000u32 {
        let len = rng.below(200) as usize;
        fs::write(p(&format!("many/f{i:05}")), rng.bytes(len)).unwrap();
    }

    // Modes.
    mkdirs(&p("modes"));
    // "open" and "shared" have bits a umask of 022 takes away at creation.
    let modes = [("setuid", 0o4755), ("setgid", 0o2755), ("none", 0o000), ("ro", 0o444), ("exec", 0o700)];
    for (name, mode) in modes.into_iter().chain([("open", 0o666), ("shared", 0o775)]) {
        let f = p(&format!("modes/{name}"));
        fs::write(&f, name.as_bytes()).unwrap();
        chmod(&f, mode);
    }
    mkdirs(&p("modes/sticky"));
    fs::write(p("modes/sticky/inside"), b"sticky\n").unwrap();
    chmod(&p("modes/sticky"), 0o1777);
    mkdirs(&p("modes/private"));
    fs::write(p("modes/private/secret"), b"secret\n").unwrap();
    chmod(&p("modes/private"), 0o700);

    // Ownership.
    mkdirs(&p("owner/dir"));
    fs::write(p("owner/file"), b"owned by 1234:5678\n").unwrap();
    chown(p("owner/file"), Some(1234), Some(5678)).unwrap();
    chmod(&p("owner/file"), 0o640);
    symlink("file", p("owner/link")).unwrap();
    lchown(p("owner/link"), Some(1234), Some(5678)).unwrap();
    chown(p("owner/dir"), Some(4321), Some(8765)).unwrap();

    // Extended attributes.
    mkdirs(&p("xattr/dir"));
    fs::write(p("xattr/file"), b"has xattrs\n").unwrap();
    let have_xattrs = have_tool("setfattr") && have_tool("getfattr");
    if have_xattrs {
        setfattr(&p("xattr/file"), "user.comment", "hello world");
        setfattr(&p("xattr/file"), "user.binary", "0x00ff10ee");
        setfattr(&p("xattr/file"), "user.empty", "");
        setfattr(&p("xattr/dir"), "user.on-dir", "directory attribute");
        setfattr(&p("links/a"), "user.hardlinked", "shared by three names");
    } else {
        eprintln!("\n!!!!! WARNING: setfattr/getfattr missing (package `attr`): xattrs are NOT tested !!!!!\n");
    }

    // Times: nanoseconds, before 1970, far future.
    mkdirs(&p("times"));
    for (name, secs, nanos) in [
        ("before-1970", -1_000_001i64, 876_543_211u32),
        ("epoch", 0, 0),
        ("nanos", 1_700_000_000, 987_654_321),
        ("future", 4_102_444_800, 500_000_001),
    ] {
        let f = p(&format!("times/{name}"));
        fs::write(&f, name.as_bytes()).unwrap();
        set_mtime(&f, at(secs, nanos));
    }
    // An atime in the future survives reads (relatime) so a restore's atime can be checked.
    let f = p("times/atime");
    fs::write(&f, b"atime").unwrap();
    File::open(&f)
        .unwrap()
        .set_times(FileTimes::new().set_modified(at(1_700_000_000, 5)).set_accessed(at(ATIME_SECS, ATIME_NANOS)))
        .unwrap();
    if have_tool("touch") {
        // Symlink times (std has no lutimes).
        sh(
            "touch",
            &[
                OsStr::new("-h"),
                OsStr::new("-d"),
                OsStr::new("@1234567890.123456789"),
                p("symlinks/dangling").as_os_str(),
            ],
        );
    }

    // Directory mtimes last, deepest first, each with its own nanoseconds.
    let mut dirs = Vec::new();
    collect_dirs(root, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for (i, d) in dirs.iter().enumerate() {
        set_mtime(d, at(1_600_000_000 + i as i64 * 3601, 100_000_007 * (i as u32 % 9) + 13));
    }
    GenTree { root: root.to_path_buf(), sparse, big, have_xattrs }
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    for e in fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Metadata of a tree as ordinary tools report it.
#[derive(Debug, PartialEq)]
pub struct Listing {
    /// One line per entry: `path type mode uid gid size mtime nlink -> target`, sorted.
    /// Size only for regular files and symlinks; atime and ctime are not compared.
    pub lines: Vec<String>,
    /// Relative paths that share an inode (regular files with nlink > 1), sorted groups.
    pub hardlinks: Vec<Vec<String>>,
    /// `getfattr -d -m - -e hex` blocks, sorted (empty when getfattr is missing).
    pub xattrs: Vec<String>,
    /// Regular files: path -> (size, allocated 512-byte blocks). Not compared for equality.
    #[doc(hidden)]
    pub alloc: BTreeMap<String, (u64, u64)>,
}

/// Lists every entry under `root` (relative paths, escaped bytes) with `find -printf`
/// and `getfattr`. `with_root` keeps the entry for `root` itself.
pub fn meta_listing(root: &Path, with_root: bool) -> Listing {
    let raw =
        sh("find", &[root.as_os_str(), OsStr::new("-printf"), OsStr::new("%y %m %U %G %s %T@ %n %i %b\\0%P\\0%l\\0")]);
    let fields: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    assert_eq!(fields.len() % 3, 1, "unexpected find output");
    let mut lines = Vec::new();
    let mut by_inode: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut alloc = BTreeMap::new();
    for rec in fields.chunks_exact(3) {
        let meta = String::from_utf8_lossy(rec[0]).into_owned();
        let path = if rec[1].is_empty() { ".".to_string() } else { rec[1].escape_ascii().to_string() };
        if path == "." && !with_root {
            continue;
        }
        let target = rec[2].escape_ascii().to_string();
        let m: Vec<&str> = meta.split(' ').collect();
        let (ty, mode, uid, gid, size, mtime, nlink, ino, blocks) =
            (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]);
        let size_shown = if ty == "f" || ty == "l" { size } else { "-" };
        let mut line = format!("{path} {ty} {mode} {uid} {gid} {size_shown} {mtime} {nlink} -> {target}");
        if ty == "c" || ty == "b" {
            // find cannot print a device's major:minor; stat can.
            let p = if rec[1].is_empty() { root.to_path_buf() } else { root.join(OsStr::from_bytes(rec[1])) };
            let dev = sh("stat", &[OsStr::new("-c"), OsStr::new("%t:%T"), p.as_os_str()]);
            line.push_str(&format!(" dev {}", String::from_utf8_lossy(&dev).trim()));
        }
        lines.push(line);
        if ty == "f" {
            alloc.insert(path.clone(), (size.parse().unwrap(), blocks.parse().unwrap()));
            if nlink != "1" {
                by_inode.entry(ino.to_string()).or_default().push(path.clone());
            }
        }
    }
    lines.sort();
    let mut hardlinks: Vec<Vec<String>> = by_inode
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    hardlinks.sort();
    Listing { lines, hardlinks, xattrs: xattr_listing(root, with_root), alloc }
}

fn xattr_listing(root: &Path, with_root: bool) -> Vec<String> {
    if !have_tool("getfattr") {
        return Vec::new();
    }
    let mut c = Command::new("getfattr");
    c.args(["-h", "-R", "-P", "-d", "-m", "-", "-e", "hex", "."]).current_dir(root).stdin(Stdio::null());
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe("getfattr", &out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut blocks: Vec<String> = text
        .split("\n\n")
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .filter(|b| with_root || !b.starts_with("# file: .\n"))
        .collect();
    blocks.sort();
    blocks
}

fn set_diff(a: &[String], b: &[String]) -> String {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let only_a: Vec<_> = sa.difference(&sb).take(25).collect();
    let only_b: Vec<_> = sb.difference(&sa).take(25).collect();
    format!(
        "only in source ({}):\n  {only_a:#?}\nonly in restore ({}):\n  {only_b:#?}",
        sa.difference(&sb).count(),
        sb.difference(&sa).count()
    )
}

/// `diff -r --no-dereference a b` must find no difference (special files, which diff cannot
/// compare, are checked by the listing instead).
pub fn assert_diff_clean(a: &Path, b: &Path) {
    let mut c = Command::new("diff");
    c.args(["-r", "--no-dereference"]).arg(a).arg(b).stdin(Stdio::null());
    let out = run_cmd(&mut c);
    let text = String::from_utf8_lossy(&out.stdout);
    // diff cannot compare special files; it reports "File A is a fifo while file B is a fifo".
    let same_special = |l: &str| {
        let Some((first, second)) = l.strip_prefix("File ").and_then(|l| l.split_once(" while file ")) else {
            return false;
        };
        let kind = |s: &str| s.rsplit_once(" is a ").map(|(_, k)| k.to_string());
        let (k1, k2) = (kind(first), kind(second));
        k1 == k2 && matches!(k1.as_deref(), Some("fifo" | "character special file" | "block special file" | "socket"))
    };
    let real: Vec<&str> = text.lines().filter(|l| !same_special(l)).collect();
    let ok = match out.status.code() {
        Some(0) => true,
        Some(1) => real.is_empty() && out.stderr.is_empty(),
        _ => false,
    };
    assert!(ok, "{}", describe(&format!("diff -r --no-dereference {} {}", a.display(), b.display()), &out));
}

/// Full comparison of a source tree and its restore: contents (`diff -r`), metadata listing,
/// hardlink groups, xattrs, and sparse files staying sparse.
pub fn assert_same_tree(a: &Path, b: &Path) {
    compare_trees(a, b, true)
}

/// Like `assert_same_tree` but ignores the metadata of the two roots themselves.
pub fn assert_same_contents(a: &Path, b: &Path) {
    compare_trees(a, b, false)
}

pub fn compare_trees(a: &Path, b: &Path, with_root: bool) {
    assert!(b.is_dir(), "restored tree {} does not exist", b.display());
    assert_diff_clean(a, b);
    let la = meta_listing(a, with_root);
    let lb = meta_listing(b, with_root);
    assert!(
        la.lines == lb.lines,
        "metadata differs between {} and {}\n{}",
        a.display(),
        b.display(),
        set_diff(&la.lines, &lb.lines)
    );
    assert_eq!(la.hardlinks, lb.hardlinks, "hardlink groups differ ({} vs {})", a.display(), b.display());
    assert!(
        la.xattrs == lb.xattrs,
        "xattrs differ between {} and {}\n{}",
        a.display(),
        b.display(),
        set_diff(&la.xattrs, &lb.xattrs)
    );
    for (path, &(size, blocks)) in &la.alloc {
        if size >= MIB && blocks * 512 < size / 2 {
            let (_, rblocks) = lb.alloc[path];
            assert!(
                rblocks * 512 < size / 2,
                "{path} is sparse in the source ({} KiB allocated of {} KiB) but the restore allocates {} KiB",
                blocks / 2,
                size / 1024,
                rblocks / 2
            );
        }
    }
}
