//! The index cache (format-spec §9): where it lives, and the catch-up that keeps it true to
//! the packs. The packs are the truth; the cache only saves reading their headers again.
//! Every command that needs the index runs the catch-up first, so a lost, damaged or stale
//! cache costs one line on stderr and the headers of the packs it lacks, never a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::hex;
use super::packs::{Header, PackFile, list_packs, read_header};
use crate::backend::Backend;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::pack::PackEntry;
use crate::id::Id;
use crate::index::{Index, PackInfo};

/// Pack headers read and indexed per transaction: bounds the memory of a cold catch-up.
const BATCH: usize = 64;

/// Where the index cache lives.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    /// The cache root (the index is `<dir>/<repository id>/index.redb`); `None`: in memory.
    pub dir: Option<PathBuf>,
    /// `check`'s view: every page of the file is checked on open (it must not trust an altered
    /// file), and packs that are gone stay listed, so check can name them instead of the cache
    /// forgetting them quietly.
    pub audit: bool,
    /// For a command that reads the index front to back and writes it in id order (prune, key
    /// rotation): a small page cache ([`crate::index::STREAMING_CACHE_SIZE`]), so that its
    /// memory does not grow with the index.
    pub streaming: bool,
    /// The command catches the index up itself before it reads it (prune does, right after
    /// listing the snapshots), so opening does not: on object storage that would be a second
    /// round of listings.
    pub deferred: bool,
}

impl Cache {
    pub fn dir(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: Some(dir.into()), ..Cache::default() }
    }

    pub fn memory() -> Cache {
        Cache::default()
    }

    /// `$XDG_CACHE_HOME/snapfs`, else `$HOME/.cache/snapfs`; in memory when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = || std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache"));
        xdg.or_else(home).map(|d| d.join("snapfs"))
    }

    pub fn audited(mut self) -> Cache {
        self.audit = true;
        self
    }

    pub fn streaming(mut self) -> Cache {
        self.streaming = true;
        self
    }

    pub fn deferred(mut self) -> Cache {
        self.deferred = true;
        self
    }

    /// The index file of a repository, when the cache is on disk.
    pub fn index_path(&self, repo_id: &[u8; 16]) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(hex(repo_id)).join("index.redb"))
    }

    /// The tree cache of a repository (see `treecache`), beside its index.
    pub fn trees_path(&self, repo_id: &[u8; 16]) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(hex(repo_id)).join("trees.redb"))
    }

    /// The key slot that opened this repository last time, tried first (restic's key hint):
    /// every slot tried before it costs a full Argon2 derivation.
    pub fn key_hint(&self, repo_id: &[u8; 16]) -> Option<String> {
        let path = self.dir.as_ref()?.join(hex(repo_id)).join("key-hint");
        let text = std::fs::read_to_string(path).ok()?;
        let name = text.trim();
        (name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit())).then(|| name.to_string())
    }

    /// Remembers the slot that opened; best effort (a read-only cache only costs time).
    pub fn remember_key(&self, repo_id: &[u8; 16], slot: &str) {
        if self.key_hint(repo_id).as_deref() == Some(slot) {
            return;
        }
        if let Some(d) = &self.dir {
            let dir = d.join(hex(repo_id));
            let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("key-hint"), slot));
        }
    }
}

/// What bringing the cache up to date did.
#[derive(Debug, Default)]
pub struct CatchUp {
    pub packs_added: u64,
    pub packs_removed: u64,
    pub headers_read: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    /// Why the cache was started afresh, when it was.
    pub rebuilt: Option<String>,
    /// This client had no cache for the repository yet (not worth a line by itself).
    pub fresh: bool,
    /// Why the index is in memory although a cache directory was asked for.
    pub in_memory: Option<String>,
    /// Packs whose header could not be read: left out until they can be (`check` names them).
    pub unreadable: Vec<(Id, Error)>,
    /// Blobs whose last known copy was in a pack that is gone.
    pub blobs_lost: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Packs prune has condemned (still readable, never deduplicated against).
    pub condemned: u64,
    /// Condemned-pack lists that could not be read.
    pub bad_lists: Vec<(String, Error)>,
    /// The pack listing and the condemned-pack lists the catch-up went by, for a caller that
    /// needs them next (prune): on object storage each listing is a round trip.
    pub listed: Vec<PackFile>,
    pub lists: Vec<super::condemned::Named>,
}

