//! The repository core against storage that fails: power loss at every durable write of a
//! backup, a full or failing disk at every write, and index caches that are stale, lost or
//! shared by two writers. Runs on the in-memory backend through the library: no kernel needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use snapfs::archiver::{BackupOptions, backup};
use snapfs::backend::{Backend, Fault, FaultBackend, MemoryBackend};
use snapfs::check::{CheckOptions, Subset, check};
use snapfs::crypto::keyfile::KdfParams;
use snapfs::repo::{Cache, LockMode, Repository};
use snapfs::restore::{RestoreOptions, restore};

const PW: &[u8] = b"correct horse battery staple";

/// A source tree whose contents are a function of `version`: a few small files, one that
/// changes, one that goes away, and one of several chunks (so a backup writes data and trees).
fn write_tree(dir: &Path, version: u32) -> BTreeMap<PathBuf, Vec<u8>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut files = BTreeMap::new();
    files.insert(dir.join("same.txt"), b"unchanged between versions\n".repeat(100));
    files.insert(dir.join("sub/changing.txt"), format!("version {version}\n").repeat(1000).into_bytes());
    if version == 1 {
        files.insert(dir.join("only-in-1.txt"), b"gone in version 2".to_vec());
    }
    let mut big = Vec::with_capacity(3 << 20);
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(version);
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    files.insert(dir.join("sub/big.bin"), big);
    for (p, data) in &files {
        std::fs::write(p, data).unwrap();
    }
    files
}

fn open(backend: Arc<dyn Backend>, cache: &Cache) -> snapfs::Result<Repository> {
    Ok(Repository::open(backend, PW, LockMode::Shared, "test")?.load_index(cache)?.0)
}

fn run_backup(repo: &Repository, src: &Path, force: bool) -> snapfs::Result<snapfs::archiver::BackupOutcome> {
    let opts =
        BackupOptions { paths: vec![src.to_path_buf()], host: Some("test-host".into()), force, ..Default::default() };
    backup(repo, &opts)
}

/// Every snapshot restores to exactly one of the recorded source states, and `check
/// --read-data` finds no damage.
fn verify(repo: &Repository, states: &[BTreeMap<PathBuf, Vec<u8>>], scratch: &Path) -> usize {
    let (snaps, bad) = repo.snapshots().unwrap();
    assert!(
        bad.is_empty(),
        "damaged snapshots: {:?}",
        bad.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>()
    );
    for (i, (id, snap)) in snaps.iter().enumerate() {
        let target = scratch.join(format!("restore-{i}"));
        let _ = std::fs::remove_dir_all(&target);
        let opts = RestoreOptions::new(target.clone());
        let out = restore(repo, snap.tree, &opts).unwrap();
        assert!(out.errors.is_empty(), "snapshot {}: {:?}", id.short(), out.errors);
        let matches = states.iter().any(|state| {
            let restored: BTreeMap<PathBuf, Vec<u8>> =
                state.keys().filter_map(|p| Some((p.clone(), std::fs::read(rebase(&target, p)).ok()?))).collect();
            &restored == state && count_files(&target) == state.len()
        });
        assert!(matches, "snapshot {} restores to no state that was backed up", id.short());
    }
    let report = check(repo, &CheckOptions { read_data: Some(Subset::All), ..Default::default() }).unwrap();
    let problems: Vec<String> = report.problems.iter().map(|p| p.detail.clone()).collect();
    assert!(report.is_clean(), "check: {problems:?} {:?}", report.index.problems);
    snaps.len()
}

