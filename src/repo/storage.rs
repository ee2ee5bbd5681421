//! Files in the repository directory: crash-safe writes and the paths of each object kind.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::crypto::random_bytes;
use crate::error::{IoContext, Result};
use crate::id::Id;

pub fn pack_path(root: &Path, id: &Id) -> PathBuf {
    let h = id.hex();
    root.join("packs").join(&h[..2]).join(h)
}

pub fn snapshot_path(root: &Path, id: &Id) -> PathBuf {
    root.join("snapshots").join(id.hex())
}

pub fn random_name(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    random_bytes(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Writes a file so that a crash leaves either nothing or the whole file under `dest`:
/// temp name in `tmp/`, fsync, rename, fsync of the directory.
pub fn write_atomic(root: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let tmp = root.join("tmp").join(format!("{}.tmp", random_name(12)?));
    let result = (|| {
        let mut f = File::create_new(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(data).ctx(|| format!("write {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        drop(f);
        let dir = dest.parent().expect("repository paths have a parent");
        fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        fs::rename(&tmp, dest).ctx(|| format!("rename into {}", dest.display()))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(|| format!("fsync directory {}", dir.display()))
}

/// Removes temp files left by killed processes. Only files older than `min_age` go: a live
/// writer renames its temp file within seconds, so an old one has no owner.
pub fn clean_tmp(root: &Path, min_age: std::time::Duration) -> Result<usize> {
    let dir = root.join("tmp");
    let mut n = 0;
    for e in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
        let Ok(e) = e else { continue };
        let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= min_age));
        if old && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}
