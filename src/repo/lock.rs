//! Repository locks (format-spec §10): shared for backup, restore, mount and check, exclusive
//! for maintenance. A lock expires unless its holder refreshes it, so a dead machine cannot
//! block a repository forever; one of a dead process on this host is stale at once.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::backend::{Backend, Kind};
use crate::error::{Error, Result};
use crate::sys;

/// How long a lock counts without a refresh.
pub const EXPIRY: Duration = Duration::from_secs(30 * 60);
/// How often a holder writes a fresh lock.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// No lock: for commands that only read and must work on read-only storage.
    None,
    /// A shared lock when one can be written; none on read-only or full storage (restore,
    /// mount and check must work there: an emergency restore from a write-protected disk).
    Reader,
    /// A shared lock, required (backup: it writes, and prune must see it).
    Shared,
    /// forget and prune: beside backups and mounts (shared locks), never beside another prune
    /// or an exclusive lock. Prune's deletions are made safe by the lock times instead
    /// (format-spec §11).
    Prune,
    Exclusive,
}

#[derive(Debug, Clone)]
pub struct LockInfo {
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub time: Timestamp,
    pub expires: Timestamp,
    /// When the holder first took the lock; refreshes keep it. Prune compares it with the
    /// time packs were condemned: a holder that started before may still use them.
    pub started: Timestamp,
    pub exclusive: bool,
    /// A forget or prune lock (see [`LockMode::Prune`]).
    pub prune: bool,
    pub command: String,
}

impl LockInfo {
    /// `None` for anything that is not a whole lock: such a file blocks nobody.
    pub fn parse(name: &str, text: &str) -> Option<LockInfo> {
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')));
        let flag = |v: &str| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        let time: Timestamp = get("time")?.parse().ok()?;
        Some(LockInfo {
            name: name.to_string(),
            host: get("host").filter(|h| !h.is_empty())?.to_string(),
            pid: get("pid")?.parse().ok()?,
            time,
            expires: get("expires")?.parse().ok()?,
            // Absent: as old as the file, the safe side for prune.
            started: get("started").map_or(Some(time), |s| s.parse().ok())?.min(time),
            exclusive: flag(get("exclusive")?)?,
            prune: get("prune").map_or(Some(false), flag)?,
            command: get("command").unwrap_or("").to_string(),
        })
    }

    fn encode(&self) -> String {
        format!(
            "host={}\npid={}\ntime={}\nexpires={}\nstarted={}\nexclusive={}\nprune={}\ncommand={}\n",
            self.host, self.pid, self.time, self.expires, self.started, self.exclusive, self.prune, self.command
        )
    }

    /// Expired, or held by a process of this host that is gone.
    pub fn is_stale(&self) -> bool {
        self.expires < Timestamp::now() || (self.host == sys::hostname() && !sys::pid_alive(self.pid))
    }

    fn describe(&self) -> String {
        let kind = if self.exclusive {
            "exclusive"
        } else if self.prune {
            "prune"
        } else {
            "shared"
        };
        format!(
            "{kind} lock of `{}` (pid {} on {}, since {}, expires {} unless refreshed); \
             if that process is gone, run `snapfs unlock`",
            self.command, self.pid, self.host, self.time, self.expires
        )
    }
}

/// Every lock object but `skip` (the caller's own, which needs no round trip to read): the
/// parsed ones, and the names of those that are not locks.
pub fn list(backend: &dyn Backend, skip: Option<&str>) -> Result<(Vec<LockInfo>, Vec<String>)> {
    let mut locks = Vec::new();
    let mut junk = Vec::new();
    for (name, _) in backend.list(Kind::Lock)?.into_iter().filter(|(n, _)| Some(n.as_str()) != skip) {
        // A lock removed between listing and reading is simply gone.
        let Ok(raw) = backend.read(Kind::Lock, &name) else { continue };
        match std::str::from_utf8(&raw).ok().and_then(|t| LockInfo::parse(&name, t)) {
            Some(l) => locks.push(l),
            None => junk.push(name),
        }
    }
    Ok((locks, junk))
}