fn rebase(target: &Path, p: &Path) -> PathBuf {
    target.join(p.strip_prefix("/").unwrap())
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// A repository in memory with one snapshot of version 1 of the tree.
fn seeded(src: &Path) -> (MemoryBackend, BTreeMap<PathBuf, Vec<u8>>) {
    let mem = MemoryBackend::new();
    let backend: Arc<dyn Backend> = Arc::new(mem.clone());
    drop(Repository::init(backend.clone(), PW, KdfParams::DEFAULT).unwrap());
    let v1 = write_tree(src, 1);
    let repo = open(backend, &Cache::memory()).unwrap();
    run_backup(&repo, src, false).unwrap();
    (mem, v1)
}

/// How many mutating operations a second backup makes, counted on a copy.
fn ops_of_second_backup(mem: &MemoryBackend, src: &Path) -> u64 {
    let counting = Arc::new(FaultBackend::over_memory(mem.deep_copy(), Fault::None));
    let repo = open(counting.clone(), &Cache::memory()).unwrap();
    run_backup(&repo, src, false).unwrap();
    drop(repo);
    counting.ops()
}

#[test]
fn power_loss_at_every_write_of_a_backup_loses_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, v1) = seeded(&src);
    let v2 = write_tree(&src, 2);
    assert!(ops_of_second_backup(&mem, &src) >= 4, "a backup writes a lock, a pack, a snapshot, and unlocks");
    let (mut with_second, mut points, mut most_ops) = (0, 0, 0);
    // Parallel packers may close one pack more or less from run to run: go on past the most
    // writes any run made, so every write point is covered, and end with a run the power
    // outlives (everything durable: the second snapshot must be there).
    for k in 1.. {
        let image = mem.deep_copy();
        // The crashed run keeps its index cache on disk, as a real client would.
        let cache = Cache::dir(tmp.path().join(format!("cache-{k}")));
        let faulty = Arc::new(FaultBackend::over_memory(image.clone(), Fault::PowerLoss { op: k }));
        if let Ok(repo) = open(faulty.clone(), &cache) {
            // In the page cache everything works; only the durable image is cut at op k.
            let _ = run_backup(&repo, &src, false);
        }
        let outlived = faulty.ops() < k;
        most_ops = most_ops.max(faulty.ops());
        points += 1;
        // After the power loss: the durable image, with the crashed run's (now stale) cache
        // and with none at all.
        for cache in [cache, Cache::memory()] {
            let repo = open(Arc::new(image.clone()), &cache).unwrap_or_else(|e| panic!("power loss at op {k}: {e}"));
            let snaps = verify(&repo, &[v1.clone(), v2.clone()], &tmp.path().join("scratch"));
            assert!(snaps >= 1, "power loss at op {k} lost the first snapshot");
            assert!(snaps == 2 || !outlived, "a backup the power outlived left no snapshot");
            with_second += usize::from(snaps == 2);
        }
        if outlived && k > most_ops {
            break;
        }
    }
    // The snapshot write is the commit point: power lost after it keeps the second snapshot.
    eprintln!("power loss at {points} write points: every committed snapshot restored and checked clean");
    assert!(with_second >= 2, "no power-loss point kept the second backup");
    assert!(with_second < 2 * points, "every power-loss point kept the second backup: none cut it short");
}

#[test]
fn a_full_or_failing_disk_at_every_write_is_an_error_that_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, v1) = seeded(&src);
    let v2 = write_tree(&src, 2);
    for errno in [libc::ENOSPC, libc::EIO] {
        let mut points = 0;
        for k in 1.. {
            let image = mem.deep_copy();
            let faulty = Arc::new(FaultBackend::new(Arc::new(image.clone()), Fault::FailFrom { op: k, errno }));
            let result = open(faulty.clone(), &Cache::memory()).and_then(|repo| run_backup(&repo, &src, false));
            if faulty.ops() < k {
                break;
            }
            points += 1;
            let repo = open(Arc::new(image), &Cache::memory()).unwrap();
            let snaps = verify(&repo, &[v1.clone(), v2.clone()], &tmp.path().join("scratch"));
            match result {
                Err(e) => {
                    let want = std::io::Error::from_raw_os_error(errno).to_string();
                    assert!(e.to_string().contains(&want), "op {k}: the error does not say why: {e}");
                    assert_eq!(snaps, 1, "op {k}: a failed backup left a snapshot");
                }
                // Only the lock's removal came after the snapshot: the backup is saved.
                Ok(_) => assert_eq!(snaps, 2, "op {k}: a backup that succeeded left no snapshot"),
            }
        }
        assert!(points >= 4, "{points} write points");
    }
}

#[test]
fn a_torn_pack_write_is_found_by_check_and_costs_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, _) = seeded(&src);
    write_tree(&src, 2);
    // Op 1 is the lock; op 2 the first pack.
    let faulty: Arc<dyn Backend> = Arc::new(FaultBackend::new(Arc::new(mem.clone()), Fault::TornWrite { op: 2 }));
    let repo = open(faulty, &Cache::memory()).unwrap();
    assert!(run_backup(&repo, &src, false).is_err());
    drop(repo);
    let repo = open(Arc::new(mem), &Cache::memory()).unwrap();
    let report = check(&repo, &CheckOptions::default()).unwrap();
    assert!(report.problems.iter().any(|p| p.kind == "pack_header"), "the torn pack is not named");
    assert_eq!(repo.snapshots().unwrap().0.len(), 1);
    // The backup after it works, and does not trip over the torn pack.
    run_backup(&repo, &src, false).unwrap();
    assert_eq!(repo.snapshots().unwrap().0.len(), 2);
}

#[test]
fn a_second_writer_with_its_own_cache_deduplicates_against_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, 1);
    let mem = MemoryBackend::new();
    drop(Repository::init(Arc::new(mem.clone()), PW, KdfParams::DEFAULT).unwrap());
    let (cache_a, cache_b) = (Cache::dir(tmp.path().join("a")), Cache::dir(tmp.path().join("b")));
    let a = open(Arc::new(mem.clone()), &cache_a).unwrap();
    let first = run_backup(&a, &src, false).unwrap();
    assert!(first.summary.data_blobs_added > 0);
    drop(a);
    // Machine B has never seen the repository: its catch-up reads A's pack headers.
    let (b, caught_up) =
        Repository::open(Arc::new(mem.clone()), PW, LockMode::Shared, "b").unwrap().load_index(&cache_b).unwrap();
    assert_eq!(caught_up.packs_added, caught_up.packs, "a cold cache reads every pack header once");
    let second = run_backup(&b, &src, true).unwrap();
    assert_eq!(second.summary.data_blobs_added, 0, "B stored A's data again");
    // B adds new data; A's next run sees B's packs and stores none of it again.
    write_tree(&src, 2);
    assert!(run_backup(&b, &src, true).unwrap().summary.data_blobs_added > 0);
    drop(b);
    let (a, caught_up) =
        Repository::open(Arc::new(mem), PW, LockMode::Shared, "a").unwrap().load_index(&cache_a).unwrap();
    assert!(caught_up.packs_added >= 1 && caught_up.headers_read == caught_up.packs_added, "{caught_up:?}");
    assert_eq!(run_backup(&a, &src, true).unwrap().summary.data_blobs_added, 0, "A stored B's data again");
}

