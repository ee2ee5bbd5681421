//! `snapfs check` and `snapfs repair index`, run as a user runs them, on a real repository.
//!
//! The corruption matrix damages copies of one pristine repository in many seeded random ways and
//! requires `check --read-data` to detect every case, to name the damaged files, and `restore` to
//! still restore every file `check` did not name, byte for byte.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

mod support;

use serde_json::Value;
use snapfs::backend::{Backend, LocalBackend};
use snapfs::crypto::ObjType;
use snapfs::repo::packs::{list_packs, read_header};
use snapfs::repo::{Cache, LockMode, Repository};

const PW: &str = "correct horse battery staple";

fn pack_path(repo: &Path, id: &snapfs::Id) -> PathBuf {
    let h = id.hex();
    repo.join("packs").join(&h[..2]).join(h)
}

/// The index cache file of a repository (beside it, as `snapfs()` sets `SNAPFS_CACHE_DIR`).
fn index_file(repo: &Path) -> PathBuf {
    let dir = repo.with_extension("cache");
    let sub = fs::read_dir(&dir).unwrap().next().expect("a repository cache").unwrap().path();
    sub.join("index.redb")
}

fn open_lib(repo: &Path) -> Repository {
    let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(LocalBackend::new(repo));
    Repository::open(backend, PW.as_bytes(), LockMode::None, "test").unwrap().load_index(&Cache::memory()).unwrap().0
}

fn snapfs(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapfs"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("SNAPFS_PASSWORD", PW)
        .env("SNAPFS_CACHE_DIR", repo.with_extension("cache"))
        .env_remove("SNAPFS_REPOSITORY")
        .env_remove("SNAPFS_PASSWORD_FILE")
        .output()
        .expect("run snapfs")
}

fn ok(repo: &Path, args: &[&str]) -> Output {
    let out = snapfs(repo, args);
    assert!(out.status.success(), "snapfs {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", text(&out.stdout)))
}

/// xorshift64*: the tests must be reproducible, and need no dependency for that.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One blob's place on disk, found through the library (the test's map, not its oracle).
#[derive(Clone, Debug)]
struct BlobAt {
    pack: PathBuf,
    offset: u64,
    length: u64,
    ty: ObjType,
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    src: PathBuf,
    /// Relative path → contents, for each snapshot, oldest first.
    states: Vec<BTreeMap<String, Vec<u8>>>,
    snapshot_ids: Vec<String>,
    blobs: Vec<BlobAt>,
    /// The data blobs of `only-first.bin`, which only the first snapshot holds.
    first_only: Vec<BlobAt>,
}

fn write_tree(src: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = fs::remove_dir_all(src);
    for (rel, data) in files {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
}

/// A repository with three snapshots of a changing tree, shared by every test (read-only: each
/// test copies it).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let src = dir.path().join("src");
        let mut rng = Rng(0x5eed_c0de_1234_5678);
        let mut files = BTreeMap::new();
        for i in 0..24 {
            let size = match i % 6 {
                0 => 0,
                1 => 1 + rng.below(4096) as usize,
                2 => 100_000 + rng.below(300_000) as usize,
                3 => 1_500_000 + rng.below(1_500_000) as usize,
                _ => 10_000 + rng.below(50_000) as usize,
            };
            let dir = ["", "a/", "a/b/", "c/", "c/d/e/"][i % 5];
            files.insert(format!("{dir}file-{i}.bin"), rng.bytes(size));
        }
        files.insert("only-first.bin".into(), rng.bytes(1_200_000));
        ok(&repo, &["init"]);
        let mut states = Vec::new();
        for round in 0..3 {
            if round > 0 {
                files.remove("only-first.bin");
                let keys: Vec<String> = files.keys().cloned().collect();
                for k in keys {
                    if rng.below(4) == 0 {
                        let size = 20_000 + rng.below(900_000) as usize;
                        files.insert(k, rng.bytes(size));
                    }
                }
                files.insert(format!("new/round-{round}.bin"), rng.bytes(700_000));
            }
            write_tree(&src, &files);
            ok(&repo, &["backup", src.to_str().unwrap()]);
            states.push(files.clone());
        }
        // A freshly written index holds no stale page copies, so a flip in it hits live data.
        ok(&repo, &["repair", "index"]);
        let snaps = json(&ok(&repo, &["snapshots", "--json"]));
        let snapshot_ids: Vec<String> =
            snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(snapshot_ids.len(), 3);

        let r = open_lib(&repo);
        let mut blobs = Vec::new();
        for p in list_packs(r.backend().as_ref()).unwrap().0 {
            for e in read_header(r.backend().as_ref(), r.keys(), &p).unwrap().0 {
                let pack = pack_path(&repo, &p.id);
                blobs.push(BlobAt { pack, offset: e.offset as u64, length: e.length as u64, ty: e.ty });
            }
        }
        let first = Id(&snapshot_ids[0]);
        let snap = r.load_snapshot(&first).unwrap();
        let node = find(&r, snap.tree, &src.join("only-first.bin"));
        let first_only = node
            .content
            .iter()
            .map(|id| {
                let loc = r.index().lookup(id).unwrap().unwrap();
                let pack = pack_path(&repo, &loc.pack);
                BlobAt { pack, offset: loc.offset as u64, length: loc.length as u64, ty: loc.ty }
            })
            .collect();
        Fixture { _dir: dir, repo, src, states, snapshot_ids, blobs, first_only }
    })
}

