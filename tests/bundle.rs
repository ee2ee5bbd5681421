//! `snapfs export` and `snapfs import` through the real binary: a bundle goes into a repository
//! with another password, restores exactly, adds nothing the second time, and a truncated,
//! tampered or foreign bundle fails with one line naming the problem and leaves no snapshot.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const BUNDLE_PASSWORD: &str = "the bundle's own password";

struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: Snapfs,
    ids: Vec<String>,
}

fn world() -> World {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = with_bundle_password(Snapfs::new(base.join("src")));
    src.init();
    let data = base.join("data");
    let mut rng = Rng::new(16);
    let big = rng.bytes(2 * MIB as usize);
    make_files(&data, &[("a/big", &big), ("a/b/again", &big), ("t.txt", &text_bytes(100_000, &mut rng))]);
    let first = src.backup([data.to_str().unwrap()]);
    fs::write(data.join("a/later"), rng.bytes(900_000)).unwrap();
    let second = src.backup([data.to_str().unwrap()]);
    World { _tmp: tmp, base, src, ids: vec![first, second] }
}

fn with_bundle_password(mut s: Snapfs) -> Snapfs {
    s.env.push(("SNAPFS_BUNDLE_PASSWORD".into(), BUNDLE_PASSWORD.into()));
    s
}

fn other_repo(path: PathBuf) -> Snapfs {
    let mut d = with_bundle_password(Snapfs::new(path));
    d.password = Some("a destination password".into());
    d
}

fn export(w: &World, name: &str, ids: &[&str]) -> PathBuf {
    let file = w.base.join(name);
    let mut args = vec!["export", "-o", file.to_str().unwrap()];
    args.extend(ids);
    w.src.ok(&args);
    file
}

fn import_json(dst: &Snapfs, file: &Path) -> serde_json::Value {
    parse_json_object(&dst.ok(["import", "--json", file.to_str().unwrap()]))
}

fn same_restore(w: &World, dst: &Snapfs, src_id: &str, dst_id: &str) {
    let (a, b) = (w.base.join(format!("r-{src_id}")), w.base.join(format!("r-{dst_id}")));
    w.src.restore(src_id, &a, &[]);
    dst.restore(dst_id, &b, &[]);
    sh("diff", &["-r", "--no-dereference", a.to_str().unwrap(), b.to_str().unwrap()]);
}