impl CatchUp {
    /// The one line a command prints about the cache, when there is anything to say.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(why) = &self.in_memory {
            parts.push(format!("kept in memory for this run ({why})"));
        }
        if let Some(why) = &self.rebuilt {
            parts.push(format!("rebuilt ({why})"));
        }
        if self.fresh && self.packs_added > 0 {
            parts.push("no cache for this repository yet".into());
        }
        if self.packs_added + self.packs_removed > 0 {
            parts.push(format!(
                "{} pack{} added, {} removed ({} header{} read, {}, {:.2} s)",
                self.packs_added,
                plural(self.packs_added),
                self.packs_removed,
                self.headers_read,
                plural(self.headers_read),
                bytes(self.bytes_read),
                self.seconds
            ));
        }
        if !self.unreadable.is_empty() {
            let n = self.unreadable.len() as u64;
            parts.push(format!("{n} pack{} with an unreadable header left out (run `snapfs check`)", plural(n)));
        }
        (!parts.is_empty()).then(|| format!("index: {}", parts.join("; ")))
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// Opens the cache for a repository and catches it up.
pub fn load(backend: &dyn Backend, keys: &Keys, repo_id: &[u8; 16], cache: &Cache) -> Result<(Index, CatchUp)> {
    let mut report = CatchUp::default();
    let mut index = match cache.index_path(repo_id) {
        None => Index::in_memory()?,
        Some(path) => match open_file(&path, cache, &mut report) {
            Ok(i) => i,
            Err(why) => {
                report.in_memory = Some(why);
                Index::in_memory()?
            }
        },
    };
    if !cache.deferred {
        catch_up(&index, backend, keys, !cache.audit, &mut report)?;
    }
    // Here, before this process opens a transaction of its own (see compact_if_bloated): what
    // the last backups left bloated is given back as the next command starts.
    index.compact_if_bloated();
    Ok((index, report))
}