#[allow(non_snake_case)]
fn Id(hex: &str) -> snapfs::Id {
    snapfs::Id::from_hex(hex).unwrap()
}

fn find(r: &Repository, root: snapfs::Id, path: &Path) -> snapfs::format::tree::Node {
    let mut tree = root;
    let comps: Vec<_> = path.iter().skip(1).collect();
    for (i, c) in comps.iter().enumerate() {
        let node = r.load_tree(&tree).unwrap().into_iter().find(|n| n.name == c.as_encoded_bytes()).unwrap();
        if i + 1 == comps.len() {
            return node;
        }
        tree = node.subtree().unwrap();
    }
    unreachable!()
}

fn copy_repo(f: &Fixture, to: &Path) -> PathBuf {
    let dest = to.join("repo");
    for (from, to) in [(f.repo.clone(), dest.clone()), (f.repo.with_extension("cache"), dest.with_extension("cache"))] {
        let st = Command::new("cp").arg("-a").arg(&from).arg(&to).status().unwrap();
        assert!(st.success());
    }
    dest
}

fn flip(path: &Path, byte: u64, bit: u8) {
    let mut b = fs::read(path).unwrap();
    b[byte as usize] ^= 1 << bit;
    fs::write(path, b).unwrap();
}

fn packs_of(repo: &Path) -> Vec<PathBuf> {
    list_packs(&LocalBackend::new(repo)).unwrap().0.into_iter().map(|p| pack_path(repo, &p.id)).collect()
}

/// Restores snapshot `idx` and checks every file against the source: byte-identical unless
/// `check` named it (or a directory above it) as affected in that snapshot, absent if it did.
fn restore_matches(f: &Fixture, repo: &Path, scratch: &Path, idx: usize, report: &Value) -> usize {
    let target = scratch.join(format!("restore-{idx}"));
    let out = snapfs(repo, &["restore", &f.snapshot_ids[idx], "--target", target.to_str().unwrap()]);
    assert!(!text(&out.stderr).contains("panicked"), "restore panicked: {}", text(&out.stderr));
    let affected = affected_in(f, report, idx);
    let base = target.join(f.src.strip_prefix("/").unwrap());
    let mut named = 0;
    for (rel, data) in &f.states[idx] {
        let abs = f.src.join(rel).display().to_string();
        let hit = is_affected(&affected, &abs);
        let restored = fs::read(base.join(rel)).ok();
        if hit {
            named += 1;
            assert!(restored.is_none(), "{abs} was named as damaged but restored; restore said {}", text(&out.stderr));
        } else {
            assert!(
                restored.as_deref() == Some(data.as_slice()),
                "{abs} was not named as damaged but did not restore intact: {}{}",
                text(&out.stderr),
                serde_json::to_string_pretty(report).unwrap()
            );
        }
    }
    named
}

