//! `snapfs import --tar`: a snapshot from an archive GNU tar wrote restores to the same tree
//! with its metadata; names with `..` are refused, absolute ones kept inside the snapshot, and a
//! cut archive leaves no snapshot.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use common::*;

/// `find -printf` of what a comparison covers: path, type, mode, size, mtime to the nanosecond,
/// link target.
fn listing(dir: &Path) -> String {
    let out = sh("find", &[dir.to_str().unwrap(), "-mindepth", "1", "-printf", "%P %y %m %s %T@ %l\n"]);
    let mut lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn an_archive_becomes_a_snapshot_that_restores_with_its_metadata() {
    let (_tmp, base, s) = setup();
    let src = base.join("tree");
    let mut rng = Rng::new(17);
    make_files(
        &src,
        &[
            ("big.bin", &rng.bytes(3 * MIB as usize)),
            ("dir/sub/text", &text_bytes(50_000, &mut rng)),
            ("dir/empty", b""),
            ("name with spaces", b"spaces"),
        ],
    );
    symlink("dir/sub/text", src.join("link")).unwrap();
    fs::hard_link(src.join("dir/sub/text"), src.join("hard")).unwrap();
    fs::set_permissions(src.join("dir/sub/text"), fs::Permissions::from_mode(0o640)).unwrap();
    sh("touch", &["-h", "-d", "2001-02-03 04:05:06.123456789", src.join("link").to_str().unwrap()]);
    sh("touch", &["-d", "1999-12-31 23:59:59.5", src.join("dir/sub").to_str().unwrap()]);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();
    let archive = base.join("t.tar");
    sh("tar", &["--format=pax", "-C", src.to_str().unwrap(), "-cf", archive.to_str().unwrap(), "."]);

    let out = s.ok([
        "import",
        "--tar",
        archive.to_str().unwrap(),
        "--path",
        "/imported/here",
        "--time",
        "2026-01-02T03:04:05Z",
        "--tag",
        "tar",
    ]);
    assert!(out.contains("saved"), "{out}");
    let snaps = s.snapshots(Vec::<String>::new());
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/imported/here"]));
    assert_eq!(snaps[0]["tags"], serde_json::json!(["tar"]));
    assert!(snaps[0]["time"].as_str().unwrap().starts_with("2026-01-02T03:04:05"), "{}", snaps[0]);
    let target = base.join("restored");
    s.restore("latest", &target, &[]);
    let got = target.join("imported/here");
    sh("diff", &["-r", "--no-dereference", src.to_str().unwrap(), got.to_str().unwrap()]);
    assert_eq!(listing(&got), listing(&src));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&got), mode(&src), "the archive's `./` gives the --path directory its metadata");

    // From standard input, the same archive gives the same tree.
    let mut c = s.command();
    c.args(["import", "--tar", "-", "--path", "/imported/here", "--time", "2026-01-02T03:04:05Z"]);
    c.stdin(fs::File::open(&archive).unwrap());
    let o = run_cmd(&mut c);
    assert!(o.status.success(), "{}", describe("import --tar -", &o));
    let trees: Vec<_> = s.snapshots(Vec::<String>::new()).iter().map(|x| x["tree"].clone()).collect();
    assert_eq!(trees[0], trees[1], "the same archive and path give the same tree");
}

/// A tar of the given (name, content) entries, written by Python's tarfile, which keeps names
/// as given (GNU tar strips `..` and `/` itself).
fn python_tar(path: &Path, names: &[&str]) {
    let list = names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(",");
    let script = format!(
        "import tarfile, io\nwith tarfile.open({:?}, 'w') as t:\n  for n in [{list}]:\n    \
         i = tarfile.TarInfo(n); d = b'content of ' + n.encode(); i.size = len(d); t.addfile(i, io.BytesIO(d))\n",
        path.to_str().unwrap()
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dot_dot_is_refused_absolute_names_stay_inside_and_a_cut_archive_saves_nothing() {
    let (_tmp, base, s) = setup();
    let evil = base.join("evil.tar");
    python_tar(&evil, &["ok", "a/../../escape"]);
    let out = s.run(["import", "--tar", evil.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe("import of ..", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("..") && line.contains("escape"), "{line}");
    assert!(s.snapshots(Vec::<String>::new()).is_empty());

    let abs = base.join("abs.tar");
    python_tar(&abs, &["/etc/passwd-like", "./rel/file"]);
    s.ok(["import", "--tar", abs.to_str().unwrap(), "--path", "/x"]);
    let target = base.join("r");
    s.restore("latest", &target, &[]);
    assert_eq!(fs::read(target.join("x/etc/passwd-like")).unwrap(), b"content of /etc/passwd-like");
    assert_eq!(fs::read(target.join("x/rel/file")).unwrap(), b"content of ./rel/file");

    let big = base.join("big");
    fs::create_dir(&big).unwrap();
    write_random(&big.join("f"), 2 * MIB, &mut Rng::new(3));
    let full = base.join("full.tar");
    sh("tar", &["-C", big.to_str().unwrap(), "-cf", full.to_str().unwrap(), "."]);
    let bytes = fs::read(&full).unwrap();
    let cut = base.join("cut.tar");
    fs::write(&cut, &bytes[..MIB as usize]).unwrap();
    let before = s.snapshots(Vec::<String>::new()).len();
    let out = s.run(["import", "--tar", cut.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe("import of a cut archive", &out));
    assert_error_line(&out);
    assert_eq!(s.snapshots(Vec::<String>::new()).len(), before);
}
