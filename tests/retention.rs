//! `forget` and `prune` as users run them: restic's policies and output shapes, space that
//! really comes back, and bad input refused with one line.

mod common;
use common::*;
use std::fs;
use std::path::Path;

/// Six daily snapshots of a tree where one file is replaced every day and one stays.
fn history(base: &Path) -> (Snapfs, std::path::PathBuf, Vec<String>) {
    let data = base.join("data");
    fs::create_dir_all(&data).unwrap();
    let mut rng = Rng::new(7);
    write_random(&data.join("stays"), 2_000_000, &mut rng);
    let s = Snapfs::new(base.join("repo"));
    s.init();
    let mut ids = Vec::new();
    for day in 1..=6 {
        write_random(&data.join("daily"), 3_000_000, &mut rng);
        let tag = if day == 2 { "keep" } else { "daily" };
        let time = format!("2026-11-0{day}T12:00:00Z");
        ids.push(s.backup(["--time", &time, "--tag", tag, data.to_str().unwrap()]));
    }
    (s, data, ids)
}

#[test]
fn forget_keeps_what_the_policy_says_and_prune_returns_the_space() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (s, data, ids) = history(&base);
    let before = dir_size(&s.repo.join("packs"));

    // A dry run names what goes and why the rest stays, and removes nothing.
    let out = s.ok(["forget", "--keep-last", "2", "--keep-tag", "keep", "--dry-run"]);
    assert!(out.contains("keep 3 snapshots") && out.contains("remove 3 snapshots"), "{out}");
    assert!(out.contains("last snapshot") && out.contains("has tags [keep]"), "{out}");
    assert!(out.contains("would remove 3 snapshots"), "{out}");
    assert_eq!(s.snapshots(Vec::<&str>::new()).len(), 6);

    // restic's JSON shape: groups with host, paths, tags, keep, remove, reasons.
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(["forget", "--keep-last", "2", "--keep-tag", "keep", "--dry-run", "--json"]))
            .unwrap();
    let group = &json[0];
    assert_eq!(group["host"], this_hostname());
    assert_eq!(group["paths"][0], data.to_str().unwrap());
    assert!(group["tags"].is_null(), "not grouped by tags: {group}");
    assert_eq!(group["keep"].as_array().unwrap().len(), 3);
    assert_eq!(group["remove"].as_array().unwrap().len(), 3);
    assert_eq!(group["reasons"][0]["matches"][0], "last snapshot");
    assert_eq!(group["reasons"][0]["snapshot"]["id"], ids[5].as_str());

    let out = s.ok(["forget", "--keep-last", "2", "--keep-tag", "keep"]);
    assert!(out.contains("removed 3 snapshots"), "{out}");
    let left: Vec<String> = s.snapshot_ids(Vec::<&str>::new());
    let mut want = vec![ids[1].clone(), ids[4].clone(), ids[5].clone()];
    want.sort();
    assert_eq!(left, want);

    let plan: serde_json::Value = serde_json::from_str(&s.ok(["prune", "--dry-run", "--json"])).unwrap();
    assert!(plan["delete_packs"].as_u64().unwrap() >= 1, "{plan}");
    assert_eq!(dir_size(&s.repo.join("packs")), before, "a dry run deleted something");
    let done: serde_json::Value = serde_json::from_str(&s.ok(["prune", "--json"])).unwrap();
    assert_eq!(done["deleted_packs"], plan["delete_packs"].as_u64().unwrap() + plan["repack_packs"].as_u64().unwrap());
    let after = dir_size(&s.repo.join("packs"));
    // Three of six 3 MB files went: about 9 MB of ~20.
    assert!(after + 8_000_000 < before, "prune freed only {} of {before} bytes", before - after);
    s.ok(["check", "--read-data"]);
    for id in &left {
        let target = base.join(format!("r-{}", &id[..8]));
        s.restore(id, &target, &[]);
        assert!(restored(&target, &data).join("stays").is_file());
    }
    // Nothing left to do: a second prune deletes nothing.
    let again: serde_json::Value = serde_json::from_str(&s.ok(["prune", "--json"])).unwrap();
    assert_eq!(again["deleted_packs"], 0, "{again}");
}

#[test]
fn forget_by_id_and_forget_prune() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (s, _, ids) = history(&base);
    let out = s.ok(["forget", &ids[0][..8], &ids[1][..10], "--prune"]);
    assert!(out.contains("removed 2 snapshots") && out.contains("deleted"), "{out}");
    assert_eq!(s.snapshots(Vec::<&str>::new()).len(), 4);
    s.ok(["check", "--read-data"]);
}

