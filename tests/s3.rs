//! Repositories on S3-compatible storage, on a real 3-node Garage cluster (replication factor
//! 3) on loopback, through the real binary. Each test has its own bucket.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::garage::{self, Garage};
use common::*;
use snapfs::backend::{Backend, Kind, S3Backend};

fn client(g: &Garage, url: &str, cache: &Path) -> Snapfs {
    g.client(url, cache)
}

/// Files of several kinds and sizes (a few MiB in all: the tests stay quick).
fn small_tree(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    write_random(&root.join("big.bin"), 3 * MIB + 123, &mut rng);
    write_random(&root.join("sub/medium.bin"), 300 * KIB + 5, &mut rng);
    std::fs::write(root.join("sub/deeper/text.txt"), text_bytes(200_000, &mut rng)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("name with spaces"), b"spaces").unwrap();
    std::os::unix::fs::symlink("sub/medium.bin", root.join("link")).unwrap();
    std::fs::hard_link(root.join("empty"), root.join("sub/hardlink")).unwrap();
}

fn bytes_added(v: &serde_json::Value) -> u64 {
    num(v, "bytes_added")
}

#[test]
fn roundtrip_dedup_and_check_read_data() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(0, &format!("{}/some/prefix", g.bucket("roundtrip")));
    let s = client(g, &url, &base.join("cache"));
    let out = s.init();
    assert!(out.contains(&url), "init names the location: {out}");

    let src = base.join("src");
    small_tree(&src, 1);
    let first = s.backup_json([&src]);
    assert!(bytes_added(&first) > 3 * MIB, "the first backup stores the data: {first}");
    let second = s.backup_json(["--force".as_ref(), src.as_os_str()]);
    assert_eq!(num(&second, "data_blobs_added"), 0, "a second backup adds no data: {second}");
    assert_eq!(s.snapshot_ids(Vec::<&str>::new()).len(), 2);

    let target = base.join("restore");
    s.restore("latest", &target, &[]);
    assert_same_tree(&src, &restored(&target, &src));
    s.ok(["check", "--read-data"]);

    // The same repository through another node reads the same (replication factor 3).
    let other = client(g, &g.url(2, &format!("{}/some/prefix", url.rsplit('/').nth(2).unwrap())), &base.join("c2"));
    assert_eq!(other.snapshot_ids(Vec::<&str>::new()), s.snapshot_ids(Vec::<&str>::new()));
}

#[test]
fn write_never_replaces_an_object() {
    let Some(g) = garage::cluster() else { return };
    let url = g.url(0, &g.bucket("noreplace"));
    let b = S3Backend::with_credentials(&url, &g.key_id, &g.secret, "garage").unwrap();
    b.write(Kind::Lock, "aa", b"first").unwrap();
    let e = b.write(Kind::Lock, "aa", b"second").unwrap_err();
    assert!(
        matches!(&e, snapfs::Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::AlreadyExists),
        "a second write of one name fails with AlreadyExists: {e}"
    );
    assert_eq!(b.read(Kind::Lock, "aa").unwrap(), b"first");
    let missing = b.read(Kind::Lock, "bb").unwrap_err();
    assert!(snapfs::backend::is_not_found(&missing), "{missing}");
    let mut buf = [0u8; 3];
    b.read_at(Kind::Lock, "aa", 1, &mut buf).unwrap();
    assert_eq!(&buf, b"irs");
    let mut long = [0u8; 10];
    assert!(b.read_at(Kind::Lock, "aa", 0, &mut long).is_err(), "reading past the end is an error");
    b.replace(Kind::Lock, "aa", b"third").unwrap();
    assert_eq!(b.read(Kind::Lock, "aa").unwrap(), b"third");
    assert!(snapfs::backend::is_not_found(&b.replace(Kind::Lock, "zz", b"x").unwrap_err()));
    let pack = "ab".repeat(32);
    b.write(Kind::Pack, &pack, b"pack").unwrap();
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(pack.clone(), 4)]);
    assert_eq!(b.list(Kind::Lock).unwrap(), vec![("aa".to_string(), 5)]);
    b.delete(Kind::Pack, &pack).unwrap();
    b.delete(Kind::Pack, &pack).unwrap();
    assert!(b.list(Kind::Pack).unwrap().is_empty());
}

#[test]
fn two_clients_back_up_concurrently_and_dedup_against_each_other() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let bucket = g.bucket("twoclients");
    let a = client(g, &g.url(0, &bucket), &base.join("cache-a"));
    let b = client(g, &g.url(1, &bucket), &base.join("cache-b"));
    a.init();
    let (src_a, src_b) = (base.join("a"), base.join("b"));
    small_tree(&src_a, 10);
    small_tree(&src_b, 20);
    let spawn = |c: &Snapfs, src: &Path| {
        let mut cmd = c.command();
        cmd.args(["backup", "--json"]).arg(src).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (pa, pb) = (spawn(&a, &src_a), spawn(&b, &src_b));
    for (name, p) in [("a", pa), ("b", pb)] {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe(&format!("concurrent backup {name}"), &out));
    }
    let ids_a = a.snapshot_ids(Vec::<&str>::new());
    assert_eq!(ids_a.len(), 2, "both snapshots landed");
    assert_eq!(ids_a, b.snapshot_ids(Vec::<&str>::new()), "each client sees the other's snapshot");

    // Client b backs up a's data: it finds a's packs at its catch-up and adds nothing.
    let again = b.backup_json([&src_a]);
    assert_eq!(num(&again, "data_blobs_added"), 0, "b deduplicates against a's data: {again}");
    let target = base.join("restore");
    b.restore("latest", &target, &[]);
    assert_same_tree(&src_a, &restored(&target, &src_a));
    a.ok(["check", "--read-data"]);
}

