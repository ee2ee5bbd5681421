//! `snapfs copy` and `init --copy-chunker-params`, through the real binary: what is copied
//! restores exactly, a second copy adds nothing, shared identity moves blobs under their ids,
//! and a wrong source password writes nothing.

mod common;

use std::fs;
use std::path::Path;

use common::*;

const DST_PASSWORD: &str = "another password entirely";

/// A source repository with two snapshots of a tree with nested directories and shared data.
fn source(base: &Path) -> (Snapfs, Vec<String>) {
    let src = Snapfs::new(base.join("src"));
    src.init();
    let data = base.join("data");
    let mut rng = Rng::new(15);
    let big = rng.bytes(3 * MIB as usize);
    make_files(
        &data,
        &[
            ("a/big.bin", &big),
            ("a/b/c/copy.bin", &big),
            ("a/text.txt", &text_bytes(200_000, &mut rng)),
            ("empty", b""),
            ("x/y/z/small", b"small file"),
        ],
    );
    let first = src.backup([data.to_str().unwrap(), "--tag", "one", "--host", "h1"]);
    fs::write(data.join("x/new"), rng.bytes(700_000)).unwrap();
    let second = src.backup([data.to_str().unwrap(), "--tag", "two", "--host", "h2"]);
    (src, vec![first, second])
}

fn destination(path: impl Into<std::path::PathBuf>) -> Snapfs {
    let mut d = Snapfs::new(path);
    d.password = Some(DST_PASSWORD.to_string());
    d.env.push(("SNAPFS_FROM_PASSWORD".into(), PASSWORD.into()));
    d
}

fn copy_json(dst: &Snapfs, src: &Snapfs, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["copy", "--json", "--from-repo", src.repo.to_str().unwrap()];
    args.extend(extra);
    parse_json_object(&dst.ok(&args))
}

fn restores_like_source(dst: &Snapfs, src: &Snapfs, src_id: &str, dst_id: &str, base: &Path, name: &str) {
    let (a, b) = (base.join(format!("{name}-src")), base.join(format!("{name}-dst")));
    src.restore(src_id, &a, &[]);
    dst.restore(dst_id, &b, &[]);
    sh("diff", &["-r", "--no-dereference", a.to_str().unwrap(), b.to_str().unwrap()]);
}

#[test]
fn copy_between_unrelated_repositories_rewrites_trees_and_a_second_copy_adds_nothing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, ids) = source(&base);
    let dst = destination(base.join("dst"));
    dst.init();

    let v = copy_json(&dst, &src, &[]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["same_identity"], false, "{v}");
    assert!(num(&v, "trees_rewritten") > 0, "{v}");
    let dst_snaps = dst.snapshots(Vec::<String>::new());
    assert_eq!(dst_snaps.len(), 2);
    for s in &dst_snaps {
        let orig = s["original"].as_str().unwrap_or_else(|| panic!("no original in {s}"));
        assert!(ids.contains(&orig.to_string()), "original {orig} names no source snapshot");
        assert!(!ids.contains(&s["id"].as_str().unwrap().to_string()));
    }
    for s in &dst_snaps {
        let orig = s["original"].as_str().unwrap();
        restores_like_source(&dst, &src, orig, s["id"].as_str().unwrap(), &base, &orig[..8]);
    }
    dst.ok(["check", "--read-data"]);

    let packs = files_under(&dst.repo.join("packs"));
    let v = copy_json(&dst, &src, &[]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["already_present"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(num(&v, "blobs_read"), 0, "{v}");
    assert_eq!(files_under(&dst.repo.join("packs")), packs, "a second copy wrote packs");
    assert_eq!(dst.snapshots(Vec::<String>::new()).len(), 2);
}

#[test]
fn copy_chunker_params_shares_ids_so_blobs_move_as_they_are_and_dedup_across() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, ids) = source(&base);
    let dst = destination(base.join("dst"));
    dst.ok(["init", "--copy-chunker-params", "--from-repo", src.repo.to_str().unwrap()]);
    // Its own password: the source's does not open it.
    let mut wrong = destination(base.join("dst"));
    wrong.password = Some(PASSWORD.into());
    assert_eq!(wrong.run(["snapshots"]).status.code(), Some(12));

    let v = copy_json(&dst, &src, &[&ids[0][..12]]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["same_identity"], true, "{v}");
    assert_eq!(num(&v, "trees_rewritten"), 0, "{v}");
    let copied = dst.snapshots(Vec::<String>::new());
    let src_first = src.snapshots(Vec::<String>::new()).into_iter().find(|s| s["id"] == ids[0].as_str()).unwrap();
    assert_eq!(copied[0]["tree"], src_first["tree"], "shared identity keeps the tree id");

    // The second snapshot shares most data with the first: only what is new moves.
    let v2 = copy_json(&dst, &src, &[]);
    assert_eq!(v2["copied"].as_array().unwrap().len(), 1, "{v2}");
    assert_eq!(v2["already_present"].as_array().unwrap().len(), 1, "{v2}");
    assert!(num(&v2, "blobs_added") < num(&v, "blobs_added"), "{v} then {v2}");
    for s in dst.snapshots(Vec::<String>::new()) {
        let orig = s["original"].as_str().unwrap();
        restores_like_source(&dst, &src, orig, s["id"].as_str().unwrap(), &base, &orig[..8]);
    }
    dst.ok(["check", "--read-data"]);

    // Chunk boundaries and ids are the source's: backing up the same files adds no data.
    let b = dst.backup_json([base.join("data").to_str().unwrap()]);
    assert_eq!(num(&b, "data_blobs_added"), 0, "{b}");
    let packs = files_under(&dst.repo.join("packs"));
    let v3 = copy_json(&dst, &src, &[]);
    assert_eq!(v3["copied"].as_array().unwrap().len(), 0, "{v3}");
    assert_eq!(files_under(&dst.repo.join("packs")), packs);
}