#[test]
fn a_bundle_imports_into_any_repository_and_a_second_import_adds_nothing() {
    let w = world();
    let one = export(&w, "one.snapfs", &[&w.ids[0]]);
    let both = export(&w, "both.snapfs", &[&w.ids[0], &w.ids[1]]);
    // Only the blobs a snapshot needs: the first alone is smaller than both.
    assert!(fs::metadata(&one).unwrap().len() < fs::metadata(&both).unwrap().len());
    assert!(!w.base.join("both.snapfs.partial").exists());

    let dst = other_repo(w.base.join("dst"));
    dst.init();
    let v = import_json(&dst, &both);
    assert_eq!(v["imported"].as_array().unwrap().len(), 2, "{v}");
    assert!(num(&v, "trees_rewritten") > 0, "unrelated repositories: trees get new ids: {v}");
    for s in dst.snapshots(Vec::<String>::new()) {
        same_restore(&w, &dst, s["original"].as_str().unwrap(), s["id"].as_str().unwrap());
    }
    dst.ok(["check", "--read-data"]);

    let packs = files_under(&dst.repo.join("packs"));
    let v = import_json(&dst, &both);
    assert_eq!(v["imported"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["already_present"].as_array().unwrap().len(), 2, "{v}");
    let v = import_json(&dst, &one);
    assert_eq!(v["imported"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(files_under(&dst.repo.join("packs")), packs, "a second import wrote packs");
    assert_eq!(dst.snapshots(Vec::<String>::new()).len(), 2);
}

#[test]
fn into_a_repository_sharing_ids_blobs_keep_them() {
    let w = world();
    let both = export(&w, "both.snapfs", &[&w.ids[0], &w.ids[1]]);
    let dst = other_repo(w.base.join("dst"));
    let mut init = dst.command();
    init.env("SNAPFS_FROM_PASSWORD", PASSWORD);
    init.args(["init", "--copy-chunker-params", "--from-repo", w.src.repo.to_str().unwrap()]);
    assert!(run_cmd(&mut init).status.success());
    let v = import_json(&dst, &both);
    assert_eq!(v["imported"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(num(&v, "trees_rewritten"), 0, "{v}");
    let trees = |s: &Snapfs| -> Vec<String> {
        let mut t: Vec<String> =
            s.snapshots(Vec::<String>::new()).iter().map(|x| x["tree"].as_str().unwrap().to_string()).collect();
        t.sort();
        t
    };
    assert_eq!(trees(&dst), trees(&w.src));
    for s in dst.snapshots(Vec::<String>::new()) {
        same_restore(&w, &dst, s["original"].as_str().unwrap(), s["id"].as_str().unwrap());
    }
}

/// Imports `bytes` as a bundle into a fresh repository; returns the failed output, after checking
/// that it left no snapshot.
fn import_fails(w: &World, name: &str, bytes: &[u8]) -> (std::process::Output, String) {
    let file = w.base.join(name);
    fs::write(&file, bytes).unwrap();
    let dst = other_repo(w.base.join(format!("dst-{name}")));
    dst.init();
    let out = dst.run(["import", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&format!("import of {name} must fail"), &out));
    let line = assert_error_line(&out);
    assert_eq!(stderr_of(&out).lines().count(), 1, "{}", stderr_of(&out));
    assert!(files_under(&dst.repo.join("snapshots")).is_empty(), "{name}: a snapshot is visible");
    (out, line)
}

#[test]
fn truncated_tampered_foreign_and_wrongly_locked_bundles_fail_cleanly() {
    let w = world();
    let good = fs::read(export(&w, "good.snapfs", &[&w.ids[1]])).unwrap();
    let n = good.len();

    for cut in [0, 20, 60, 400, n / 2, n - 1] {
        let (_, line) = import_fails(&w, &format!("cut{cut}"), &good[..cut]);
        assert!(line.contains("truncated") || line.contains("cut short"), "cut at {cut}: {line}");
    }
    let mut padded = good.clone();
    padded.push(0);
    let (_, line) = import_fails(&w, "padded", &padded);
    assert!(line.contains("after its last blob record"), "{line}");

    let mut version = good.clone();
    version[8] = 2;
    let (_, line) = import_fails(&w, "version", &version);
    assert!(line.contains("bundle format version 2"), "{line}");

    let mut magic = good.clone();
    magic[0] ^= 1;
    let (_, line) = import_fails(&w, "magic", &magic);
    assert!(line.contains("not a snapfs bundle"), "{line}");

    // A snapshot id in the header: bound to the manifest, so authentication fails.
    let mut id = good.clone();
    id[50] ^= 1;
    let (_, line) = import_fails(&w, "id", &id);
    assert!(line.contains("fails authentication"), "{line}");

    // A byte inside the last blob record's envelope.
    let mut blob = good.clone();
    blob[n - 20] ^= 1;
    let (_, line) = import_fails(&w, "blob", &blob);
    assert!(line.contains("authentication failed"), "{line}");

    let file = w.base.join("good.snapfs");
    let dst = other_repo(w.base.join("dst-pw"));
    dst.init();
    let mut c = dst.command();
    c.env("SNAPFS_BUNDLE_PASSWORD", "not it").args(["import", file.to_str().unwrap()]);
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(12), "{}", describe("import with a wrong bundle password", &out));
    assert!(assert_error_line(&out).contains("wrong password for bundle"));
}