#[test]
fn a_lost_or_damaged_cache_is_rebuilt_and_dedup_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let v1 = write_tree(&src, 1);
    let mem = MemoryBackend::new();
    drop(Repository::init(Arc::new(mem.clone()), PW, KdfParams::DEFAULT).unwrap());
    let cache = Cache::dir(tmp.path().join("cache"));
    let repo = open(Arc::new(mem.clone()), &cache).unwrap();
    run_backup(&repo, &src, false).unwrap();
    let file = cache.index_path(repo.repo_id()).unwrap();
    drop(repo);
    for damage in ["delete", "garble", "truncate"] {
        match damage {
            "delete" => std::fs::remove_file(&file).unwrap(),
            "garble" => {
                let mut b = std::fs::read(&file).unwrap();
                b[..4096].fill(0x5a);
                std::fs::write(&file, b).unwrap();
            }
            _ => std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(100).unwrap(),
        }
        let (repo, caught_up) =
            Repository::open(Arc::new(mem.clone()), PW, LockMode::Shared, "t").unwrap().load_index(&cache).unwrap();
        let line = caught_up.summary().expect("a line about the cache");
        assert!(line.starts_with("index: ") && caught_up.packs_added == caught_up.packs, "{damage}: {line}");
        assert_eq!(run_backup(&repo, &src, true).unwrap().summary.data_blobs_added, 0, "{damage}: dedup lost");
        verify(&repo, std::slice::from_ref(&v1), &tmp.path().join("scratch"));
    }
}

#[test]
fn a_killed_backups_packs_are_adopted_by_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, v1) = seeded(&src);
    let v2 = write_tree(&src, 2);
    // Power lost just before the snapshot: the packs are durable, the cache of that run gone.
    let faulty: Arc<dyn Backend> =
        Arc::new(FaultBackend::over_memory(mem.clone(), Fault::PowerLossAtFirst(snapfs::backend::Kind::Snapshot)));
    let _ = run_backup(&open(faulty, &Cache::memory()).unwrap(), &src, false);
    let repo = open(Arc::new(mem), &Cache::memory()).unwrap();
    assert_eq!(repo.snapshots().unwrap().0.len(), 1);
    let out = run_backup(&repo, &src, false).unwrap();
    assert_eq!(out.summary.data_blobs_added, 0, "the packs the killed backup left were not reused");
    verify(&repo, &[v1, v2], &tmp.path().join("scratch"));
}

#[test]
fn a_new_key_epoch_seals_new_objects_and_old_ones_still_open() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, v1) = seeded(&src);
    // What `key rotate` will do: one more epoch object, nothing else rewritten.
    let repo = open(Arc::new(mem.clone()), &Cache::memory()).unwrap();
    let keys = snapfs::crypto::Keys::from_master(*repo.keys().master());
    keys.add_epoch(1, snapfs::crypto::EpochKey::random().unwrap());
    let epoch1 = keys.seal_epoch(1, repo.repo_id(), 0).unwrap();
    mem.write(snapfs::backend::Kind::Epoch, "00000001", &epoch1).unwrap();
    drop(repo);
    let v2 = write_tree(&src, 2);
    let repo = open(Arc::new(mem.clone()), &Cache::memory()).unwrap();
    assert_eq!(repo.keys().current_epoch(), Some(1));
    let second = run_backup(&repo, &src, false).unwrap().snapshot.unwrap();
    let sealed = mem.read(snapfs::backend::Kind::Snapshot, &second.hex()).unwrap();
    assert_eq!(snapfs::crypto::envelope_epoch(&sealed), Some(1), "new objects are sealed under the new epoch");
    // Unchanged data is not stored again: ids do not depend on the epoch.
    assert_eq!(verify(&repo, &[v1, v2], &tmp.path().join("scratch")), 2);
}

#[test]
fn a_damaged_epoch_object_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (mem, _) = seeded(&tmp.path().join("src"));
    mem.tamper(snapfs::backend::Kind::Epoch, "00000000", |b| b[40] ^= 1);
    let err = open(Arc::new(mem), &Cache::memory()).err().expect("no key epoch opens").to_string();
    assert!(err.contains("no key epoch opens") && err.contains("key epoch 00000000"), "{err}");
}
