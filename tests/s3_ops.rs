//! More of what works on a repository in S3, on the real 3-node Garage cluster: mount,
//! forget and prune, copy both ways between a local and an S3 repository, and the network
//! failing under the client (an address that never answers, connections reset mid-transfer).

mod common;
#[allow(unused)]
mod support;

use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::garage;
use common::*;

/// Files big enough to span several chunks and packs, and small ones beside them.
fn tree(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    write_random(&root.join("big.bin"), 5 * MIB + 17, &mut rng);
    for i in 0..20 {
        std::fs::write(root.join(format!("sub/s{i}")), rng.bytes(3000 + i * 100)).unwrap();
    }
    std::fs::write(root.join("text.txt"), text_bytes(300_000, &mut rng)).unwrap();
}

#[test]
fn mount_reads_files_and_ranges_from_the_bucket() {
    let Some(g) = garage::cluster() else { return };
    if !support::fuse_available() {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(0, &g.bucket("mount"));
    let s = g.client(&url, &base.join("cache"));
    s.init();
    let src = base.join("src");
    tree(&src, 21);
    s.backup([&src]);

    let mp = base.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let mut child = s.command().arg("mount").arg(&mp).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while !(support::is_mounted(&mp) && mp.join("snapshots").is_dir()) {
        assert!(start.elapsed() < Duration::from_secs(30), "the mount did not come up");
        assert!(child.try_wait().unwrap().is_none(), "snapfs mount exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = mp.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let result = std::panic::catch_unwind(|| {
        assert_same_contents(&src, &seen);
        // A range in the middle of the big file, across a chunk boundary or two.
        let want = std::fs::read(src.join("big.bin")).unwrap();
        let f = std::fs::File::open(seen.join("big.bin")).unwrap();
        let mut got = vec![0u8; 1_500_000];
        f.read_exact_at(&mut got, 2_000_001).unwrap();
        assert!(got == want[2_000_001..3_500_001], "a ranged read returns the file's bytes");
    });
    let _ = std::process::Command::new("fusermount3").arg("-u").arg(&mp).status();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn forget_and_prune_on_s3_keep_what_is_left_restorable() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(1, &g.bucket("prune"));
    let s = g.client(&url, &base.join("cache"));
    s.init();
    let (a, b) = (base.join("a"), base.join("b"));
    tree(&a, 31);
    tree(&b, 32);
    let first = s.backup([&a]);
    s.backup([&b]);
    s.ok(["forget", first.as_str()]);
    s.ok(["prune"]);
    assert_eq!(s.snapshot_ids(Vec::<&str>::new()).len(), 1);
    s.ok(["check", "--read-data"]);
    let target = base.join("restore");
    s.restore("latest", &target, &[]);
    assert_same_contents(&b, &restored(&target, &b));
}

#[test]
fn copy_from_local_to_s3_and_back() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    tree(&src, 41);
    let local = Snapfs::new(base.join("local"));
    local.init();
    local.backup([&src]);

    let url = g.url(2, &g.bucket("copy"));
    let mut remote = g.client(&url, &base.join("cache"));
    remote.env.push(("SNAPFS_FROM_PASSWORD".into(), PASSWORD.into()));
    remote.init();
    remote.ok(["copy", "--from-repo", local.repo.to_str().unwrap()]);
    remote.ok(["check", "--read-data"]);

    let mut back = Snapfs::new(base.join("back"));
    back.env = g.env();
    back.env.push(("SNAPFS_FROM_PASSWORD".into(), PASSWORD.into()));
    back.init();
    back.ok(["copy", "--from-repo", &url]);
    for (name, repo) in [("remote", &remote), ("back", &back)] {
        let target = base.join(name);
        repo.restore("latest", &target, &[]);
        assert_same_contents(&src, &restored(&target, &src));
    }
}

/// An address that never answers: a listener whose accept queue is full drops new SYNs, so a
/// connect waits as it would for a blackholed host (no refusal, no reset).
fn blackhole() -> (u16, Vec<TcpStream>) {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut l = len;
        libc::getsockname(fd, &mut got as *mut _ as *mut libc::sockaddr, &mut l);
        let port = u16::from_be(got.sin_port);
        // Fill the queue (never accepted); a connect that does not finish at once means full.
        let mut held = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)) {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
        // The listener stays open (never accepted from) until the test process exits.
        (port, held)
    }
}

#[test]
fn an_address_that_never_answers_fails_in_seconds_with_one_line() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let (port, _held) = blackhole();
    let s = g.client(&format!("s3:http://127.0.0.1:{port}/bucket"), &tmp.path().join("cache"));
    let start = Instant::now();
    let out = s.run(["snapshots"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe("snapshots", &out));
    let line = assert_error_line(&out);
    assert!(line.contains(&format!("127.0.0.1:{port}")) && line.contains("failed 6 tries"), "{line}");
    assert!(took < Duration::from_secs(40), "a connect timeout bounds each try: took {took:?}");
}

#[test]
fn connections_reset_mid_upload_are_retried_and_a_dead_proxy_fails_cleanly() {
    let Some(g) = garage::cluster() else { return };
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let bucket = g.bucket("proxy");
    let direct = g.client(&g.url(0, &bucket), &base.join("cache"));
    direct.init();
    let src = base.join("src");
    tree(&src, 51);

    // Every third connection is cut 100 KiB into its request: retries carry the backup through.
    let flaky = garage::proxy(g.s3_ports[0], None, |k| (k % 3 == 2).then_some(100 << 10));
    let s = g.client(&format!("s3:http://127.0.0.1:{flaky}/{bucket}"), &base.join("cache"));
    s.backup([&src]);

    // Every connection cut once its request starts: the retries run out, with one clear line.
    let dead = garage::proxy(g.s3_ports[0], None, |_| Some(1));
    let s = g.client(&format!("s3:http://127.0.0.1:{dead}/{bucket}"), &base.join("cache2"));
    let out = s.run(["backup".as_ref(), src.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("backup through a dead proxy", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("failed 6 tries"), "{line}");

    // Nothing half-written: one snapshot, every object whole.
    assert_eq!(direct.snapshot_ids(Vec::<&str>::new()).len(), 1);
    direct.ok(["check", "--read-data"]);
    let target = base.join("restore");
    direct.restore("latest", &target, &[]);
    assert_same_contents(&src, &restored(&target, &src));
}
