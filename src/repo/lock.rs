//! Repository locks (format-spec §10): shared for backup and restore, exclusive for maintenance.
//! A lock held by a dead process on this host is stale and removed.

use std::fs;
use std::path::{Path, PathBuf};

use super::storage::{random_name, write_atomic};
use crate::error::{Error, IoContext, Result};
use crate::sys;

#[derive(Debug)]
pub struct LockInfo {
    pub path: PathBuf,
    pub host: String,
    pub pid: u32,
    pub time: String,
    pub exclusive: bool,
    pub command: String,
}

impl LockInfo {
    fn parse(path: PathBuf, text: &str) -> LockInfo {
        let get = |k: &str| {
            text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).unwrap_or("").to_string()
        };
        LockInfo {
            host: get("host"),
            pid: get("pid").parse().unwrap_or(0),
            time: get("time"),
            exclusive: get("exclusive") != "false",
            command: get("command"),
            path,
        }
    }

    pub fn is_stale(&self) -> bool {
        self.host == sys::hostname() && !sys::pid_alive(self.pid)
    }

    fn describe(&self) -> String {
        let kind = if self.exclusive { "exclusive" } else { "shared" };
        format!(
            "{kind} lock of `{}` (pid {} on {}, since {}); if that process is gone, run `snapfs unlock`",
            self.command, self.pid, self.host, self.time
        )
    }
}

/// Removes its lock file when dropped.
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

pub fn list(root: &Path) -> Result<Vec<LockInfo>> {
    let dir = root.join("locks");
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
        let path = e.ctx(|| format!("read {}", dir.display()))?.path();
        // A lock removed between listing and reading is simply gone.
        if let Ok(text) = fs::read_to_string(&path) {
            out.push(LockInfo::parse(path, &text));
        }
    }
    Ok(out)
}

/// Removes stale locks (or all with `all`), returning how many went.
pub fn remove(root: &Path, all: bool) -> Result<usize> {
    let mut n = 0;
    for l in list(root)? {
        if all || l.is_stale() {
            fs::remove_file(&l.path).ctx(|| format!("remove {}", l.path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The first live lock that conflicts with ours; stale locks met on the way are removed, so
/// those of killed processes do not pile up.
fn conflict(root: &Path, exclusive: bool, own: Option<&Path>) -> Result<Option<LockInfo>> {
    let mut found = None;
    for l in list(root)? {
        if Some(l.path.as_path()) == own {
            continue;
        }
        if l.is_stale() {
            let _ = fs::remove_file(&l.path);
        } else if (exclusive || l.exclusive) && found.is_none() {
            found = Some(l);
        }
    }
    Ok(found)
}

/// Takes a lock. Checks before and after writing ours so two racing processes cannot both win.
pub fn acquire(root: &Path, exclusive: bool, command: &str) -> Result<Lock> {
    if let Some(l) = conflict(root, exclusive, None)? {
        return Err(Error::Locked(l.describe()));
    }
    let path = root.join("locks").join(random_name(16)?);
    let text = format!(
        "host={}\npid={}\ntime={}\nexclusive={exclusive}\ncommand={command}\n",
        sys::hostname(),
        std::process::id(),
        jiff::Timestamp::now()
    );
    write_atomic(root, &path, text.as_bytes())?;
    let lock = Lock { path };
    if let Some(l) = conflict(root, exclusive, Some(&lock.path))? {
        return Err(Error::Locked(l.describe()));
    }
    Ok(lock)
}
