//! The browsing commands through the real binary: `ls`, `diff`, `find`, `show`, `stats` and
//! `history`, their text and JSON shapes, and their errors for paths that are not there.

mod common;
use common::*;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// A repository beside a source directory, in a canonical temporary directory.
fn setup() -> (tempfile::TempDir, PathBuf, Snapfs) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    (tmp, base, s)
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_owned()).collect()
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// `path`'s components as bytes: sorting by them is the depth-first name order of a listing.
fn key(p: &Path) -> Vec<Vec<u8>> {
    p.components().map(|c| c.as_os_str().as_encoded_bytes().to_vec()).collect()
}

#[test]
fn ls_lists_every_path_depth_first_and_one_directory_on_request() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    fs::create_dir_all(data.join("sub/deeper")).unwrap();
    fs::write(data.join("a.txt"), b"alpha\n").unwrap();
    fs::set_permissions(data.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(data.join("sub/b.bin"), Rng::new(1).bytes(3000)).unwrap();
    fs::write(data.join("sub/deeper/c"), b"c").unwrap();
    symlink("a.txt", data.join("link")).unwrap();
    let id = s.backup([&data]);

    // The whole snapshot: the directories leading to the backed-up path, then everything in
    // it, as `find` sees it, in depth-first name order.
    let listed: Vec<PathBuf> = s.ok(["ls", "latest"]).lines().map(PathBuf::from).collect();
    let mut want: Vec<PathBuf> =
        data.ancestors().skip(1).filter(|p| *p != Path::new("/")).map(Path::to_path_buf).collect();
    let found = String::from_utf8(sh("find", &[&data])).unwrap();
    want.extend(found.lines().map(PathBuf::from));
    want.sort_by_key(|p| key(p));
    assert_eq!(listed, want);

    // A directory: itself and its entries, and with --recursive everything below.
    let sub = data.join("sub");
    let one = s.ok(args(&[&"ls", &format!("{}:{}", &id[..8], sub.display())]));
    let expect = [sub.clone(), sub.join("b.bin"), sub.join("deeper")];
    assert_eq!(one.lines().map(PathBuf::from).collect::<Vec<_>>(), expect);
    assert_eq!(s.ok(args(&[&"ls", &"latest", &sub])), one, "the path as a second argument");
    let all = s.ok(args(&[&"ls", &"--recursive", &format!("latest:{}", sub.display())]));
    assert_eq!(all.lines().last(), Some(sub.join("deeper/c").to_str().unwrap()));
    let flat = s.ok(["ls", "--no-recursive", "latest"]);
    assert_eq!(flat.lines().collect::<Vec<_>>(), [want[0].to_str().unwrap()], "only the top directory");

    // --long: mode, owner, group, size, mtime, path, and a link's target.
    let long = s.ok(args(&[&"ls", &"--long", &format!("latest:{}", data.display())]));
    let a = long.lines().find(|l| l.ends_with("/a.txt")).unwrap_or_else(|| panic!("no a.txt in\n{long}"));
    let f: Vec<&str> = a.split_whitespace().collect();
    assert_eq!((f[0], f[3], f[6]), ("-rw-r-----", "6", data.join("a.txt").to_str().unwrap()), "{a}");
    assert!(long.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("/link -> a.txt")), "{long}");

    // --json: the snapshot, then one node a line.
    let lines = json_lines(&s.ok(["ls", "--json", "latest"]));
    assert_eq!((lines[0]["message_type"].as_str(), lines[0]["id"].as_str()), (Some("snapshot"), Some(id.as_str())));
    let node = |name: &str| lines.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no node {name}"));
    assert_eq!(node("a.txt")["size"], 6);
    assert_eq!(node("a.txt")["permissions"], "-rw-r-----");
    assert_eq!(node("a.txt")["path"], data.join("a.txt").to_str().unwrap());
    assert_eq!(node("link")["type"], "symlink");
    assert_eq!(node("link")["linktarget"], "a.txt");
    assert_eq!(lines.len(), 1 + want.len());
}

#[test]
fn ls_of_a_missing_path_names_the_closest() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    fs::create_dir_all(data.join("sub/deeper")).unwrap();
    let id = s.backup([&data]);
    let out = s.run(args(&[&"ls", &format!("latest:{}", data.join("sub/deepr").display())]));
    assert_eq!(out.status.code(), Some(1), "{}", describe("ls of a missing path", &out));
    let line = assert_error_line(&out);
    assert!(line.contains(&format!("not found in snapshot {}", &id[..8])), "{line}");
    assert!(line.contains(&format!("closest: {}", data.join("sub/deeper").display())), "{line}");
}
