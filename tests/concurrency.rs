//! Several writers on one repository at once, run as users run them: separate processes, some
//! sharing an index cache and some with their own, some backing up the same data.

mod common;
use common::*;
use std::fs;
use std::process::{Command, Stdio};

fn tree(dir: &std::path::Path, seed: u64, files: usize) {
    fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..files {
        write_random(&dir.join(format!("f{i}")), 200_000 + rng.below(1_500_000), &mut rng);
    }
}

#[test]
fn four_backups_started_together_all_land_and_check_clean() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (shared, own) = (base.join("shared"), base.join("own"));
    tree(&shared, 1, 12);
    tree(&own, 2, 6);
    let s = Snapfs::new(base.join("repo"));
    s.init();
    // Two back up the same tree; two of the four have caches of their own (another machine).
    let jobs: [(&std::path::Path, Option<&str>); 4] =
        [(&shared, None), (&shared, Some("cache-b")), (&own, None), (&own, Some("cache-d"))];
    let children: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(i, (path, cache))| {
            let mut c = s.command();
            c.args(["backup", "--tag", &format!("job{i}")]).arg(path).stdout(Stdio::piped()).stderr(Stdio::piped());
            if let Some(dir) = cache {
                c.env("SNAPFS_CACHE_DIR", base.join(dir));
            }
            c.spawn().unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe(&format!("backup {i}"), &out));
    }
    let snaps = s.snapshots(Vec::<&str>::new());
    assert_eq!(snaps.len(), 4);

    let clean = |label: &str| {
        let out = s.run(["check", "--read-data", "--json"]);
        let report = parse_json_object(&stdout_of(&out));
        assert_eq!(out.status.code(), Some(0), "{label}: {report}");
        assert!(report["problems"].as_array().unwrap().is_empty(), "{label}: {report}");
        assert!(report["index"]["problems"].as_array().unwrap().is_empty(), "{label}: {report}");
        report
    };
    let report = clean("after the backups");
    eprintln!("redundant blobs after 4 concurrent backups: {}", report["redundant_blobs"]);
    for snap in &snaps {
        let id = snap["id"].as_str().unwrap();
        let target = base.join(format!("restore-{}", &id[..8]));
        s.restore(id, &target, &[]);
        let path = std::path::PathBuf::from(snap["paths"][0].as_str().unwrap());
        let st = Command::new("diff").arg("-r").arg(&path).arg(restored(&target, &path)).status().unwrap();
        assert!(st.success(), "snapshot {id} does not restore exactly");
    }
    s.ok(["repair", "index"]);
    clean("after repair index");
    // And the caches of the other writers agree, once caught up.
    let mut c = s.command();
    c.args(["check", "--json"]).env("SNAPFS_CACHE_DIR", base.join("cache-b"));
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(0), "{}", describe("check with the second cache", &out));
}

#[test]
fn a_lost_cache_directory_costs_one_line_and_no_data() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let data = base.join("data");
    tree(&data, 3, 8);
    let s = Snapfs::new(base.join("repo"));
    s.init();
    s.backup([&data]);
    let packs = dir_size(&s.repo.join("packs"));
    fs::remove_dir_all(cache_dir(&s.repo)).unwrap();
    // Listing needs no index at all.
    let out = s.run(["snapshots"]);
    assert!(out.status.success() && stderr_of(&out).is_empty(), "{}", describe("snapshots", &out));
    let target = base.join("restore");
    let out = s.run(["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert!(out.status.success(), "{}", describe("restore without a cache", &out));
    let err = stderr_of(&out);
    assert!(err.starts_with("index: no cache for this repository yet;") && err.lines().count() == 1, "{err}");
    assert!(Command::new("diff").arg("-r").arg(&data).arg(restored(&target, &data)).status().unwrap().success());
    fs::remove_dir_all(cache_dir(&s.repo)).unwrap();
    let summary = s.backup_json(["--force".as_ref(), data.as_os_str()]);
    assert_eq!(summary["data_blobs_added"], 0, "{summary}");
    let grown = dir_size(&s.repo.join("packs")) - packs;
    assert!(grown * 1000 < packs, "a re-backup without a cache added {grown} of {packs} bytes");
    s.ok(["check", "--read-data"]);
}
