//! Requests to object storage, counted by the real 3-node Garage cluster (its
//! `api_s3_request_counter`): `check --read-data` reads each pack in one request and no tree
//! twice; an unchanged re-backup reads its parent's trees from the tree cache; an altered tree
//! cache is caught on use and heals; a mount reads a file ahead in ranged reads of several
//! chunks; `forget --prune` opens once, lists little and repacks in ranged reads. The counts are the cluster's, so these tests take turns.

mod common;
#[allow(unused)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The tree cache file of the one repository a cache directory holds.
fn tree_cache_file(cache: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> =
        std::fs::read_dir(cache).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "one repository in {}", cache.display());
    dirs[0].join("trees.redb")
}

/// Flips a byte of every sealed tree the cache holds; returns how many.
fn spoil_tree_cache(file: &Path) -> usize {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const TREES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("trees");
    let db = redb::Builder::new().set_concurrency_mode(redb::ConcurrencyMode::MultiWriter).create(file).unwrap();
    let entries: Vec<([u8; 32], Vec<u8>)> = {
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(TREES).unwrap();
        table.iter().unwrap().map(|e| e.unwrap()).map(|(k, v)| (*k.value(), v.value().to_vec())).collect()
    };
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(TREES).unwrap();
        for (k, mut v) in entries.clone() {
            let last = v.len() - 1;
            v[last] ^= 1;
            table.insert(&k, v.as_slice()).unwrap();
        }
    }
    tx.commit().unwrap();
    entries.len()
}

#[test]
fn an_unchanged_rebackup_reads_its_parent_from_the_tree_cache_and_a_spoiled_cache_heals() {
    let Some(g) = garage::cluster() else { return };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = setup(g, "rebackup-requests");
    let unchanged = |what: &str| {
        let mut v = serde_json::Value::Null;
        let n = gets(g, || v = t.s.backup_json([&t.src]));
        assert_eq!(num(&v, "files_changed") + num(&v, "files_new"), 0, "{what}: nothing changed: {v}");
        assert_eq!(num(&v, "data_blobs_added"), 0, "{what}: {v}");
        n
    };
    // The config, the key slot, the epoch, the lock, each snapshot (to find the parent): no
    // listing.
    // (Taking the lock lists the locks and reads each, its own too.)
    let fixed = |snapshots: u64| 4 + snapshots;
    let cached = unchanged("from the cache");
    assert!(cached <= fixed(1), "an unchanged re-backup with the trees cached: {cached} GETs ({DIRS} directories)");

    // Every cached tree altered: each is refused on use and read from the bucket again.
    let spoiled = spoil_tree_cache(&tree_cache_file(&t.base.join("cache")));
    assert!(spoiled > DIRS, "the backup kept its trees: {spoiled}");
    let healing = unchanged("with a spoiled cache");
    assert!(healing > DIRS as u64 / 2, "a spoiled cache is not used: {healing} GETs");
    let healed = unchanged("healed");
    assert!(healed <= fixed(3), "the trees read again were kept: {healed} GETs");

    // A client with a cache of its own reads what the first wrote, and restores it exactly.
    let other = g.client(&t.url, &t.base.join("cache2"));
    let target = t.base.join("restore");
    other.restore("latest", &target, &[]);
    assert_same_tree(&t.src, &restored(&target, &t.src));
    let from_cache = gets(g, || {
        other.ok(["ls", "latest", "/"]);
    });
    assert!(from_cache <= fixed(4), "the second client kept the trees its restore read: {from_cache} GETs");
}

