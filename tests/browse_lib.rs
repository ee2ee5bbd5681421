//! The browsing engines through the library, where their cost is visible: how many tree blobs
//! `history` reads when most snapshots share the subtree that holds the path.

use std::path::Path;
use std::sync::Arc;

use snapfs::archiver::{BackupOptions, backup};
use snapfs::backend::{Backend, MemoryBackend};
use snapfs::browse::history::history;
use snapfs::crypto::keyfile::KdfParams;
use snapfs::repo::{Cache, LockMode, Repository};

const PW: &[u8] = b"correct horse battery staple";

fn backup_at(repo: &Repository, src: &Path, time_ns: i64) {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        host: Some("test-host".into()),
        time_ns: Some(time_ns),
        ..Default::default()
    };
    backup(repo, &opts).unwrap();
}

#[test]
fn history_skips_the_subtrees_it_has_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap().join("base");
    let file = base.join("a/deep/file");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::create_dir_all(base.join("b")).unwrap();
    std::fs::write(&file, b"the file whose history we want").unwrap();

    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    drop(Repository::init(backend.clone(), PW, KdfParams::DEFAULT).unwrap());
    let repo = Repository::open(backend, PW, LockMode::Shared, "test").unwrap().load_index(&Cache::memory()).unwrap().0;
    // Every snapshot changes another part of the tree, so every root differs; the subtree `a`
    // that holds the file stays the same.
    const N: usize = 6;
    for i in 0..N {
        std::fs::write(base.join("b/other"), format!("change number {i}")).unwrap();
        backup_at(&repo, &base, 1_800_000_000_000_000_000 + i as i64);
    }
    let (snaps, bad) = repo.snapshots().unwrap();
    assert!(bad.is_empty() && snaps.len() == N);

    let h = history(&repo, &snaps, &file).unwrap();
    assert_eq!(h.versions.len(), 1);
    assert_eq!(h.versions[0].snapshots, (0..N).collect::<Vec<_>>());
    // The first snapshot reads every tree on the way to the file; each later one only those
    // from the root down to `base`, which changed, and then knows `a` by its id.
    let on_the_way = file.parent().unwrap().ancestors().count();
    let changing = base.ancestors().count();
    assert_eq!(h.trees_read as usize, on_the_way + (N - 1) * changing);
    assert!(h.trees_read < (N * on_the_way) as u64);
}
