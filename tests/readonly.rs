//! An emergency restore from a write-protected disk: a repository on a read-only mount still
//! lists, restores, checks and mounts (without a lock, with a warning); a backup there fails
//! with one clear line.

mod common;
use common::*;
use std::fs;
use std::process::Command;

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_repository_still_restores_and_checks() {
    if !is_root_for_mounts() {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    write_random(&data.join("f"), 3_000_000, &mut Rng::new(3));
    let s = Snapfs::new(base.join("repo"));
    s.init();
    s.backup([&data]);
    // The same repository through a read-only bind mount.
    let ro = base.join("ro");
    fs::create_dir(&ro).unwrap();
    let ok = |args: &[&str]| Command::new("mount").args(args).status().unwrap().success();
    assert!(ok(&["--bind", s.repo.to_str().unwrap(), ro.to_str().unwrap()]));
    let _guard = Unmount(ro.clone());
    assert!(ok(&["-o", "remount,ro,bind", ro.to_str().unwrap()]));
    let r = Snapfs { repo: ro.clone(), ..Snapfs::new(&ro) };
    assert_eq!(r.snapshots(Vec::<&str>::new()).len(), 1);
    let target = base.join("out");
    let out = r.run(["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert!(out.status.success(), "{}", describe("restore from a read-only repository", &out));
    assert!(stderr_of(&out).contains("reading without a lock"), "{}", stderr_of(&out));
    assert_eq!(fs::read(restored(&target, &data).join("f")).unwrap(), fs::read(data.join("f")).unwrap());
    let out = r.run(["check", "--read-data"]);
    assert!(out.status.success(), "{}", describe("check of a read-only repository", &out));
    // A backup needs its lock and its packs: one line that says why.
    let out = r.run(["backup".as_ref(), data.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("backup into a read-only repository", &out));
    assert!(assert_error_line(&out).contains("Read-only file system"), "{}", stderr_of(&out));
}

/// Bind mounts need root; in CI the tests run as root and this must not be skipped.
fn is_root_for_mounts() -> bool {
    let root = String::from_utf8(sh("id", &["-u"])).unwrap().trim() == "0";
    assert!(root || std::env::var_os("CI").is_none(), "CI runs the tests as root");
    root
}
