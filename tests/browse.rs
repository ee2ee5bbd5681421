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

fn set_mtime(p: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    fs::File::options().write(true).open(p).unwrap().set_times(fs::FileTimes::new().set_modified(t)).unwrap();
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

/// The change lines of a diff's text output, without the header and the summary.
fn changes(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.len() > 5 && matches!(&l[..5], "+    " | "-    " | "M    " | "U    " | "T    "))
        .map(str::to_string)
        .collect()
}

#[test]
fn diff_of_two_snapshots_prints_restic_lines_and_counts() {
    let (_tmp, base, s) = setup();
    let d = base.join("data");
    fs::create_dir_all(d.join("olddir")).unwrap();
    for f in ["keep.txt", "change.txt", "gone.txt", "typechange", "meta.txt", "olddir/x"] {
        fs::write(d.join(f), f).unwrap();
    }
    let id1 = s.backup([&d]);
    fs::write(d.join("change.txt"), b"changed contents").unwrap();
    fs::remove_file(d.join("gone.txt")).unwrap();
    fs::write(d.join("new.txt"), b"new").unwrap();
    fs::remove_file(d.join("typechange")).unwrap();
    fs::create_dir(d.join("typechange")).unwrap();
    fs::write(d.join("typechange/inner"), b"inner").unwrap();
    fs::set_permissions(d.join("meta.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_dir_all(d.join("olddir")).unwrap();
    fs::create_dir(d.join("newdir")).unwrap();
    fs::write(d.join("newdir/y"), b"y").unwrap();
    let id2 = s.backup([&d]);

    let out = s.ok(["diff", &id1[..8], &id2[..8]]);
    assert!(out.starts_with(&format!("comparing snapshot {} to {}:", &id1[..8], &id2[..8])), "{out}");
    let p = |rel: &str| d.join(rel).display().to_string();
    let want = [
        format!("M    {}", p("change.txt")),
        format!("-    {}", p("gone.txt")),
        format!("+    {}", p("new.txt")),
        format!("+    {}/", p("newdir")),
        format!("+    {}", p("newdir/y")),
        format!("-    {}/", p("olddir")),
        format!("-    {}", p("olddir/x")),
        format!("T    {}/", p("typechange")),
        format!("+    {}", p("typechange/inner")),
    ];
    assert_eq!(changes(&out), want, "{out}");
    assert!(out.contains("Files:           3 new,     3 removed,     1 changed"), "{out}");
    assert!(out.contains("Dirs:            2 new,     1 removed"), "{out}");

    // --metadata adds the entry whose mode alone changed.
    let meta = s.ok(["diff", "--metadata", &id1[..8], &id2[..8]]);
    assert!(changes(&meta).contains(&format!("U    {}", p("meta.txt"))), "{meta}");
    assert!(!changes(&out).iter().any(|l| l.starts_with('U')));

    let lines = json_lines(&s.ok(["diff", "--json", &id1, &id2]));
    let (stats, rest) = lines.split_last().unwrap();
    assert_eq!(rest.len(), want.len());
    assert!(rest.iter().all(|v| v["message_type"] == "change"));
    assert_eq!(rest[0]["modifier"], "M");
    assert_eq!(rest[0]["path"], p("change.txt"));
    assert_eq!(stats["message_type"], "statistics");
    assert_eq!((stats["source_snapshot"].as_str(), stats["target_snapshot"].as_str()), (Some(&*id1), Some(&*id2)));
    assert_eq!(stats["changed_files"], 1);
    assert_eq!((stats["added"]["files"].as_u64(), stats["removed"]["files"].as_u64()), (Some(3), Some(3)));
    assert_eq!((stats["added"]["dirs"].as_u64(), stats["removed"]["dirs"].as_u64()), (Some(2), Some(1)));
}

#[test]
fn diff_reads_only_the_trees_on_the_changed_path() {
    let (_tmp, base, s) = setup();
    let big = base.join("big");
    for i in 0..10 {
        for j in 0..10 {
            let dir = big.join(format!("d{i}/s{j}"));
            fs::create_dir_all(&dir).unwrap();
            for k in 0..3 {
                fs::write(dir.join(format!("f{k}")), format!("{i} {j} {k}")).unwrap();
            }
        }
    }
    let id1 = s.backup([&big]);
    let changed = big.join("d4/s7/f1");
    fs::write(&changed, b"another content").unwrap();
    let id2 = s.backup([&big]);

    let lines = json_lines(&s.ok(["diff", "--json", &id1, &id2]));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!((lines[0]["modifier"].as_str(), lines[0]["path"].as_str()), (Some("M"), changed.to_str()));
    // Both sides' trees from the root down to the file's directory, and not one more: the
    // 110 other directories of the tree are skipped by their ids.
    let on_the_path = changed.parent().unwrap().ancestors().count() as u64;
    assert_eq!(lines[1]["trees_read"].as_u64(), Some(2 * on_the_path), "{}", lines[1]);
    let same = json_lines(&s.ok(["diff", "--json", &id2, &id2]));
    assert_eq!((same.len(), same[0]["trees_read"].as_u64()), (1, Some(0)));
}

#[test]
fn diff_against_a_live_directory_compares_contents() {
    let (_tmp, base, s) = setup();
    let d = base.join("data");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("a.txt"), b"hello world").unwrap();
    fs::write(d.join("b.txt"), b"bye").unwrap();
    fs::write(d.join("sub/c"), Rng::new(3).bytes(700_000)).unwrap();
    let id = s.backup([&d]);
    // The same size, other bytes: only reading the file tells.
    fs::write(d.join("a.txt"), b"HELLO WORLD").unwrap();
    fs::remove_file(d.join("b.txt")).unwrap();
    fs::write(d.join("d.txt"), b"new").unwrap();
    set_mtime(&d.join("sub/c"), 1_600_000_000);

    let out = s.ok(args(&[&"diff", &"latest", &d]));
    assert!(out.starts_with(&format!("comparing snapshot {} to {}:", &id[..8], d.display())), "{out}");
    let p = |rel: &str| d.join(rel).display().to_string();
    assert_eq!(
        changes(&out),
        [format!("M    {}", p("a.txt")), format!("-    {}", p("b.txt")), format!("+    {}", p("d.txt"))]
    );
    let meta = s.ok(args(&[&"diff", &"--metadata", &"latest", &d]));
    assert!(changes(&meta).contains(&format!("U    {}", p("sub/c"))), "{meta}");
    // Against a directory there are no blobs on one side: the bytes are the files' sizes.
    let lines = json_lines(&s.ok(args(&[&"diff", &"--json", &"latest", &d])));
    let stats = lines.last().unwrap();
    assert_eq!((stats["added"]["bytes"].as_u64(), stats["removed"]["bytes"].as_u64()), (Some(11 + 3), Some(11 + 3)));
    assert_eq!((stats["removed"]["data_blobs"].as_u64(), stats["removed"]["tree_blobs"].as_u64()), (Some(0), Some(0)));
    let missing = s.run(args(&[&"diff", &"latest", &base.join("nope")]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(assert_error_line(&missing).contains("no such snapshot or directory"));
}

/// Two snapshots a day apart: report.txt only in the first, other.md only in the second.
fn find_fixture() -> (tempfile::TempDir, PathBuf, Snapfs, String, String) {
    let (tmp, base, s) = setup();
    let d = base.join("data");
    fs::create_dir_all(d.join("docs")).unwrap();
    fs::write(d.join("report.txt"), b"report").unwrap();
    fs::write(d.join("docs/notes.md"), b"notes").unwrap();
    fs::write(d.join("docs/big.bin"), Rng::new(5).bytes(1_500_000)).unwrap();
    set_mtime(&d.join("docs/notes.md"), 1_577_836_800); // 2020-01-01
    let id1 = s.backup(args(&[&"--time", &"2026-01-01T10:00:00Z", &d]));
    fs::remove_file(d.join("report.txt")).unwrap();
    fs::write(d.join("docs/other.md"), b"other").unwrap();
    set_mtime(&d.join("docs/other.md"), 1_748_736_000); // 2025-06-01
    let id2 = s.backup(args(&[&"--time", &"2026-01-02T10:00:00Z", &d]));
    (tmp, d, s, id1, id2)
}

/// Snapshot short id → the paths found in it, from `find --json`.
fn found(s: &Snapfs, a: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<(String, Vec<String>)> {
    let mut all = args(&[&"find", &"--json"]);
    all.extend(args(a));
    let v: serde_json::Value = serde_json::from_str(s.ok(&all).trim()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let paths = g["matches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_string());
            (g["short_id"].as_str().unwrap().to_string(), paths.collect())
        })
        .collect()
}

#[test]
fn find_groups_matches_by_snapshot() {
    let (_tmp, d, s, id1, id2) = find_fixture();
    let (s1, s2) = (id1[..8].to_string(), id2[..8].to_string());
    let p = |rel: &str| d.join(rel).display().to_string();
    let out = s.ok(["find", "report.txt"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1..], [p("report.txt").as_str()], "{out}");
    assert!(out.starts_with(&format!("Found matching entries in snapshot {s1} from ")), "{out}");

    let (notes, other) = (p("docs/notes.md"), p("docs/other.md"));
    assert_eq!(
        found(&s, &[&"*.md"]),
        [(s1.clone(), vec![notes.clone()]), (s2.clone(), vec![notes.clone(), other.clone()])]
    );
    assert_eq!(found(&s, &[&"*.md", &"--snapshot", &s2]), [(s2.clone(), vec![notes.clone(), other.clone()])]);
    // A pattern with a slash is matched against the whole path; --path narrows any search.
    let docs = format!("{}/docs/*", d.display());
    assert_eq!(found(&s, &[&docs, &"--snapshot", &s1]), [(s1.clone(), vec![p("docs/big.bin"), notes.clone()])]);
    assert_eq!(found(&s, &[&"*", &"--path", &docs, &"--snapshot", &s1]), found(&s, &[&docs, &"--snapshot", &s1]));
    // By modification time.
    assert_eq!(
        found(&s, &[&"*.md", &"--newest", &"2021-01-01"]),
        [(s1.clone(), vec![notes.clone()]), (s2.clone(), vec![notes.clone()])]
    );
    assert_eq!(found(&s, &[&"*.md", &"--oldest", &"2025-01-01"]), [(s2.clone(), vec![other.clone()])]);
    assert!(found(&s, &[&"nothing-like-this"]).is_empty());
}

#[test]
fn find_by_pack_and_by_blob_names_the_files_that_use_them() {
    let (tmp, d, s, id1, id2) = find_fixture();
    let big = d.join("docs/big.bin").display().to_string();
    // Every pack of the repository, as the backend lays them out.
    let packs = files_under(&canonical(tmp.path()).join("repo/packs"));
    assert!(!packs.is_empty());
    let mut big_blobs = None;
    for pack in &packs {
        let name = pack.file_name().unwrap().to_str().unwrap();
        let out = s.ok(["find", "--json", "--pack", &name[..12]]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        for g in v.as_array().unwrap() {
            for m in g["matches"].as_array().unwrap() {
                if m["path"] == big.as_str() {
                    big_blobs = Some(m["blobs"].as_array().unwrap().clone());
                }
            }
        }
    }
    let blobs = big_blobs.expect("big.bin uses a blob of some pack");
    let prefix = &blobs[0].as_str().unwrap()[..16];
    let (s1, s2) = (id1[..8].to_string(), id2[..8].to_string());
    assert_eq!(found(&s, &[&"--blob", &prefix]), [(s1, vec![big.clone()]), (s2, vec![big.clone()])]);
    let none = found(&s, &[&"--blob", &"0123456789abcdef0123"]);
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn show_prints_every_field_of_a_snapshot() {
    let (_tmp, base, s) = setup();
    let d = base.join("data");
    fs::create_dir_all(&d).unwrap();
    for f in ["a", "b", "c"] {
        fs::write(d.join(f), f).unwrap();
    }
    let id1 = s.backup(args(&[&"--tag", &"t1,t2", &"--host", &"h1", &"--description", &"nightly run", &d]));
    let id2 = s.backup(args(&[&"--host", &"h1", &d]));
    let out = s.ok(["show", &id1[..8]]);
    let has = |k: &str, v: &str| {
        assert!(out.lines().any(|l| l.starts_with(k) && l[k.len()..].trim() == v), "no {k} = {v:?} in\n{out}")
    };
    has("snapshot", &id1);
    has("host", "h1");
    has("tags", "t1, t2");
    has("description", "nightly run");
    has("paths", &d.display().to_string());
    has("parent", "none");
    has("files", "3 (3 new, 0 changed, 0 unchanged)");
    let second = s.ok(["show", "latest"]);
    assert!(second.lines().any(|l| l.starts_with("parent") && l.ends_with(&id1)), "{second}");
    let v: serde_json::Value = serde_json::from_str(s.ok(["show", "--json", "latest"]).trim()).unwrap();
    assert_eq!((v["id"].as_str(), v["parent"].as_str()), (Some(&*id2), Some(&*id1)));
    assert_eq!(v["summary"]["total_files"], 3);
    assert_eq!(v["summary"]["files_unchanged"], 3);
}

#[test]
fn stats_in_the_three_modes_and_the_dedup_ratio() {
    let (_tmp, base, s) = setup();
    let d = base.join("data");
    fs::create_dir_all(&d).unwrap();
    let a = Rng::new(7).bytes(1_500_000);
    fs::write(d.join("a"), &a).unwrap();
    fs::write(d.join("copy-of-a"), &a).unwrap();
    fs::write(d.join("c"), Rng::new(8).bytes(600_000)).unwrap();
    s.backup([&d]);
    s.backup([&d]);
    let stats = |mode: &str| -> serde_json::Value {
        serde_json::from_str(s.ok(["stats", "--json", "--mode", mode]).trim()).unwrap()
    };
    let restore = stats("restore-size");
    assert_eq!((restore["snapshots_count"].as_u64(), restore["total_file_count"].as_u64()), (Some(2), Some(6)));
    assert_eq!(restore["total_size"].as_u64(), Some(2 * 3_600_000));
    let contents = stats("files-by-contents");
    assert_eq!((contents["total_file_count"].as_u64(), contents["total_size"].as_u64()), (Some(2), Some(2_100_000)));
    let raw = stats("raw-data");
    let unique = raw["total_uncompressed_size"].as_u64().unwrap();
    // The distinct data once, plus a few small trees.
    assert!((2_100_000..2_100_000 + 65_536).contains(&unique), "{raw}");
    let ratio = raw["dedup_ratio"].as_f64().unwrap();
    assert!((ratio - 7_200_000.0 / unique as f64).abs() < 1e-9 && ratio > 3.3, "{raw}");
    let text = s.ok(["stats", "--mode", "raw-data"]);
    assert!(text.starts_with("Stats in raw-data mode:") && text.contains("Deduplication Ratio:"), "{text}");
    let one = s.ok(["stats", "latest"]);
    assert!(one.contains("Snapshots processed:  1") && one.contains("Total File Count:  3"), "{one}");
}

#[test]
fn history_lists_each_version_once_with_the_gaps() {
    let (_tmp, base, s) = setup();
    let d = base.join("data");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("note.txt"), b"keeps the directory company").unwrap();
    let f = d.join("f.txt");
    let at = |day: u32| format!("2026-01-0{day}T12:00:00Z");
    let mut ids = Vec::new();
    fs::write(&f, b"v1").unwrap();
    set_mtime(&f, 1_700_000_000);
    ids.push(s.backup(args(&[&"--time", &at(1), &d])));
    ids.push(s.backup(args(&[&"--time", &at(2), &d])));
    fs::write(&f, b"version 2").unwrap();
    set_mtime(&f, 1_700_100_000);
    ids.push(s.backup(args(&[&"--time", &at(3), &d])));
    fs::remove_file(&f).unwrap();
    ids.push(s.backup(args(&[&"--time", &at(4), &d])));
    fs::write(&f, b"version 2").unwrap();
    set_mtime(&f, 1_700_100_000);
    ids.push(s.backup(args(&[&"--time", &at(5), &d])));

    let v: serde_json::Value = serde_json::from_str(s.ok(args(&[&"history", &"--json", &f])).trim()).unwrap();
    let versions = v.as_array().unwrap();
    assert_eq!(versions.len(), 2, "{v}");
    let snaps = |i: usize| {
        versions[i]["snapshots"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(snaps(0), [ids[0].clone(), ids[1].clone()]);
    assert_eq!(snaps(1), [ids[2].clone(), ids[4].clone()]);
    assert_eq!((versions[0]["size"].as_u64(), versions[1]["size"].as_u64()), (Some(2), Some(9)));
    assert_eq!(
        (versions[1]["first_snapshot"].as_str(), versions[1]["last_snapshot"].as_str()),
        (Some(&*ids[2]), Some(&*ids[4]))
    );
    assert_eq!(versions[0]["first_time"], "2026-01-01T12:00:00Z");
    assert_eq!(versions[0]["mtime"], "2023-11-14T22:13:20Z");
    assert_ne!(versions[0]["fingerprint"], versions[1]["fingerprint"]);

    let text = s.ok(args(&[&"history", &f]));
    assert!(text.starts_with(&format!("{}: 2 versions in 4 of 5 snapshots", f.display())), "{text}");
    assert!(
        text.contains(&format!("deleted in {}", &ids[3][..8])) && text.contains(&format!("back in {}", &ids[4][..8])),
        "{text}"
    );
    assert!(text.lines().all(|l| l.len() <= 80), "{text}");

    let out = s.run(args(&[&"history", &d.join("nite.txt")]));
    assert_eq!(out.status.code(), Some(1));
    let line = assert_error_line(&out);
    assert!(
        line.contains("not found in any of the 5 snapshots")
            && line.contains(&format!("closest: {}", d.join("note.txt").display())),
        "{line}"
    );
}
