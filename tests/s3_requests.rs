//! Requests to object storage, counted by the real 3-node Garage cluster (its
//! `api_s3_request_counter`): `check --read-data` reads each pack in one request and no tree
//! twice. The counts are the cluster's, so these tests take turns.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::garage::{self, Garage};
use common::*;
use snapfs::backend::{Backend, Kind, S3Backend};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Directories that each hold a file larger than the gap a merged read bridges (256 KiB), so
/// that no two of their listings share a ranged read: each one read from the bucket is a GET.
const DIRS: usize = 60;

fn spread_tree(root: &Path) {
    let mut rng = Rng::new(17);
    for i in 0..DIRS {
        let dir = root.join(format!("group{}/dir{i}", i % 6));
        std::fs::create_dir_all(&dir).unwrap();
        write_random(&dir.join("blob.bin"), 300 * KIB + i as u64, &mut rng);
        std::fs::write(dir.join("note.txt"), format!("directory {i}\n")).unwrap();
    }
    // Enough for a few packs.
    write_random(&root.join("large.bin"), 24 * MIB, &mut rng);
}

/// GETs the cluster served while `f` ran.
fn gets(g: &Garage, f: impl FnOnce()) -> u64 {
    let before = g.requests("GetObject");
    f();
    g.requests("GetObject") - before
}

fn packs(g: &Garage, url: &str) -> u64 {
    let b = S3Backend::with_credentials(url, &g.key_id, &g.secret, "garage").unwrap();
    b.list(Kind::Pack).unwrap().len() as u64
}

struct Setup {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    url: String,
    src: PathBuf,
    s: Snapfs,
}

fn setup(g: &Garage, what: &str) -> Setup {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(0, &g.bucket(what));
    let s = g.client(&url, &base.join("cache"));
    s.init();
    let src = base.join("src");
    spread_tree(&src);
    s.backup([&src]);
    Setup { _tmp: tmp, base, url, src, s }
}

#[test]
fn check_read_data_reads_each_pack_once_and_no_tree_twice() {
    let Some(g) = garage::cluster() else { return };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = setup(g, "check-requests");
    let n = packs(g, &t.url);
    assert!(n >= 2, "the tree makes several packs: {n}");

    // Per pack: its header (the structure pass reads every header) and its content, one GET
    // each; a few more for the config, key slot, epoch and snapshot. A GET per tree or per
    // MiB window would be over DIRS more.
    let read_data = gets(g, || {
        t.s.ok(["check", "--read-data"]);
    });
    assert!(read_data <= 2 * n + 8, "check --read-data: {read_data} GETs for {n} packs and {DIRS} directories");

    // Without the data pass, the walk reads the trees itself, in merged ranged reads by batch:
    // listings that lie together (small directories) share them.
    // (A repository of its own: check walks every snapshot, and the one above spreads its
    // listings apart on purpose.)
    let compact = t.base.join("compact");
    for i in 0..200 {
        let dir = compact.join(format!("g{}/d{i}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), format!("{i}\n")).unwrap();
    }
    let url = g.url(0, &g.bucket("check-compact"));
    let c = g.client(&url, &t.base.join("cache-compact"));
    c.init();
    c.backup([&compact]);
    let n = packs(g, &url);
    let structure = gets(g, || {
        c.ok(["check"]);
    });
    assert!(structure <= n + 20, "check: {structure} GETs for {n} packs and 200 small directories");

    // Reading less than every pack still checks every tree: what the data pass did not read
    // the walk reads itself. Damage is still found through the bucket.
    t.s.ok(["check", "--read-data-subset", "1/2"]);
    let b = S3Backend::with_credentials(&t.url, &g.key_id, &g.secret, "garage").unwrap();
    let (name, size) = b.list(Kind::Pack).unwrap().into_iter().max_by_key(|(_, s)| *s).unwrap();
    let mut bytes = b.read(Kind::Pack, &name).unwrap();
    bytes[(size / 2) as usize] ^= 0x40;
    b.replace(Kind::Pack, &name, &bytes).unwrap();
    let out = t.s.run(["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("a flipped byte is damage", &out));
    assert!(stdout_of(&out).contains(&name[..8]) || stderr_of(&out).contains(&name[..8]), "names the pack");
}