/// The paths `check` named as affected in snapshot `idx`.
fn affected_in(f: &Fixture, report: &Value, idx: usize) -> Vec<String> {
    report["affected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["snapshot"] == f.snapshot_ids[idx].as_str())
        .flat_map(|a| a["paths"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap().to_string()))
        .collect()
}

fn is_affected(affected: &[String], abs: &str) -> bool {
    affected.iter().any(|p| p == "/" || abs == p || abs.starts_with(&format!("{p}/")))
}

/// Mounts the damaged repository: files `check` did not name read back intact through the
/// kernel, and the ones it named fail to read.
fn mount_matches(f: &Fixture, scratch: tempfile::TempDir, repo: PathBuf, report: &Value) {
    let t = support::TestRepo { dir: scratch, path: repo };
    let m = t.mount(&[]);
    let affected = affected_in(f, report, 2);
    let base = m.latest(&f.src);
    for (rel, data) in &f.states[2] {
        let abs = f.src.join(rel).display().to_string();
        let read = fs::read(base.join(rel));
        if is_affected(&affected, &abs) {
            assert!(read.is_err(), "{abs} was named as damaged but reads through the mount");
        } else {
            let read = read.unwrap_or_else(|e| panic!("{abs} not named as damaged, but the mount says {e}"));
            assert!(read == *data, "{abs} reads different bytes through the mount");
        }
    }
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Damage {
    PackFlip,
    DataBlobFlip,
    TreeBlobFlip,
    SnapshotFlip,
    IndexFlip,
    TruncatePack,
    DeletePack,
    DeleteIndex,
    GarbleIndex,
    TruncateIndex,
    SwapPack,
}

/// Applies one random damage; returns the snapshot to restore afterwards (one that survives) and
/// the pack damaged, if one was.
fn damage(f: &Fixture, repo: &Path, kind: Damage, rng: &mut Rng) -> (usize, Option<PathBuf>) {
    let mut hit = None;
    let packs = packs_of(repo);
    let rebase = |p: &Path| repo.join(p.strip_prefix(&f.repo).unwrap());
    let pick_blob = |rng: &mut Rng, ty: ObjType| {
        let c: Vec<&BlobAt> = f.blobs.iter().filter(|b| b.ty == ty).collect();
        c[rng.below(c.len() as u64) as usize].clone()
    };
    match kind {
        Damage::PackFlip => {
            let p = &packs[rng.below(packs.len() as u64) as usize];
            let len = fs::metadata(p).unwrap().len();
            flip(p, rng.below(len), rng.below(8) as u8);
            hit = Some(p.clone());
        }
        Damage::DataBlobFlip | Damage::TreeBlobFlip => {
            let b = pick_blob(rng, if matches!(kind, Damage::DataBlobFlip) { ObjType::Data } else { ObjType::Tree });
            flip(&rebase(&b.pack), b.offset + rng.below(b.length), rng.below(8) as u8);
            hit = Some(rebase(&b.pack));
        }
        Damage::SnapshotFlip => {
            // Not the newest: the newest survives to be restored and compared.
            let i = rng.below(2) as usize;
            let p = repo.join("snapshots").join(&f.snapshot_ids[i]);
            let len = fs::metadata(&p).unwrap().len();
            flip(&p, rng.below(len), rng.below(8) as u8);
        }
        Damage::IndexFlip => {
            // Inside a live record: the bytes of a pack id stored in the index, or what follows it.
            let ix = index_file(repo);
            let bytes = fs::read(&ix).unwrap();
            let id = snapfs::Id::from_hex(
                &packs[rng.below(packs.len() as u64) as usize].file_name().unwrap().to_string_lossy(),
            )
            .unwrap();
            let hits: Vec<usize> = bytes.windows(32).enumerate().filter(|(_, w)| *w == id.0).map(|(i, _)| i).collect();
            assert!(!hits.is_empty(), "pack id not found in the index");
            let at = hits[rng.below(hits.len() as u64) as usize] as u64 + rng.below(44);
            flip(&ix, at.min(bytes.len() as u64 - 1), rng.below(8) as u8);
        }
        Damage::TruncatePack => {
            let p = &packs[rng.below(packs.len() as u64) as usize];
            let len = fs::metadata(p).unwrap().len();
            fs::OpenOptions::new().write(true).open(p).unwrap().set_len(rng.below(len)).unwrap();
            hit = Some(p.clone());
        }
        Damage::DeletePack => {
            let p = &packs[rng.below(packs.len() as u64) as usize];
            fs::remove_file(p).unwrap();
            hit = Some(p.clone());
        }
        Damage::DeleteIndex => fs::remove_file(index_file(repo)).unwrap(),
        Damage::GarbleIndex => {
            // Its database header: random bytes over redb's magic and commit slots.
            let ix = index_file(repo);
            let mut b = fs::read(&ix).unwrap();
            b[..512].copy_from_slice(&rng.bytes(512));
            fs::write(&ix, b).unwrap();
        }
        Damage::TruncateIndex => {
            let ix = index_file(repo);
            let len = fs::metadata(&ix).unwrap().len();
            fs::OpenOptions::new().write(true).open(&ix).unwrap().set_len(len / 2).unwrap();
        }
        Damage::SwapPack => {
            let a = rng.below(packs.len() as u64) as usize;
            let b = (a + 1 + rng.below(packs.len() as u64 - 1) as usize) % packs.len();
            fs::copy(&packs[b], &packs[a]).unwrap();
            hit = Some(packs[a].clone());
        }
    }
    (2, hit)
}

/// One damaged copy: check must detect it and name the damage; returns how many files it named
/// as lost in the restored snapshot (all others must restore intact).
fn trial(f: &Fixture, kind: Damage, rng: &mut Rng) -> usize {
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    let (restore_idx, hit) = damage(f, &repo, kind, rng);
    let out = snapfs(&repo, &["check", "--read-data", "--json"]);
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
    let report = json(&out);
    let index_only = report["problems"].as_array().unwrap().is_empty();
    if matches!(kind, Damage::IndexFlip | Damage::DeleteIndex | Damage::GarbleIndex | Damage::TruncateIndex) {
        // The index is a cache: check rebuilds a damaged one by itself, says so on stderr, and
        // the repository is clean. A flip redb's checksums miss is an index disagreement that
        // `repair index` fixes; either way no data is reported lost.
        assert!(index_only, "{kind:?}: the data is intact: {}", text(&out.stdout));
        if out.status.code() == Some(0) {
            let err = text(&out.stderr);
            let healed = err.contains("index: rebuilt") || err.contains("index: no cache") || kind == Damage::IndexFlip;
            assert!(healed, "{kind:?}: no word of the rebuilt index: {}", text(&out.stderr));
        } else {
            assert_eq!(kind, Damage::IndexFlip, "{}", text(&out.stdout));
            assert_eq!(report["index"]["repair_recommended"], true);
            ok(&repo, &["repair", "index"]);
        }
        ok(&repo, &["check", "--read-data"]);
    } else {
        assert_eq!(out.status.code(), Some(1), "{kind:?} not detected: {}", text(&out.stdout));
        assert_eq!(report["ok"], false);
        assert!(!index_only, "{kind:?}: no damage named: {}", text(&out.stdout));
    }
    if let Some(p) = hit {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            report["problems"].as_array().unwrap().iter().any(|x| x["pack"] == name.as_str()),
            "{kind:?}: damaged pack {name} not named: {}",
            text(&out.stdout)
        );
    }
    if matches!(kind, Damage::SnapshotFlip) {
        assert!(report["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "snapshot"));
    }
    let named = restore_matches(f, &repo, scratch.path(), restore_idx, &report);
    let index_damage =
        matches!(kind, Damage::IndexFlip | Damage::DeleteIndex | Damage::GarbleIndex | Damage::TruncateIndex);
    if !index_damage && *FUSE.get_or_init(support::fuse_available) {
        mount_matches(f, scratch, repo, &report);
    }
    named
}

static FUSE: OnceLock<bool> = OnceLock::new();

#[test]
fn corruption_matrix() {
    let f = fixture();
    let mut rng = Rng(0xdead_beef_0bad_f00d);
    let plan: &[(Damage, usize)] = &[
        (Damage::PackFlip, 14),
        (Damage::DataBlobFlip, 8),
        (Damage::TreeBlobFlip, 8),
        (Damage::SnapshotFlip, 3),
        (Damage::IndexFlip, 5),
        (Damage::TruncatePack, 3),
        (Damage::DeletePack, 2),
        (Damage::DeleteIndex, 1),
        (Damage::GarbleIndex, 1),
        (Damage::TruncateIndex, 1),
        (Damage::SwapPack, 2),
    ];
    // Each trial has its own seed, so the set of trials is fixed however they are scheduled.
    let trials: Vec<(Damage, u64)> =
        plan.iter().flat_map(|&(kind, n)| (0..n).map(move |_| kind)).map(|k| (k, rng.next())).collect();
    let next = AtomicUsize::new(0);
    let detected = AtomicUsize::new(0);
    let files_named = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(&(kind, seed)) = trials.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let named = trial(f, kind, &mut Rng(seed | 1));
                    detected.fetch_add(1, Ordering::Relaxed);
                    files_named.fetch_add(named, Ordering::Relaxed);
                }
            });
        }
    });
    let (trials, detected, files_named) = (trials.len(), detected.into_inner(), files_named.into_inner());
    eprintln!("corruption matrix: {detected} of {trials} trials detected; {files_named} damaged files named");
    assert_eq!(detected, trials);
    assert!(files_named > 0, "no trial damaged any file: the matrix is too weak");
}