/// The chunk ids of the file at `path` in the latest snapshot, through `cat`.
fn chunks_of(s: &Snapfs, path: &Path) -> usize {
    let snap = parse_json_object(&s.ok(["cat", "snapshot", "latest"]));
    let mut tree = snap["tree"].as_str().unwrap().to_string();
    let names: Vec<String> = path.components().skip(1).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    for (i, name) in names.iter().enumerate() {
        let listing = parse_json_object(&s.ok(["cat", "tree", &tree]));
        let node = listing["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name.as_str()).unwrap().clone();
        if i + 1 == names.len() {
            return node["content"].as_array().unwrap().len();
        }
        tree = node["content"][0].as_str().unwrap().to_string();
    }
    unreachable!("{} has components", path.display())
}

#[test]
fn a_mount_reads_a_file_ahead_in_ranged_reads_of_several_chunks() {
    let Some(g) = garage::cluster() else { return };
    if !support::fuse_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = setup(g, "mount-requests");
    // New data backed up alone, so its chunks lie together in the packs (two or so: the
    // backup's workers append to a pack each), as a big file's do when nothing is read beside it.
    let big = t.base.join("alone/large.bin");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    write_random(&big, 24 * MIB, &mut Rng::new(99));
    t.s.backup([big.parent().unwrap()]);
    let chunks = chunks_of(&t.s, &big);
    assert!(chunks >= 8, "the file has many chunks: {chunks}");

    let mp = t.base.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let mut child = t.s.command().arg("mount").arg(&mp).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while !(support::is_mounted(&mp) && mp.join("snapshots").is_dir()) {
        assert!(start.elapsed() < Duration::from_secs(30), "the mount did not come up");
        assert!(child.try_wait().unwrap().is_none(), "snapfs mount exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = mp.join("snapshots/latest").join(big.strip_prefix("/").unwrap());
    let result = std::panic::catch_unwind(|| {
        // Looked up first: finding the snapshot and the path costs requests of its own.
        std::fs::metadata(&seen).unwrap();
        let mut got = Vec::new();
        let n = gets(g, || got = std::fs::read(&seen).unwrap());
        assert!(got == std::fs::read(&big).unwrap(), "the mount serves the file's bytes");
        // A GET a chunk would be `chunks` or more; the read-ahead hands out about 4 MiB at a
        // time, and one ranged read a pack serves what of it lies together. 6-8 GETs for 16-23
        // chunks in 9 runs here; before the read-ahead sorted a window by place in the pack,
        // 7-13, as a file's neighbouring chunks alternate between packs.
        assert!(3 * n <= 2 * chunks as u64, "a sequential read of {chunks} chunks: {n} GETs");
    });
    let _ = std::process::Command::new("fusermount3").arg("-u").arg(&mp).status();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn forget_prune_opens_once_lists_each_kind_a_few_times_and_repacks_in_ranged_reads() {
    let Some(g) = garage::cluster() else { return };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let url = g.url(0, &g.bucket("prune-requests"));
    let s = g.client(&url, &base.join("cache"));
    s.init();
    // Small files of two trees backed up together share packs; forgetting the snapshot with
    // both leaves those packs half used, and the repack copies the kept tree's 300 blobs (12 MB).
    let mut rng = Rng::new(23);
    for tree in ["kept", "dropped"] {
        for i in 0..300 {
            let dir = base.join(format!("src/{tree}/d{}", i % 10));
            std::fs::create_dir_all(&dir).unwrap();
            write_random(&dir.join(format!("f{i}")), 40 * KIB, &mut rng);
        }
    }
    s.backup([base.join("src")]);
    s.backup([base.join("src/kept")]);
    let b = S3Backend::with_credentials(&url, &g.key_id, &g.secret, "garage").unwrap();
    let names = || b.list(Kind::Pack).unwrap().into_iter().map(|(n, _)| n).collect::<std::collections::BTreeSet<_>>();
    let before = names();
    let lists = g.requests("ListObjectsV2");
    let n = gets(g, || {
        s.ok(["forget", "--keep-last", "1", "--group-by", "host", "--prune", "--max-unused", "0"]);
    });
    let lists = g.requests("ListObjectsV2") - lists;
    let after = names();
    assert!(after.len() <= before.len() && after.iter().any(|p| !before.contains(p)), "half-used packs were repacked");
    // One open (the root, key slots, epochs, locks), the forget's and the plan's snapshot
    // listings, one pack and one condemned listing, the locks and snapshots again before the
    // sweep: 12. Opened twice, with a catch-up on each open and lists read again, it was 30.
    assert!(lists <= 14, "forget --prune: {lists} LISTs");
    // A GET a copied blob was 324; ranged reads of up to 4 MiB serve them (20 here).
    assert!(n <= 30, "forget --prune: {n} GETs for {} packs and 300 blobs to copy", before.len());
    s.ok(["check", "--read-data"]);
    let restored = base.join("restored");
    s.ok(["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_same_tree(&base.join("src/kept"), &restored.join(base.join("src/kept").strip_prefix("/").unwrap()));
}