/// Removes stale locks and files that are not locks (or every lock with `all`); returns how
/// many went.
pub fn remove(backend: &dyn Backend, all: bool) -> Result<usize> {
    let (locks, junk) = list(backend, None)?;
    let mut n = 0;
    for name in locks.iter().filter(|l| all || l.is_stale()).map(|l| &l.name).chain(&junk) {
        backend.delete(Kind::Lock, name)?;
        n += 1;
    }
    Ok(n)
}

/// The first live lock that conflicts with ours; stale locks met on the way are removed, so
/// those of killed processes do not pile up.
fn conflict(backend: &dyn Backend, mode: LockMode, own: Option<&str>) -> Result<Option<LockInfo>> {
    let (locks, _) = list(backend, own)?;
    let mut found = None;
    for l in locks {
        let clash = match mode {
            LockMode::Exclusive => true,
            LockMode::Prune => l.exclusive || l.prune,
            _ => l.exclusive,
        };
        if l.is_stale() {
            let _ = backend.delete(Kind::Lock, &l.name);
        } else if clash && found.is_none() {
            found = Some(l);
        }
    }
    Ok(found)
}

fn cannot_write(e: &Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e, Error::Io { cause, .. }
        if matches!(cause.kind(), K::ReadOnlyFilesystem | K::StorageFull | K::PermissionDenied | K::QuotaExceeded))
}

/// Removes the locks this process holds, for one that is about to exit on a signal without
/// unwinding (a reader: it has nothing in flight to finish). Found by host and pid, so a lock
/// renamed by a refresh meanwhile is found too.
pub fn remove_own(backend: &dyn Backend) -> Result<usize> {
    let (locks, _) = list(backend, None)?;
    let (host, pid) = (sys::hostname(), std::process::id());
    let mine: Vec<LockInfo> = locks.into_iter().filter(|l| l.pid == pid && l.host == host).collect();
    for l in &mine {
        backend.delete(Kind::Lock, &l.name)?;
    }
    Ok(mine.len())
}

/// A held lock: refreshed in the background, removed when dropped.
pub struct Lock {
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    backend: Arc<dyn Backend>,
    /// The lock's own object name now (it changes at each refresh).
    name: Arc<Mutex<String>>,
}

impl Lock {
    pub fn name(&self) -> String {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let name = self.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = self.backend.delete(Kind::Lock, &name);
    }
}

fn write_lock(backend: &dyn Backend, mode: LockMode, started: Timestamp, command: &str) -> Result<String> {
    let now = Timestamp::now();
    let expires = now.checked_add(SignedDuration::try_from(EXPIRY).expect("small")).unwrap_or(now);
    let info = LockInfo {
        name: String::new(),
        host: sys::hostname(),
        pid: std::process::id(),
        time: now,
        expires,
        started,
        exclusive: mode == LockMode::Exclusive,
        prune: mode == LockMode::Prune,
        command: command.to_string(),
    };
    let mut raw = [0u8; 16];
    crate::crypto::random_bytes(&mut raw)?;
    let name = super::hex(&raw);
    backend.write(Kind::Lock, &name, info.encode().as_bytes())?;
    Ok(name)
}

/// The longest pause between two tries of [`acquire_retrying`].
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(30);

/// As [`acquire`], trying again while a conflicting lock is held, for up to `retry`; the pause
/// doubles from 1 s, so a lock released soon is noticed soon without polling a remote store
/// every second for an hour.
pub fn acquire_retrying(
    backend: &Arc<dyn Backend>,
    mode: LockMode,
    command: &str,
    retry: Duration,
) -> Result<Option<Lock>> {
    let deadline = Instant::now() + retry;
    let mut pause = Duration::from_secs(1);
    loop {
        match acquire(backend, mode, command) {
            Err(Error::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(RETRY_MAX_PAUSE);
            }
            r => return r,
        }
    }
}

