//! Prune is the one command that destroys data. Here it runs on the in-memory backend against
//! the cases that lose backups in the field: power lost at any of its writes and deletions, and
//! a backup that started before it and reuses, unread, the data of the snapshots it removes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use snapfs::archiver::{BackupOptions, backup};
use snapfs::backend::{Backend, Fault, FaultBackend, Kind, MemoryBackend};
use snapfs::check::{CheckOptions, Subset, check};
use snapfs::crypto::keyfile::KdfParams;
use snapfs::forget::{ForgetOptions, forget};
use snapfs::policy::{GroupBy, Policy};
use snapfs::prune::{PruneOptions, prune};
use snapfs::repo::{Cache, LockMode, Repository};
use snapfs::restore::{RestoreOptions, restore};

const PW: &[u8] = b"correct horse battery staple";

type State = BTreeMap<PathBuf, Vec<u8>>;

fn write_tree(dir: &Path, version: u32) -> State {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut files = State::new();
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ u64::from(version);
    let mut noise = |n: usize| {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    };
    files.insert(dir.join("stays.bin"), {
        let mut y = 99u64;
        (0..(1 << 20))
            .map(|_| {
                y = y.wrapping_mul(6364136223846793005).wrapping_add(1);
                (y >> 33) as u8
            })
            .collect()
    });
    files.insert(dir.join("changes.bin"), noise(2 << 20));
    files.insert(dir.join("small.txt"), format!("version {version}\n").into_bytes());
    for (p, d) in &files {
        std::fs::write(p, d).unwrap();
    }
    files
}

fn open(backend: Arc<dyn Backend>, mode: LockMode) -> snapfs::Result<Repository> {
    Ok(Repository::open(backend, PW, mode, "test")?.load_index(&Cache::memory())?.0)
}

fn run_backup(repo: &Repository, src: &Path, time_s: i64) -> snapfs::Result<()> {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        host: Some("h".into()),
        time_ns: Some(time_s * 1_000_000_000),
        ..Default::default()
    };
    backup(repo, &opts).map(|_| ())
}

/// A repository in memory with `versions` daily backups of `src`, and what each held.
fn seeded(src: &Path, versions: u32) -> (MemoryBackend, Vec<State>) {
    let mem = MemoryBackend::new();
    drop(Repository::init(Arc::new(mem.clone()), PW, KdfParams::DEFAULT).unwrap());
    let repo = open(Arc::new(mem.clone()), LockMode::Shared).unwrap();
    let mut states = Vec::new();
    for v in 1..=versions {
        states.push(write_tree(src, v));
        run_backup(&repo, src, 1_800_000_000 + i64::from(v) * 86_400).unwrap();
    }
    (mem, states)
}

/// Prune's mark with room for eight blob ids in memory: every set it builds goes through its
/// temporary files, so these tests cover that path (the CLI tests cover the in-memory one).
fn spilling() -> PruneOptions {
    PruneOptions { mark_memory: 256, ..PruneOptions::default() }
}

fn keep_last(n: i64) -> ForgetOptions {
    ForgetOptions {
        policy: Policy { last: n, ..Default::default() },
        group_by: GroupBy::DEFAULT,
        filter: Default::default(),
        ids: vec![],
        dry_run: false,
        allow_remove_all: false,
    }
}

/// Every snapshot restores to one of `states`, check --read-data is clean; returns the count.
fn verify(repo: &Repository, states: &[State], scratch: &Path) -> usize {
    let (snaps, bad) = repo.snapshots().unwrap();
    assert!(bad.is_empty(), "damaged snapshots");
    for (i, (id, snap)) in snaps.iter().enumerate() {
        let target = scratch.join(format!("r{i}"));
        let _ = std::fs::remove_dir_all(&target);
        let opts = RestoreOptions::new(target.clone());
        let out = restore(repo, snap.tree, &opts).unwrap_or_else(|e| panic!("restore {}: {e}", id.short()));
        assert!(out.errors.is_empty(), "snapshot {}: {:?}", id.short(), out.errors);
        let got: State = states[0]
            .keys()
            .map(|p| (p.clone(), std::fs::read(target.join(p.strip_prefix("/").unwrap())).unwrap_or_default()))
            .collect();
        assert!(states.contains(&got), "snapshot {} restores to no state that was backed up", id.short());
    }
    let report = check(repo, &CheckOptions { read_data: Some(Subset::All), ..Default::default() }).unwrap();
    let problems: Vec<&str> = report.problems.iter().map(|p| p.detail.as_str()).collect();
    assert!(report.is_clean(), "check: {problems:?} {:?}", report.index.problems);
    snaps.len()
}

