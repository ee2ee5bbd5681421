//! A repository in a local directory: one file per object, written under `tmp/`, fsynced,
//! linked into place without replacing anything, and every directory the write created or
//! changed fsynced up to the repository root (format-spec §10.1).
//!
//! Permissions follow restic's rule: private (files 0600, key slots 0400, directories 0700),
//! unless the config file is group-readable — the owner made the repository group-accessible
//! (`chmod -R g+rX`) — and then what is created is group-readable too (0640, 0440, 0750), so it
//! stays that way. The umask can only take bits away.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use super::{Backend, Kind};
use crate::error::{Error, IoContext, Result};

/// Open files kept for positioned reads; enough for restore's workers and a mount.
const OPEN_FILES: usize = 64;
/// A staging file this old has no live writer: one renames its file within seconds.
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);

pub struct LocalBackend {
    root: PathBuf,
    /// By kind and name: looked up before any path is built, once per blob read.
    open: Mutex<HashMap<Kind, HashMap<String, Arc<File>>>>,
    cleaned: Once,
    modes: OnceLock<Modes>,
}

/// The permissions of what this backend creates (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Modes {
    dir: u32,
    file: u32,
}

impl Modes {
    const PRIVATE: Modes = Modes { dir: 0o700, file: 0o600 };
    const GROUP: Modes = Modes { dir: 0o750, file: 0o640 };

    fn of(root: &Path) -> Modes {
        match fs::metadata(root.join("config")) {
            Ok(m) if m.mode() & 0o040 != 0 => Modes::GROUP,
            _ => Modes::PRIVATE,
        }
    }

    /// Key slots are read-only: nothing ever rewrites one in place.
    fn object(self, kind: Kind) -> u32 {
        if kind == Kind::Key { self.file & 0o440 } else { self.file }
    }
}

impl LocalBackend {
    pub fn new(root: &Path) -> LocalBackend {
        LocalBackend {
            root: root.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            cleaned: Once::new(),
            modes: OnceLock::new(),
        }
    }

    fn modes(&self) -> Modes {
        *self.modes.get_or_init(|| Modes::of(&self.root))
    }

    /// Refuses a directory that already holds anything: `init` must not mix with other files.
    pub fn check_empty(&self) -> Result<()> {
        match fs::read_dir(&self.root).map(|mut e| e.next().is_some()) {
            Ok(true) => Err(Error::NotEmpty(self.root.clone())),
            Ok(false) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotADirectory => {
                Err(Error::Invalid(format!("{} is not a directory", self.root.display())))
            }
            Err(e) => Err(Error::io(format!("read {}", self.root.display()), e)),
        }
    }

    fn path(&self, kind: Kind, name: &str) -> PathBuf {
        match kind {
            Kind::Config => self.root.join("config"),
            Kind::Pack => self.root.join("packs").join(name.get(..2).unwrap_or("__")).join(name),
            _ => self.root.join(kind.dir()).join(name),
        }
    }