/// Opens (or makes) the cache file; one that will not open as an index of this layout is
/// deleted and made anew. `Err` says why no file can be used at all.
fn open_file(path: &Path, cache: &Cache, report: &mut CatchUp) -> std::result::Result<Index, String> {
    let dir = path.parent().expect("a file in a directory");
    if let Err(e) = make_private_dir(dir) {
        return Err(format!("cannot create {}: {e}", dir.display()));
    }
    let existed = path.exists();
    let pages = if cache.streaming { crate::index::STREAMING_CACHE_SIZE } else { crate::index::CACHE_SIZE };
    match Index::open_with(path, cache.audit, pages) {
        Ok(i) => {
            report.fresh = !existed;
            Ok(i)
        }
        Err(Error::Index(why)) => {
            std::fs::remove_file(path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
            report.rebuilt = Some(why);
            Index::open_with(path, false, pages).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Brings `index` up to date with the packs the backend lists (format-spec §9): packs that
/// are gone are forgotten, packs it does not know have their headers read and are added.
pub fn catch_up(
    index: &Index,
    backend: &dyn Backend,
    keys: &Keys,
    forget_gone: bool,
    report: &mut CatchUp,
) -> Result<()> {
    let started = Instant::now();
    let (files, _) = list_packs(backend)?;
    let known: HashMap<Id, PackInfo> = index.packs()?.into_iter().collect();
    let on_disk: HashMap<Id, u64> = files.iter().map(|f| (f.id, f.size)).collect();
    // A pack whose size changed is not the pack the index knew: read it again.
    let gone: Vec<Id> = known
        .iter()
        .filter(|(id, info)| {
            on_disk.get(id).is_some_and(|s| *s != info.size) || (forget_gone && !on_disk.contains_key(id))
        })
        .map(|(id, _)| *id)
        .collect();
    report.blobs_lost += index.remove_packs(&gone)?;
    report.packs_removed += gone.len() as u64;
    let new: Vec<PackFile> =
        files.iter().filter(|f| known.get(&f.id).is_none_or(|i| i.size != f.size)).copied().collect();
    let verified: HashMap<Id, i64> = HashMap::new();
    add_packs(index, backend, keys, &new, &verified, report)?;
    report.packs = files.len() as u64;
    let (lists, bad) = super::condemned::load_all(backend, keys)?;
    let condemned: Vec<Id> = lists.iter().flat_map(|l| l.list.packs.iter().copied()).collect();
    index.set_condemned(&condemned)?;
    report.condemned = condemned.len() as u64;
    report.bad_lists = bad;
    report.listed = files;
    report.lists = lists;
    report.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

/// Reads the headers of `packs` in parallel, a batch at a time, and indexes the readable ones.
fn add_packs(
    index: &Index,
    backend: &dyn Backend,
    keys: &Keys,
    packs: &[PackFile],
    verified: &HashMap<Id, i64>,
    report: &mut CatchUp,
) -> Result<()> {
    for batch in packs.chunks(BATCH) {
        let read: Vec<(PackFile, Result<Header>)> =
            batch.par_iter().map(|p| (*p, read_header(backend, keys, p))).collect();
        let mut rows = Vec::with_capacity(read.len());
        for (p, h) in read {
            report.headers_read += 1;
            match h {
                Ok((entries, n)) => {
                    report.bytes_read += n;
                    let last_verified = verified.get(&p.id).copied().unwrap_or(0);
                    rows.push((p.id, PackInfo { size: p.size, blobs: entries.len() as u32, last_verified }, entries));
                }
                // A pack being deleted by prune between the listing and the read is gone, not bad.
                Err(e) if crate::backend::is_not_found(&e) => {}
                Err(e) => report.unreadable.push((p.id, e)),
            }
        }
        let refs: Vec<(Id, PackInfo, &[PackEntry])> = rows.iter().map(|(id, i, e)| (*id, *i, e.as_slice())).collect();
        index.add_packs(&refs)?;
        report.packs_added += refs.len() as u64;
    }
    Ok(())
}

/// `repair index`: a new cache from every pack header, written beside the old file and put in
/// its place only when complete; the verification times of the old file are kept when it opens.
pub fn rebuild(backend: &dyn Backend, keys: &Keys, repo_id: &[u8; 16], cache: &Cache) -> Result<(Index, CatchUp)> {
    let started = Instant::now();
    let mut report = CatchUp { rebuilt: Some("as asked".into()), ..Default::default() };
    let (files, _) = list_packs(backend)?;
    let Some(path) = cache.index_path(repo_id) else {
        let index = Index::in_memory()?;
        add_packs(&index, backend, keys, &files, &HashMap::new(), &mut report)?;
        report.packs = files.len() as u64;
        return Ok((index, report));
    };
    let dir = path.parent().expect("a file in a directory");
    make_private_dir(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let verified: HashMap<Id, i64> = match Index::open(&path, true) {
        Ok(old) => old.packs()?.into_iter().map(|(id, i)| (id, i.last_verified)).collect(),
        Err(_) => HashMap::new(),
    };
    let tmp = dir.join(format!("index-{}.redb.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let index = Index::open(&tmp, false)?;
    add_packs(&index, backend, keys, &files, &verified, &mut report)?;
    drop(index);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("rename into {}", path.display()), e))?;
    let index = Index::open(&path, false)?;
    report.packs = files.len() as u64;
    report.seconds = started.elapsed().as_secs_f64();
    Ok((index, report))
}