#[test]
fn power_loss_at_every_write_of_forget_and_prune_keeps_every_kept_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, states) = seeded(&src, 3);
    let newest = states[2].clone();
    let mut points = 0;
    for k in 1.. {
        let image = mem.deep_copy();
        let faulty = Arc::new(FaultBackend::over_memory(image.clone(), Fault::PowerLoss { op: k }));
        if let Ok(repo) = open(faulty.clone(), LockMode::Prune) {
            let _ = forget(&repo, &keep_last(1)).and_then(|_| prune(&repo, &spilling()));
        }
        if faulty.ops() < k {
            break;
        }
        points += 1;
        let repo = open(Arc::new(image), LockMode::Shared).unwrap_or_else(|e| panic!("power loss at op {k}: {e}"));
        let n = verify(&repo, &states, &tmp.path().join("scratch"));
        assert!(n >= 1, "power loss at op {k}: the kept snapshot is gone");
        // And the job finishes: forget and prune again, then only the newest is left, intact.
        forget(&repo, &keep_last(1)).unwrap();
        prune(&repo, &spilling()).unwrap();
        assert_eq!(verify(&repo, std::slice::from_ref(&newest), &tmp.path().join("scratch")), 1);
    }
    eprintln!("forget + prune: power lost at {points} write points, no kept snapshot lost");
    assert!(points >= 5, "{points} write points: a lock, snapshot deletions, a condemned list, pack deletions");
}

#[test]
fn a_full_disk_at_any_write_of_prune_is_an_error_that_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, states) = seeded(&src, 3);
    forget(&open(Arc::new(mem.clone()), LockMode::Shared).unwrap(), &keep_last(1)).unwrap();
    let mut points = 0;
    for k in 1.. {
        let image = mem.deep_copy();
        let faulty =
            Arc::new(FaultBackend::new(Arc::new(image.clone()), Fault::FailFrom { op: k, errno: libc::ENOSPC }));
        let result = open(faulty.clone(), LockMode::Prune).and_then(|repo| prune(&repo, &spilling()));
        if faulty.ops() < k {
            break;
        }
        points += 1;
        if let Err(e) = &result {
            assert!(e.to_string().contains("No space left on device"), "op {k}: {e}");
        }
        // The failed process exits; its lock, which it could not delete on a full disk, with it.
        snapfs::repo::lock::remove(&image, true).unwrap();
        let repo = open(Arc::new(image), LockMode::Prune).unwrap();
        assert_eq!(verify(&repo, &states, &tmp.path().join("scratch")), 1, "ENOSPC at op {k}");
        prune(&repo, &spilling()).expect("prune works again once there is room");
    }
    assert!(points >= 3, "{points} write points");
}

#[test]
fn a_backup_that_started_before_prune_keeps_the_data_it_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mem = MemoryBackend::new();
    drop(Repository::init(Arc::new(mem.clone()), PW, KdfParams::DEFAULT).unwrap());
    let v1 = write_tree(&src, 1);
    run_backup(&open(Arc::new(mem.clone()), LockMode::Shared).unwrap(), &src, 1_800_000_000).unwrap();

    // A backup starts: lock taken, index read, parent chosen (the one snapshot there is).
    let running = open(Arc::new(mem.clone()), LockMode::Shared).unwrap();
    // Meanwhile the only snapshot is forgotten and pruned: its data is condemned, not deleted.
    {
        let other = open(Arc::new(mem.clone()), LockMode::Prune).unwrap();
        let (snaps, _) = other.snapshots().unwrap();
        let ids = vec![snaps[0].0.hex()];
        forget(&other, &ForgetOptions { ids, policy: Policy::default(), ..keep_last(0) }).unwrap();
        let out = prune(&other, &spilling()).unwrap();
        assert_eq!(out.deleted_packs, 0, "deleted packs a running backup may still use");
        assert!(out.waiting_packs > 0);
    }
    // The running backup finishes, deduplicating against the condemned data it saw as present.
    run_backup(&running, &src, 1_800_086_400).unwrap();
    drop(running);
    // The next prune sees the new snapshot needs those packs and keeps them.
    let repo = open(Arc::new(mem.clone()), LockMode::Prune).unwrap();
    let out = prune(&repo, &spilling()).unwrap();
    assert!(out.rescued_packs > 0, "{out:?}");
    assert!(mem.list(Kind::Condemned).unwrap().is_empty(), "the swept list is gone");
    assert_eq!(verify(&repo, &[v1], &tmp.path().join("scratch")), 1);
}