#[test]
fn repair_index_round_trip() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    fs::remove_file(index_file(&repo)).unwrap();
    let out = snapfs(&repo, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let err = text(&out.stderr);
    let packs = packs_of(&repo).len();
    assert!(err.starts_with(&format!("index: no cache for this repository yet; {packs} packs added")), "{err}");
    assert!(index_file(&repo).exists(), "the cache is made again");
    ok(&repo, &["repair", "index"]);
    let report = json(&ok(&repo, &["check", "--read-data", "--json"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["read_data"]["packs"], report["packs"]);
    for i in 0..3 {
        assert_eq!(restore_matches(f, &repo, scratch.path(), i, &report), 0);
    }
}

#[test]
fn subsets_rotate_through_every_pack() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    let total = packs_of(&repo).len() as u64;
    assert!(total >= 3, "the fixture needs several packs, has {total}");
    let per_run = (total as f64 * 0.34).ceil() as u64;
    let mut covered = 0;
    for _ in 0..3 {
        let r = json(&ok(&repo, &["check", "--read-data-subset", "34%", "--json"]));
        assert_eq!(r["read_data"]["packs"], per_run);
        covered = (covered + per_run).min(total);
        // Least recently verified first: each run covers packs the previous ones did not.
        assert_eq!(r["coverage"]["verified_recently"], covered);
    }
    assert_eq!(covered, total);
    let human = text(&ok(&repo, &["check", "--read-data-subset", "1/2"]).stdout);
    assert!(human.contains("coverage: 100% of packs"), "{human}");
    let a = json(&ok(&repo, &["check", "--read-data-subset", "1/2", "--json"]));
    let b = json(&ok(&repo, &["check", "--read-data-subset", "2/2", "--json"]));
    let (a, b) = (a["read_data"]["packs"].as_u64().unwrap(), b["read_data"]["packs"].as_u64().unwrap());
    assert_eq!(a + b, total, "slices must partition the packs");
    let r = json(&ok(&repo, &["check", "--max-duration", "10m", "--json"]));
    assert_eq!(r["read_data"]["complete"], true);
    assert_eq!(r["read_data"]["packs"], total);
    let bad = snapfs(&repo, &["check", "--read-data-subset", "0/3"]);
    assert!(!bad.status.success());
}

#[test]
fn snapshot_scope_and_json_shape() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    let b = &f.first_only[0];
    flip(&repo.join(b.pack.strip_prefix(&f.repo).unwrap()), b.offset + b.length / 2, 3);
    // The newest snapshot does not need the damaged blob: validating it passes.
    let newest = &f.snapshot_ids[2];
    let r = json(&ok(&repo, &["check", "--read-data", "--snapshot", &newest[..8], "--json"]));
    assert_eq!(r["snapshots"], 1);
    assert_eq!(r["ok"], true);
    // The first one does, and the report goes down to the file.
    let out = snapfs(&repo, &["check", "--read-data", "--snapshot", &f.snapshot_ids[0], "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    let p = &r["problems"][0];
    assert_eq!(p["kind"], "blob");
    assert_eq!(p["blob_type"], "data");
    assert_eq!(p["pack"].as_str().unwrap(), b.pack.file_name().unwrap().to_str().unwrap());
    assert!(p["detail"].as_str().unwrap().contains("authentication failed"), "{p}");
    let affected = r["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1);
    assert_eq!(affected[0]["snapshot"], f.snapshot_ids[0].as_str());
    let want = f.src.join("only-first.bin").display().to_string();
    assert_eq!(affected[0]["paths"], serde_json::json!([{"path": want, "kind": "file", "blob": p["blob"]}]));
    for key in ["packs", "pack_bytes", "trees", "data_blobs", "unreferenced", "coverage", "index", "read_data"] {
        assert!(r.get(key).is_some(), "missing {key}");
    }
    // The whole-repository run names it too, with the text report down to the path.
    let out = snapfs(&repo, &["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(t.contains("DAMAGE") && t.contains(&want), "{t}");
}

#[test]
fn damaged_index_is_an_error_not_a_panic() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    let ix = index_file(&repo);
    let mut b = fs::read(&ix).unwrap();
    let mut rng = Rng(0x1dec_0de5);
    for _ in 0..400 {
        let at = rng.below(b.len() as u64) as usize;
        b[at] ^= 1 << rng.below(8);
    }
    fs::write(&ix, b).unwrap();
    let target = scratch.path().join("out");
    let out = snapfs(&repo, &["restore", "latest", "--target", target.to_str().unwrap()]);
    // 101 is an uncaught panic. redb may report the damage, panic (caught: exit 1 naming the fix)
    // or not notice (flips in free pages); check has the last word.
    assert_ne!(out.status.code(), Some(101), "{}", text(&out.stderr));
    // Check opens the cache with every page checked: a damaged one is rebuilt, not trusted.
    let out = snapfs(&repo, &["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
}

/// An index entry that is readable and in range but disagrees with the pack header (a stale or
/// altered cache) is named, and `repair index` fixes it.
#[test]
fn index_entry_at_the_wrong_offset_is_named() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    let path = index_file(&repo);
    let moved = {
        let index = snapfs::index::Index::open(&path, false).unwrap();
        let mut by_pack: BTreeMap<snapfs::Id, Vec<snapfs::format::pack::PackEntry>> = BTreeMap::new();
        for (id, loc) in index.blobs().unwrap() {
            let loc = loc.unwrap();
            let e = snapfs::format::pack::PackEntry {
                ty: loc.ty,
                id,
                offset: loc.offset,
                length: loc.length,
                raw_len: loc.raw_len,
            };
            by_pack.entry(loc.pack).or_default().push(e);
        }
        // The whole pack is rewritten so that only one entry differs: the blob count still matches.
        let (pack, mut entries) = by_pack.into_iter().find(|(_, v)| v.len() >= 2).expect("a pack with two blobs");
        entries.sort_by_key(|e| e.offset);
        entries[0].offset = entries[1].offset;
        let size = fs::metadata(pack_path(&repo, &pack)).unwrap().len();
        index.add_pack(&pack, size, &entries).unwrap();
        entries[0].id
    };
    let out = snapfs(&repo, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = json(&out);
    let problems = report["index"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&format!("blob {}: the index places it", moved.short()))),
        "{problems:?}"
    );
    assert!(report["problems"].as_array().unwrap().is_empty(), "the packs are intact: {report}");
    ok(&repo, &["repair", "index"]);
    ok(&repo, &["check"]);
}

/// A backup that meets a damaged index rebuilds it from the pack headers, says so in one
/// line, and still deduplicates: the next backup of the same data adds nothing.
#[test]
fn backup_with_a_truncated_index_rebuilds_it() {
    let f = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let repo = copy_repo(f, scratch.path());
    fs::OpenOptions::new().write(true).open(index_file(&repo)).unwrap().set_len(100).unwrap();
    let out = snapfs(&repo, &["backup", "--force", "--json", f.src.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.starts_with("index: rebuilt"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let summary: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["data_blobs_added"], 0, "{summary}");
    ok(&repo, &["check"]);
}