#[test]
fn bad_policies_and_names_are_one_line_errors_that_remove_nothing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (s, _, ids) = history(&base);
    let cases: &[(&[&str], &str)] = &[
        (&["forget"], "no policy"),
        (&["forget", "--keep-within", "7x"], "unknown unit"),
        (&["forget", "--keep-daily", "-2"], "negative values other than -1"),
        (&["forget", "--keep-tag", "nosuchtag"], "keeps none"),
        (&["forget", "deadbeef"], "no snapshot matches"),
        (&["forget", "--keep-last", "1", &ids[0][..8]], "not both"),
        (&["forget", "--keep-last", "1", "--group-by", "colour"], "unknown --group-by"),
        (&["prune", "--max-unused", "150%"], "between 0% and 100%"),
        (&["prune", "--max-repack-size", "lots"], "bad size"),
    ];
    for (args, want) in cases {
        let out = s.run(*args);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&format!("{args:?}"), &out));
        let line = assert_error_line(&out);
        assert!(line.contains(want), "{args:?}: {line}");
    }
    assert_eq!(s.snapshots(Vec::<&str>::new()).len(), 6, "a refused forget removed something");
}

#[test]
fn prune_waits_for_a_backup_that_started_before_it_and_another_prune_is_refused() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (s, _, ids) = history(&base);
    // A backup "running" on another machine since before the prune: a live shared lock.
    let started = String::from_utf8(sh("date", &["-u", "-d", "-1 min", "+%Y-%m-%dT%H:%M:%SZ"])).unwrap();
    let expires = String::from_utf8(sh("date", &["-u", "-d", "+29 min", "+%Y-%m-%dT%H:%M:%SZ"])).unwrap();
    fs::create_dir_all(s.repo.join("locks")).unwrap();
    let lock = s.repo.join("locks").join("0123456789abcdef0123456789abcdef");
    let text = format!(
        "host=other.example\npid=1\ntime={}\nexpires={}\nstarted={}\nexclusive=false\ncommand=backup\n",
        started.trim(),
        expires.trim(),
        started.trim()
    );
    fs::write(&lock, text).unwrap();
    s.ok(["forget", &ids[0][..8], &ids[2][..8]]);
    let packs_before = files_under(&s.repo.join("packs"));
    let out: serde_json::Value = serde_json::from_str(&s.ok(["prune", "--json"])).unwrap();
    assert_eq!(out["deleted_packs"], 0, "deleted under a backup that may use them: {out}");
    assert!(out["waiting_packs"].as_u64().unwrap() > 0, "{out}");
    assert!(out["waiting_for"][0].as_str().unwrap().contains("other.example"), "{out}");
    // Repacking may have written new packs; none of the old ones is gone.
    assert!(packs_before.iter().all(|p| p.is_file()), "a pack went while a backup might use it");
    let packs = dir_size(&s.repo.join("packs"));
    // Backups and restores work meanwhile, and check is clean.
    s.ok(["check", "--read-data"]);

    // Another prune at the same time is refused: a prune lock is held.
    let holder = s.repo.join("locks").join("fedcba9876543210fedcba9876543210");
    fs::write(&holder, fs::read_to_string(&lock).unwrap().replace("exclusive=false", "exclusive=false\nprune=true"))
        .unwrap();
    let out = s.run(["prune"]);
    assert_eq!(out.status.code(), Some(11), "{}", describe("prune beside a prune", &out));
    fs::remove_file(&holder).unwrap();

    // Once that backup is gone, the next prune deletes them.
    fs::remove_file(&lock).unwrap();
    let out: serde_json::Value = serde_json::from_str(&s.ok(["prune", "--json"])).unwrap();
    assert!(out["deleted_packs"].as_u64().unwrap() > 0, "{out}");
    assert!(dir_size(&s.repo.join("packs")) < packs);
    s.ok(["check", "--read-data"]);
}

#[test]
fn snapshots_with_a_policy_show_why_each_is_kept_and_when_it_expires() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (s, _, ids) = history(&base);
    let mut c = s.command();
    c.args(["snapshots", "--keep-within", "2d", "--keep-last", "1", "--json"]).env("TZ", "UTC");
    let list: serde_json::Value = serde_json::from_str(&stdout_of(&run_cmd(&mut c))).unwrap();
    let by_id = |id: &str| list.as_array().unwrap().iter().find(|v| v["id"] == id).unwrap().clone();
    // Newest (day 6): kept by both rules, so no expiry; day 5 only by within 2d of day 6.
    assert_eq!(by_id(&ids[5])["keep_reasons"], serde_json::json!(["within 2d", "last snapshot"]));
    assert!(by_id(&ids[5])["expires"].is_null());
    assert_eq!(by_id(&ids[4])["keep_reasons"], serde_json::json!(["within 2d"]));
    assert_eq!(by_id(&ids[4])["expires"], "2026-11-07T12:00:00Z");
    assert_eq!(by_id(&ids[0])["keep_reasons"], serde_json::json!([]));
    let table = s.ok(["snapshots", "--keep-within", "2d"]);
    assert!(table.contains("expires") && table.contains("(removed by this policy)"), "{table}");
}

#[test]
fn show_with_a_policy_says_whether_and_why_a_snapshot_is_kept() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (s, _, ids) = history(&base);
    let mut c = s.command();
    c.args(["show", &ids[4][..8], "--keep-within", "2d"]).env("TZ", "UTC");
    let out = stdout_of(&run_cmd(&mut c));
    assert!(out.contains("kept: within 2d") && out.contains("expires      2026-11-07 12:00:00"), "{out}");
    let out = s.ok(["show", &ids[0][..8], "--keep-last", "1"]);
    assert!(out.contains("removed by this policy"), "{out}");
}