#[test]
fn a_backup_after_the_condemnation_stores_the_data_again() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mem = MemoryBackend::new();
    drop(Repository::init(Arc::new(mem.clone()), PW, KdfParams::DEFAULT).unwrap());
    let v1 = write_tree(&src, 1);
    run_backup(&open(Arc::new(mem.clone()), LockMode::Shared).unwrap(), &src, 1_800_000_000).unwrap();
    // A mount holds the packs back: prune condemns but does not delete.
    let mount = open(Arc::new(mem.clone()), LockMode::Shared).unwrap();
    let other = open(Arc::new(mem.clone()), LockMode::Prune).unwrap();
    let (snaps, _) = other.snapshots().unwrap();
    forget(&other, &ForgetOptions { ids: vec![snaps[0].0.hex()], policy: Policy::default(), ..keep_last(0) }).unwrap();
    assert!(prune(&other, &spilling()).unwrap().waiting_packs > 0);
    drop(other);
    // A backup that starts now sees the condemned list: it does not reference those packs.
    let repo = open(Arc::new(mem.clone()), LockMode::Shared).unwrap();
    run_backup(&repo, &src, 1_800_086_400).unwrap();
    drop(repo);
    drop(mount);
    let repo = open(Arc::new(mem.clone()), LockMode::Prune).unwrap();
    let out = prune(&repo, &spilling()).unwrap();
    assert!(out.deleted_packs > 0 && out.rescued_packs == 0, "{out:?}");
    assert_eq!(verify(&repo, &[v1], &tmp.path().join("scratch")), 1);
}

/// Every envelope of every object names the one epoch left.
fn all_under_one_epoch(mem: &MemoryBackend) -> bool {
    let epochs = mem.list(Kind::Epoch).unwrap();
    if epochs.len() != 1 {
        return false;
    }
    let epoch = u32::from_str_radix(&epochs[0].0, 16).unwrap();
    [Kind::Snapshot, Kind::Condemned].iter().all(|k| {
        mem.list(*k)
            .unwrap()
            .iter()
            .all(|(n, _)| snapfs::crypto::envelope_epoch(&mem.read(*k, n).unwrap()) == Some(epoch))
    })
}

#[test]
fn power_loss_at_every_write_of_a_key_rotation_loses_nothing_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, states) = seeded(&src, 2);
    let rotate = |repo: &Repository| -> snapfs::Result<bool> {
        snapfs::rekey::target_epoch(repo)?;
        Ok(snapfs::rekey::rewrite(repo, &spilling())?.finished())
    };
    let mut points = 0;
    for k in 1.. {
        let image = mem.deep_copy();
        let faulty = Arc::new(FaultBackend::over_memory(image.clone(), Fault::PowerLoss { op: k }));
        if let Ok(repo) = open(faulty.clone(), LockMode::Prune) {
            let _ = rotate(&repo);
        }
        if faulty.ops() < k {
            break;
        }
        points += 1;
        // The lock of the process that lost power is stale only once it expires; it is gone here.
        snapfs::repo::lock::remove(&image, true).unwrap();
        let repo =
            open(Arc::new(image.clone()), LockMode::Prune).unwrap_or_else(|e| panic!("power loss at op {k}: {e}"));
        assert_eq!(verify(&repo, &states, &tmp.path().join("scratch")), 2, "power loss at op {k}");
        assert!(rotate(&repo).unwrap(), "op {k}: the rerun did not finish");
        assert!(all_under_one_epoch(&image), "op {k}: objects left under an old epoch");
        assert_eq!(verify(&repo, &states, &tmp.path().join("scratch")), 2, "op {k}, after the rerun");
    }
    eprintln!("key rotate --rewrite: power lost at {points} write points, nothing lost");
    assert!(points >= 5, "{points} write points: an epoch, packs, snapshots, a list, deletions");
}

#[test]
fn a_full_disk_at_any_write_of_a_key_rotation_is_an_error_that_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mem, states) = seeded(&src, 1);
    let mut points = 0;
    for k in 1.. {
        let image = mem.deep_copy();
        let faulty =
            Arc::new(FaultBackend::new(Arc::new(image.clone()), Fault::FailFrom { op: k, errno: libc::ENOSPC }));
        let result = open(faulty.clone(), LockMode::Prune).and_then(|repo| {
            repo.rotate_epoch()?;
            snapfs::rekey::rewrite(&repo, &spilling())
        });
        if faulty.ops() < k {
            break;
        }
        points += 1;
        if let Err(e) = &result {
            assert!(e.to_string().contains("No space left on device"), "op {k}: {e}");
        }
        snapfs::repo::lock::remove(&image, true).unwrap();
        let repo = open(Arc::new(image), LockMode::Prune).unwrap();
        assert_eq!(verify(&repo, &states, &tmp.path().join("scratch")), 1, "ENOSPC at op {k}");
    }
    assert!(points >= 3, "{points} write points");
}
