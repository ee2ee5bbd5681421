//! `snapfs tag`: a changed snapshot is a new object that names the old one as its original,
//! and the old object is gone.

mod common;
use common::*;
use std::fs;

#[test]
fn tag_rewrites_the_snapshot_and_records_the_original() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let repo = base.join("repo");
    let s = Snapfs::new(&repo);
    s.init();
    let data = base.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"tagged").unwrap();
    let id0 = s.backup([std::ffi::OsStr::new("--tag"), "a,b".as_ref(), data.as_os_str()]);
    let none: [&str; 0] = [];

    let out = s.ok(["tag", "--add", "c", "--remove", "a", &id0[..8]]);
    let list = s.snapshots(none);
    assert_eq!(list.len(), 1, "{list:?}");
    let id1 = list[0]["id"].as_str().unwrap().to_string();
    assert_ne!(id1, id0);
    assert_eq!(out.trim(), format!("snapshot {} saved as {} (tags: b,c)", &id0[..8], &id1[..8]));
    assert_eq!(list[0]["tags"], serde_json::json!(["b", "c"]));
    assert_eq!(list[0]["original"], id0.as_str());
    assert!(!repo.join("snapshots").join(&id0).exists(), "the old snapshot object is still there");
    assert!(repo.join("snapshots").join(&id1).is_file());

    // A second rewrite keeps the first original; an empty change writes nothing.
    let v: serde_json::Value = serde_json::from_str(s.ok(["tag", "--json", "--set", "x", "latest"]).trim()).unwrap();
    let id2 = v[0]["new"].as_str().unwrap().to_string();
    assert_eq!((v[0]["old"].as_str(), v[0]["changed"].as_bool()), (Some(&*id1), Some(true)));
    let shown: serde_json::Value = serde_json::from_str(s.ok(["show", "--json", "latest"]).trim()).unwrap();
    assert_eq!((shown["id"].as_str(), shown["original"].as_str()), (Some(&*id2), Some(&*id0)));
    assert_eq!(shown["tags"], serde_json::json!(["x"]));
    assert_eq!(s.ok(["tag", "--add", "x", "latest"]).trim(), format!("snapshot {} unchanged", &id2[..8]));
    assert_eq!(s.snapshot_ids(none), [id2.as_str()]);

    s.ok(["tag", "--description", "kept for the audit", "--tag", "x", "latest"]);
    let shown: serde_json::Value = serde_json::from_str(s.ok(["show", "--json", "latest"]).trim()).unwrap();
    assert_eq!(shown["description"], "kept for the audit");
    assert_eq!(shown["original"], id0.as_str());
    // The data is all still reachable.
    assert!(s.ok(["ls", "latest"]).lines().any(|l| l.ends_with("/data/f")));
    s.ok(["check"]);

    let out = s.run(["tag", "latest"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(assert_error_line(&out).contains("nothing to change"));
}