#[test]
fn filters_choose_what_is_copied_and_the_parent_follows() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, ids) = source(&base);
    let dst = destination(base.join("dst"));
    dst.init();
    let v = copy_json(&dst, &src, &["--host", "h2"]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["copied"][0]["source"], ids[1].as_str());
    let v = copy_json(&dst, &src, &["--tag", "one"]);
    assert_eq!(v["copied"][0]["source"], ids[0].as_str(), "{v}");
    assert_eq!(dst.snapshots(["--tag", "two"]).len(), 1);
    assert_eq!(dst.snapshots(["--host", "h1"]).len(), 1);
}

#[test]
fn a_wrong_source_password_is_one_line_exit_12_and_writes_nothing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, _) = source(&base);
    let mut dst = destination(base.join("dst"));
    dst.init();
    dst.env.retain(|(k, _)| k != "SNAPFS_FROM_PASSWORD");
    let pwfile = base.join("wrong");
    fs::write(&pwfile, "not the password\n").unwrap();
    let out =
        dst.run(["copy", "--from-repo", src.repo.to_str().unwrap(), "--from-password-file", pwfile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(12), "{}", describe("copy with a wrong source password", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("source repository") && line.contains("wrong password"), "{line}");
    assert_eq!(stderr_of(&out).lines().count(), 1, "{}", stderr_of(&out));
    for dir in ["packs", "snapshots", "locks"] {
        assert!(files_under(&dst.repo.join(dir)).is_empty(), "{dir} written");
    }

    // init --copy-chunker-params with a wrong source password creates no repository.
    let fresh = base.join("fresh");
    let out = destination(fresh.clone()).run([
        "init",
        "--copy-chunker-params",
        "--from-repo",
        src.repo.to_str().unwrap(),
        "--from-password-file",
        pwfile.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(12), "{}", describe("init with a wrong source password", &out));
    assert!(!fresh.join("config").exists());
}

#[test]
fn a_damaged_source_blob_stops_the_copy_before_any_snapshot_is_written() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, _) = source(&base);
    // The largest pack holds the 3 MiB file's chunks; a byte in its middle is inside a blob.
    let pack = files_under(&src.repo.join("packs")).into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&pack, bytes).unwrap();
    for related in [false, true] {
        let dst = destination(base.join(format!("dst-{related}")));
        if related {
            dst.ok(["init", "--copy-chunker-params", "--from-repo", src.repo.to_str().unwrap()]);
        } else {
            dst.init();
        }
        let out = dst.run(["copy", "--from-repo", src.repo.to_str().unwrap()]);
        assert!(!out.status.success(), "{}", describe("copy of a damaged source", &out));
        let line = assert_error_line(&out);
        assert!(line.contains("authentication failed") && line.contains("source repository"), "{line}");
        assert!(files_under(&dst.repo.join("snapshots")).is_empty(), "a snapshot was written");
    }
}