/// Takes a lock, or none for [`LockMode::None`]. Checks before and after writing ours so two
/// racing processes cannot both win.
pub fn acquire(backend: &Arc<dyn Backend>, mode: LockMode, command: &str) -> Result<Option<Lock>> {
    acquire_refreshing(backend, mode, command, REFRESH)
}

/// [`acquire`] with another refresh interval (tests).
pub fn acquire_refreshing(
    backend: &Arc<dyn Backend>,
    mode: LockMode,
    command: &str,
    refresh: Duration,
) -> Result<Option<Lock>> {
    if mode == LockMode::None {
        return Ok(None);
    }
    if let Some(l) = conflict(backend.as_ref(), mode, None)? {
        return Err(Error::Locked(l.describe()));
    }
    let started = Timestamp::now();
    let name = match write_lock(backend.as_ref(), mode, started, command) {
        Ok(name) => name,
        // A reader on a full or read-only disk (an emergency restore) goes on without a lock;
        // the caller warns. Writers need theirs.
        Err(e) if mode == LockMode::Reader && cannot_write(&e) => return Err(Error::Unlocked(e.to_string())),
        Err(e) => return Err(e),
    };
    let (stop, stopped) = mpsc::channel::<()>();
    let name = Arc::new(Mutex::new(name));
    let mut lock = Lock { stop: Some(stop), refresher: None, backend: backend.clone(), name: name.clone() };
    let current = name.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(l) = conflict(backend.as_ref(), mode, Some(&current))? {
        return Err(Error::Locked(l.describe()));
    }
    let (backend, command) = (backend.clone(), command.to_string());
    lock.refresher = Some(std::thread::spawn(move || {
        // A new lock object first, then the old one goes: never a moment without one.
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(refresh) {
            let Ok(fresh) = write_lock(backend.as_ref(), mode, started, &command) else { continue };
            let old = std::mem::replace(&mut *name.lock().unwrap_or_else(|e| e.into_inner()), fresh);
            let _ = backend.delete(Kind::Lock, &old);
        }
    }));
    Ok(Some(lock))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn a_held_lock_is_refreshed_and_removed_when_dropped() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let lock = acquire_refreshing(&backend, LockMode::Shared, "test", Duration::from_millis(50)).unwrap().unwrap();
        let (first, _) = list(backend.as_ref(), None).unwrap();
        assert_eq!(first.len(), 1);
        std::thread::sleep(Duration::from_millis(300));
        let (now, junk) = list(backend.as_ref(), None).unwrap();
        assert!(junk.is_empty());
        assert_eq!(now.len(), 1, "a refresh replaces the lock, it does not add one");
        assert_ne!(now[0].name, first[0].name, "not refreshed");
        assert!(now[0].time > first[0].time && now[0].expires > first[0].expires);
        assert_eq!(now[0].started, first[0].started, "a refresh keeps when the holder started");
        assert_eq!(lock.name(), now[0].name);
        drop(lock);
        assert!(list(backend.as_ref(), None).unwrap().0.is_empty());
    }

    #[test]
    fn prune_locks_exclude_each_other_but_not_shared_ones() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let _backup = acquire(&backend, LockMode::Shared, "backup").unwrap();
        let prune = acquire(&backend, LockMode::Prune, "prune").unwrap();
        assert!(matches!(acquire(&backend, LockMode::Prune, "prune"), Err(Error::Locked(_))));
        assert!(matches!(acquire(&backend, LockMode::Exclusive, "x"), Err(Error::Locked(_))));
        assert!(acquire(&backend, LockMode::Shared, "another backup").unwrap().is_some());
        drop(prune);
        assert!(acquire(&backend, LockMode::Prune, "prune").unwrap().is_some());
    }
}
