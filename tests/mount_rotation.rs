//! A mount keeps serving exact data while `key rotate --rewrite` re-seals the repository
//! beside it, learns the new key epoch when a snapshot sealed under it appears, and holds back
//! the destruction of the old keys until it ends.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_mount_reads_exact_data_through_a_key_rotation() {
    if !fuse_available() {
        return;
    }
    let repo = TestRepo::new();
    let src = repo.subdir("src");
    let mut rng = Rng::new(7);
    let big = rng.bytes(6 << 20);
    fs::write(src.join("big"), &big).unwrap();
    fs::write(src.join("small"), b"before the rotation").unwrap();
    let s = src.to_str().unwrap();
    repo.ok(&["backup", s]);

    let m = repo.mount(&[]);
    assert_eq!(fs::read(m.latest(&src).join("big")).unwrap(), big);

    // The mount started before the rotation: its lock keeps the old keys and packs alive.
    let out = repo.run(&["key", "rotate", "--rewrite"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(repo.path.join("epochs/00000000").exists());
    assert_eq!(fs::read(m.latest(&src).join("big")).unwrap(), big, "the mount reads exact data after the rewrite");

    // A snapshot sealed under the new epoch: the mount learns the epoch when it sees it.
    fs::write(src.join("small"), b"after the rotation").unwrap();
    repo.ok(&["backup", s]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_dir(m.mp.join("snapshots")).unwrap().count() < 3 {
        assert!(Instant::now() < deadline, "the new snapshot did not appear in the mount");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fs::read(m.latest(&src).join("small")).unwrap(), b"after the rotation");
    assert_eq!(fs::read(m.latest(&src).join("big")).unwrap(), big);
    drop(m);

    // With the mount gone, the rotation finishes and the repository reads under the new keys only.
    repo.ok(&["key", "rotate", "--rewrite"]);
    assert_eq!(fs::read_dir(repo.path.join("epochs")).unwrap().count(), 1);
    let m = repo.mount(&[]);
    assert_eq!(fs::read(m.latest(&src).join("big")).unwrap(), big);
    assert_eq!(fs::read(m.latest(&src).join("small")).unwrap(), b"after the rotation");
    drop(m);
    repo.ok(&["check", "--read-data"]);
}
