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
    Shared,
    Exclusive,
}

#[derive(Debug, Clone)]
pub struct LockInfo {
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub time: Timestamp,
    pub expires: Timestamp,
    pub exclusive: bool,
    pub command: String,
}

impl LockInfo {
    /// `None` for anything that is not a whole lock: such a file blocks nobody.
    pub fn parse(name: &str, text: &str) -> Option<LockInfo> {
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')));
        Some(LockInfo {
            name: name.to_string(),
            host: get("host").filter(|h| !h.is_empty())?.to_string(),
            pid: get("pid")?.parse().ok()?,
            time: get("time")?.parse().ok()?,
            expires: get("expires")?.parse().ok()?,
            exclusive: match get("exclusive")? {
                "true" => true,
                "false" => false,
                _ => return None,
            },
            command: get("command").unwrap_or("").to_string(),
        })
    }

    fn encode(&self) -> String {
        format!(
            "host={}\npid={}\ntime={}\nexpires={}\nexclusive={}\ncommand={}\n",
            self.host, self.pid, self.time, self.expires, self.exclusive, self.command
        )
    }

    /// Expired, or held by a process of this host that is gone.
    pub fn is_stale(&self) -> bool {
        self.expires < Timestamp::now() || (self.host == sys::hostname() && !sys::pid_alive(self.pid))
    }

    fn describe(&self) -> String {
        let kind = if self.exclusive { "exclusive" } else { "shared" };
        format!(
            "{kind} lock of `{}` (pid {} on {}, since {}, expires {} unless refreshed); \
             if that process is gone, run `snapfs unlock`",
            self.command, self.pid, self.host, self.time, self.expires
        )
    }
}

/// Every lock object: the parsed ones, and the names of those that are not locks.
pub fn list(backend: &dyn Backend) -> Result<(Vec<LockInfo>, Vec<String>)> {
    let mut locks = Vec::new();
    let mut junk = Vec::new();
    for (name, _) in backend.list(Kind::Lock)? {
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
    let (locks, junk) = list(backend)?;
    let mut n = 0;
    for name in locks.iter().filter(|l| all || l.is_stale()).map(|l| &l.name).chain(&junk) {
        backend.delete(Kind::Lock, name)?;
        n += 1;
    }
    Ok(n)
}

/// The first live lock that conflicts with ours; stale locks met on the way are removed, so
/// those of killed processes do not pile up.
fn conflict(backend: &dyn Backend, exclusive: bool, own: Option<&str>) -> Result<Option<LockInfo>> {
    let (locks, _) = list(backend)?;
    let mut found = None;
    for l in locks {
        if Some(l.name.as_str()) == own {
            continue;
        }
        if l.is_stale() {
            let _ = backend.delete(Kind::Lock, &l.name);
        } else if (exclusive || l.exclusive) && found.is_none() {
            found = Some(l);
        }
    }
    Ok(found)
}

/// A held lock: refreshed in the background, removed when dropped.
pub struct Lock {
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    backend: Arc<dyn Backend>,
    name: Arc<Mutex<String>>,
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

fn write_lock(backend: &dyn Backend, exclusive: bool, command: &str) -> Result<String> {
    let now = Timestamp::now();
    let expires = now.checked_add(SignedDuration::try_from(EXPIRY).expect("small")).unwrap_or(now);
    let info = LockInfo {
        name: String::new(),
        host: sys::hostname(),
        pid: std::process::id(),
        time: now,
        expires,
        exclusive,
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
    let exclusive = match mode {
        LockMode::None => return Ok(None),
        LockMode::Shared => false,
        LockMode::Exclusive => true,
    };
    if let Some(l) = conflict(backend.as_ref(), exclusive, None)? {
        return Err(Error::Locked(l.describe()));
    }
    let name = write_lock(backend.as_ref(), exclusive, command)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let name = Arc::new(Mutex::new(name));
    let mut lock = Lock { stop: Some(stop), refresher: None, backend: backend.clone(), name: name.clone() };
    let current = name.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(l) = conflict(backend.as_ref(), exclusive, Some(&current))? {
        return Err(Error::Locked(l.describe()));
    }
    let (backend, command) = (backend.clone(), command.to_string());
    lock.refresher = Some(std::thread::spawn(move || {
        // A new lock object first, then the old one goes: never a moment without one.
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
            let Ok(fresh) = write_lock(backend.as_ref(), exclusive, &command) else { continue };
            let old = std::mem::replace(&mut *name.lock().unwrap_or_else(|e| e.into_inner()), fresh);
            let _ = backend.delete(Kind::Lock, &old);
        }
    }));
    Ok(Some(lock))
}