#[test]
fn a_killed_backup_leaves_a_valid_repository() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(0, &g.bucket("killed"));
    let s = client(g, &url, &base.join("cache"));
    s.init();
    let src = base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(7);
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 5 * MIB, &mut rng);
    }
    let mut child = g.backup_under_way(&s, &url, &src);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the backup was killed before it finished");
    assert!(s.snapshot_ids(Vec::<&str>::new()).is_empty(), "a killed backup saves no snapshot");

    s.ok(["check", "--read-data"]);
    s.backup([&src]);
    let target = base.join("restore");
    s.restore("latest", &target, &[]);
    assert_same_contents(&src, &restored(&target, &src));
    s.ok(["check", "--read-data"]);
}

/// A port with nothing listening on it.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a command expected to fail; returns its one error line after checking the exit code.
fn fails(s: &Snapfs, args: &[&str], code: i32) -> String {
    let out = s.run(args);
    assert_eq!(out.status.code(), Some(code), "{}", describe(&format!("snapfs {args:?}"), &out));
    let line = assert_error_line(&out);
    assert_eq!(stderr_of(&out).lines().count(), 1, "{}", describe("one line on stderr", &out));
    line
}

#[test]
fn a_dead_endpoint_fails_quickly_with_one_line() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let port = dead_port();
    let url = format!("s3:http://127.0.0.1:{port}/bucket");
    let s = client(g, &url, &tmp.path().join("cache"));
    for args in [&["snapshots"][..], &["init"][..], &["backup", "/etc/hostname"][..]] {
        let start = Instant::now();
        let line = fails(&s, args, 1);
        assert!(start.elapsed() < Duration::from_secs(30), "{args:?} took {:?}", start.elapsed());
        assert!(line.contains(&format!("127.0.0.1:{port}")) && line.contains("failed 6 tries"), "{line}");
    }
}

#[test]
fn bad_locations_and_credentials_say_which() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let bucket = g.bucket("badinput");
    let real = client(g, &g.url(0, &format!("{bucket}/repo")), &cache);
    real.init();

    let missing = client(g, &g.url(0, "no-such-bucket-here"), &cache);
    let line = fails(&missing, &["snapshots"], 1);
    assert!(line.contains("bucket does not exist") && line.contains("no-such-bucket-here"), "{line}");

    let mut wrong = client(g, &g.url(0, &format!("{bucket}/repo")), &cache);
    wrong.env.push(("AWS_SECRET_ACCESS_KEY".into(), "0".repeat(64).into()));
    let line = fails(&wrong, &["snapshots"], 1);
    assert!(line.contains("access denied") && line.contains("AWS_SECRET_ACCESS_KEY"), "{line}");

    let mut unknown = client(g, &g.url(0, &format!("{bucket}/repo")), &cache);
    unknown.env.push(("AWS_ACCESS_KEY_ID".into(), "GK0123456789abcdef01234567".into()));
    let line = fails(&unknown, &["snapshots"], 1);
    assert!(line.contains("access denied"), "{line}");

    let no_bucket = client(g, &format!("s3:http://127.0.0.1:{}", g.s3_ports[0]), &cache);
    let line = fails(&no_bucket, &["snapshots"], 1);
    assert!(line.contains("no bucket"), "{line}");

    let not_repo = client(g, &g.url(0, &format!("{bucket}/elsewhere")), &cache);
    let line = fails(&not_repo, &["snapshots"], 10);
    assert!(line.contains("no snapfs repository") && line.contains("/elsewhere"), "{line}");

    // A prefix that holds objects already is no place for a new repository.
    let line = fails(&client(g, &g.url(0, &bucket), &cache), &["init"], 1);
    assert!(line.contains("not empty"), "{line}");
    let line = fails(&real, &["init"], 1);
    assert!(line.contains("not empty"), "{line}");
    real.ok(["check"]);
}

#[test]
fn listing_pages_past_1000_keys() {
    let Some(g) = garage::cluster() else { return };
    let url = g.url(1, &format!("{}/p", g.bucket("pages")));
    let b = S3Backend::with_credentials(&url, &g.key_id, &g.secret, "garage").unwrap();
    // S3 lists at most 1000 keys a page: 2100 need three LISTs, which must all be followed.
    let names: Vec<String> = (0..2100).map(|i| format!("{i:032x}")).collect();
    std::thread::scope(|s| {
        for part in names.chunks(2100 / 6) {
            let b = &b;
            s.spawn(move || part.iter().for_each(|n| b.write(Kind::Lock, n, n.as_bytes()).unwrap()));
        }
    });
    let mut listed = b.list(Kind::Lock).unwrap();
    listed.sort();
    assert_eq!(listed, names.iter().map(|n| (n.clone(), 32)).collect::<Vec<_>>());
}