    fn file(&self, kind: Kind, name: &str) -> Result<Arc<File>> {
        if let Some(f) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&kind).and_then(|m| m.get(name)) {
            return Ok(f.clone());
        }
        let path = self.path(kind, name);
        let f = Arc::new(File::open(&path).ctx(|| format!("open {}", path.display()))?);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let files = open.entry(kind).or_default();
        if files.len() >= OPEN_FILES {
            files.clear();
        }
        files.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Creates `dir` and any missing parent below the root, fsyncing each parent that gained
    /// an entry, so the new directory survives a power loss with the file put in it.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if dir == self.root {
            // The repository's own directory (made by `init`): its parents are not ours to sync,
            // nor to make private.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
            }
            return match self.dir_builder().create(dir) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                    Err(Error::io(format!("create {}", dir.display()), e))
                }
                _ => Ok(()),
            };
        }
        if let Some(parent) = dir.parent()
            && dir != self.root
        {
            self.ensure_dir(parent)?;
        }
        match self.dir_builder().create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
        }
        match dir.parent() {
            Some(parent) if dir != self.root => sync_dir(parent),
            _ => Ok(()),
        }
    }

    /// Writes `data` to a staging file, makes it durable, and `place`s it at the object's path.
    fn stage(
        &self,
        kind: Kind,
        name: &str,
        data: &[u8],
        place: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
    ) -> Result<()> {
        self.cleaned.call_once(|| self.clean_tmp());
        let dest = self.path(kind, name);
        let tmp_dir = self.root.join("tmp");
        self.ensure_dir(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{}-{}.tmp", writer_tag(), random_name()?));
        let result = (|| {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .mode(self.modes().object(kind))
                .open(&tmp)
                .ctx(|| format!("create {}", tmp.display()))?;
            f.write_all(data).ctx(|| format!("write {}", tmp.display()))?;
            f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
            drop(f);
            let dir = dest.parent().expect("object paths have a parent");
            self.ensure_dir(dir)?;
            place(&tmp, &dest).ctx(|| format!("write {}", dest.display()))?;
            sync_dir(dir)
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    fn dir_builder(&self) -> fs::DirBuilder {
        let mut b = fs::DirBuilder::new();
        b.mode(self.modes().dir);
        b
    }

    /// Removes staging files of writers gone: at once when the file names a process of this
    /// machine that no longer runs, else (another machine's, or an older name) after an hour.
    /// Best effort, once per process.
    fn clean_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        let here = machine_tag();
        for e in entries.flatten() {
            let dead = e
                .file_name()
                .to_str()
                .and_then(tmp_writer)
                .is_some_and(|(m, pid)| m == here && !crate::sys::pid_alive(pid));
            let old =
                || e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= TMP_MAX_AGE));
            if dead || old() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// This machine and pid namespace, in 16 hex digits: a pid is meaningful only inside both
/// (containers sharing a repository directory see other pids).
fn machine_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let ns = fs::read_link("/proc/self/ns/pid").map(|p| p.into_os_string()).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(crate::sys::hostname().as_bytes()).update(b"\0").update(ns.as_encoded_bytes());
        h.finalize().as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The writer part of a staging file's name: `<machine>-<pid>`.
fn writer_tag() -> String {
    format!("{}-{}", machine_tag(), std::process::id())
}

/// The machine tag and pid of a staging file's writer, when its name says (`<machine>-<pid>-
/// <random>.tmp`; older versions wrote only `<random>.tmp`).
fn tmp_writer(name: &str) -> Option<(&str, u32)> {
    let mut parts = name.strip_suffix(".tmp")?.split('-');
    let (machine, pid, _random) = (parts.next()?, parts.next()?, parts.next()?);
    (machine.len() == 16 && parts.next().is_none()).then_some(())?;
    Some((machine, pid.parse().ok()?))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(|| format!("fsync directory {}", dir.display()))
}

fn random_name() -> Result<String> {
    let mut b = [0u8; 12];
    crate::crypto::random_bytes(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Backend for LocalBackend {
    fn staging_files(&self) -> Vec<(String, Duration)> {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return Vec::new() };
        let mut out: Vec<(String, Duration)> = entries
            .flatten()
            .map(|e| {
                let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                (format!("tmp/{}", e.file_name().to_string_lossy()), age.unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    }

    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        // A link, not a rename: it fails instead of replacing an object that exists.
        self.stage(kind, name, data, |tmp, dest| fs::hard_link(tmp, dest))
    }

    fn replace(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let dest = self.path(kind, name);
        fs::symlink_metadata(&dest).ctx(|| format!("replace {}", dest.display()))?;
        if let Some(files) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&kind) {
            files.remove(name);
        }
        self.stage(kind, name, data, |tmp, dest| fs::rename(tmp, dest))
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        fs::read(&path).ctx(|| format!("read {}", path.display()))
    }

    fn read_at(&self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let f = self.file(kind, name)?;
        f.read_exact_at(buf, offset)
            .ctx(|| format!("read {} bytes at {offset} of {}", buf.len(), self.path(kind, name).display()))
    }

    fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        if kind == Kind::Config {
            if let Ok(m) = fs::metadata(self.path(kind, "")) {
                out.push(("config".to_string(), m.len()));
            }
            return Ok(out);
        }
        let dir = self.root.join(kind.dir());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
        };
        // An object deleted between the listing and its stat (forget, prune, an unlock) is
        // simply not listed.
        let stat = |e: &fs::DirEntry| match e.metadata() {
            Ok(m) => Ok(Some(m)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Error::io(format!("stat {}", e.path().display()), err)),
        };
        for e in entries {
            let e = e.ctx(|| format!("read {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(meta) = stat(&e)? else { continue };
            if kind != Kind::Pack || !meta.is_dir() {
                out.push((name, meta.len()));
                continue;
            }
            // packs/<2 hex>/<name>: a name outside its prefix directory is listed with the
            // directory, so it cannot pass for a pack id.
            let sub = e.path();
            for f in fs::read_dir(&sub).ctx(|| format!("read {}", sub.display()))? {
                let f = f.ctx(|| format!("read {}", sub.display()))?;
                let fname = f.file_name().to_string_lossy().into_owned();
                let Some(size) = stat(&f)?.map(|m| m.len()) else { continue };
                out.push((if fname.starts_with(&name) { fname } else { format!("{name}/{fname}") }, size));
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        if let Some(files) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&kind) {
            files.remove(name);
        }
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("object paths have a parent")),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}
