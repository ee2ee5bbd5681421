//! Garage nodes failing under a backup. This binary starts its own 3-node cluster, since it
//! kills nodes, which the other S3 tests must not see.

mod common;

use std::time::{Duration, Instant};

use common::garage::{self, Garage};
use common::*;

#[test]
fn one_node_down_mid_backup_is_survived_two_down_fail_cleanly() {
    if !garage::available() {
        return;
    }
    let g = Garage::start(3);
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(0, &g.bucket("nodes"));
    let s = g.client(&url, &base.join("cache"));
    s.init();

    let src = base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(3);
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 5 * MIB, &mut rng);
    }
    let child = g.backup_under_way(&s, &url, &src);
    // Node 3 dies mid-upload: two of three replicas are still a write quorum.
    g.kill(2);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe("backup with one node killed mid-upload", &out));
    s.ok(["check", "--read-data"]);
    let target = base.join("restore");
    s.restore("latest", &target, &[]);
    assert_same_contents(&src, &restored(&target, &src));

    // With two of three down there is no quorum: a clear error, no snapshot.
    g.kill(1);
    write_random(&src.join("more"), MIB, &mut rng);
    let begun = Instant::now();
    let out = s.run(["backup".as_ref(), src.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("backup with two nodes down", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("failed 6 tries") && line.contains(&url[3..]), "{line}");
    assert!(begun.elapsed() < Duration::from_secs(60), "gave up after {:?}", begun.elapsed());

    // Back up again: the repository is as valid as before, with the one snapshot.
    g.restart(1);
    g.restart(2);
    g.wait_healthy();
    assert_eq!(s.snapshot_ids(Vec::<&str>::new()).len(), 1);
    s.ok(["check", "--read-data"]);
    s.backup([&src]);
    s.ok(["check", "--read-data"]);
}
