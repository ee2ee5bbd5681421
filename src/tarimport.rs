//! `import --tar`: a snapshot made from a tar stream (borg's `import-tar`), with the metadata the
//! archive carries. Names are untrusted: a leading `/` or `./` is dropped, and an entry whose
//! path has a `..` component is refused, so the snapshot never holds a name outside its root.

use std::collections::BTreeMap;
use std::io::Read;

use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{self, Kind, Node, Time};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::packer::{self, Packer};
use crate::sys;

pub struct TarOptions {
    /// The absolute path the archive's root becomes in the snapshot (`/` when not given).
    pub path: String,
    pub time_ns: Option<i64>,
    pub hostname: String,
    pub tags: Vec<String>,
}

#[derive(Debug)]
pub struct TarImported {
    pub snapshot: Id,
    pub summary: Summary,
}

enum Entry {
    Dir(Dir),
    Leaf(Node),
}

#[derive(Default)]
struct Dir {
    /// The archive's entry for this directory; directories it only implies get defaults.
    node: Option<Node>,
    children: BTreeMap<Vec<u8>, Entry>,
}

/// The components of an archive name, or why it is refused.
fn components(name: &[u8]) -> Result<Vec<Vec<u8>>> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".") {
        if c == b".." {
            return Err(Error::Invalid(format!("tar entry {:?}: `..` in its name; refusing the archive", shown())));
        }
        if !tree::valid_name(c) {
            return Err(Error::Invalid(format!("tar entry {:?}: not a valid name", shown())));
        }
        out.push(c.to_vec());
    }
    Ok(out)
}

impl Dir {
    /// The directory at `path`, made (with defaults) where the archive did not list it.
    fn dir_mut(&mut self, path: &[Vec<u8>]) -> Result<&mut Dir> {
        let mut d = self;
        for c in path {
            let e = d.children.entry(c.clone()).or_insert_with(|| Entry::Dir(Dir::default()));
            d = match e {
                Entry::Dir(sub) => sub,
                Entry::Leaf(_) => {
                    return Err(Error::Invalid(format!(
                        "tar entry below {:?}, which the archive has as a file",
                        String::from_utf8_lossy(c)
                    )));
                }
            };
        }
        Ok(d)
    }

    fn leaf(&self, path: &[Vec<u8>]) -> Option<&Node> {
        let (last, parents) = path.split_last()?;
        let mut d = self;
        for c in parents {
            d = match d.children.get(c)? {
                Entry::Dir(sub) => sub,
                Entry::Leaf(_) => return None,
            };
        }
        match d.children.get(last)? {
            Entry::Leaf(n) => Some(n),
            Entry::Dir(_) => None,
        }
    }
}

fn dir_node(name: &[u8], time: Time) -> Node {
    Node::made_up(name, Kind::Dir, 0o755, time)
}

/// Stores a directory's trees bottom-up; returns its tree id.
fn store(p: &Packer, dir: Dir, time: Time, s: &mut Summary) -> Result<Id> {
    let mut nodes = Vec::with_capacity(dir.children.len());
    for (name, e) in dir.children {
        match e {
            Entry::Leaf(mut n) => {
                n.name = name;
                nodes.push(n);
            }
            Entry::Dir(sub) => {
                let mut n = sub.node.clone().unwrap_or_else(|| dir_node(&name, time));
                n.name = name;
                n.content = vec![store(p, sub, time, s)?];
                nodes.push(n);
            }
        }
    }
    s.dirs_new += 1;
    p.add(ObjType::Tree, &tree::encode(&nodes))
}

/// Reads a whole archive into a snapshot. Everything is stored before the snapshot is written,
/// so an archive that fails half-way (cut short, a refused name) leaves no snapshot.
pub fn import_tar(repo: &Repository, input: impl Read, opts: &TarOptions) -> Result<TarImported> {
    let started = std::time::Instant::now();
    let time_ns = opts.time_ns.unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as i64);
    let now = Time { sec: time_ns.div_euclid(1_000_000_000), nsec: time_ns.rem_euclid(1_000_000_000) as u32 };
    let at = components(opts.path.as_bytes())?;
    if !opts.path.starts_with('/') {
        return Err(Error::Invalid(format!("--path {:?} must be absolute", opts.path)));
    }
    let mut summary = Summary::default();
    let (tree, added) = packer::with_packer(repo, false, |p| {
        let mut root = Dir::default();
        let mut archive = tar::Archive::new(input);
        let mut ino = 0u64;
        let bad = |e: std::io::Error| Error::io("read tar archive", e);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = entry.path_bytes().into_owned();
            let path = components(&name)?;
            let node = node_of(&mut entry, &root, &mut ino, now)?;
            let Some(mut node) = node else { continue };
            if node.kind == Kind::File && node.content.is_empty() && node.size > 0 {
                let before = summary.bytes_read;
                node.content = chunks(repo, p, &mut entry, &mut summary)?;
                if summary.bytes_read - before != node.size {
                    return Err(Error::Invalid(format!(
                        "tar entry {:?}: the archive ends inside it",
                        String::from_utf8_lossy(&name)
                    )));
                }
            }
            let Some((last, parents)) = path.split_last() else {
                // The archive's own root (`./`): its metadata goes to the directory at `--path`.
                if node.kind == Kind::Dir {
                    root.node = Some(node);
                }
                continue;
            };
            let parent = root.dir_mut(parents)?;
            if node.kind == Kind::Dir {
                let d = parent.dir_mut(std::slice::from_ref(last))?;
                d.node = Some(node);
            } else {
                if node.kind == Kind::File {
                    summary.files_new += 1;
                    summary.total_files += 1;
                    summary.total_bytes += node.size;
                }
                parent.children.insert(last.clone(), Entry::Leaf(node));
            }
        }
        // The archive's root sits at `path`, below directories it does not describe.
        let mut top = root;
        for c in at.iter().rev() {
            let mut up = Dir::default();
            up.children.insert(c.clone(), Entry::Dir(top));
            top = up;
        }
        store(p, top, now, &mut summary)
    })?;
    summary.data_blobs_added = added.data_blobs;
    summary.bytes_added = added.bytes;
    summary.duration_ns = started.elapsed().as_nanos() as u64;
    let snap = Snapshot {
        time_ns,
        tree,
        parent: None,
        hostname: opts.hostname.clone(),
        username: sys::user_name(sys::uid()),
        uid: sys::uid(),
        gid: sys::gid(),
        paths: vec![opts.path.clone()],
        tags: opts.tags.clone(),
        description: String::new(),
        program_version: format!("snapfs {}", env!("CARGO_PKG_VERSION")),
        summary: summary.clone(),
        original: None,
    };
    Ok(TarImported { snapshot: repo.save_snapshot(&snap)?, summary })
}

/// The node an entry describes (its name is set when its tree is stored); `None` for entries
/// that describe nothing stored (GNU volume labels and the like).
fn node_of<R: Read>(entry: &mut tar::Entry<R>, root: &Dir, ino: &mut u64, now: Time) -> Result<Option<Node>> {
    let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let what = || format!("tar entry {shown:?}");
    let h = entry.header();
    let bad = |e: std::io::Error| Error::Invalid(format!("{}: {e}", what()));
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Char => Kind::CharDev,
        tar::EntryType::Block => Kind::BlockDev,
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::Link => {
            let target = components(&h.link_name_bytes().unwrap_or_default())?;
            let n = root.leaf(&target).ok_or_else(|| {
                Error::Invalid(format!("{}: a hard link to an entry the archive has not shown", what()))
            })?;
            return Ok(Some(n.clone()));
        }
        _ => return Ok(None),
    };
    let mtime = Time { sec: h.mtime().map_err(bad)? as i64, nsec: 0 };
    let mtime = pax_time(entry, "mtime").unwrap_or(mtime);
    let h = entry.header();
    let dev = |v: std::io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
    let rdev = libc::makedev(dev(h.device_major()), dev(h.device_minor()));
    *ino += 1;
    let mut node = dir_node(b"", now);
    node.kind = kind;
    node.mode = h.mode().map_err(bad)? & 0o7777;
    node.uid = h.uid().map_err(bad)? as u32;
    node.gid = h.gid().map_err(bad)? as u32;
    node.user = h.username().ok().flatten().unwrap_or("").to_string();
    node.group = h.groupname().ok().flatten().unwrap_or("").to_string();
    node.mtime = mtime;
    node.ctime = mtime;
    node.ino = *ino;
    node.rdev = if matches!(kind, Kind::CharDev | Kind::BlockDev) { rdev } else { 0 };
    node.link_target =
        if kind == Kind::Symlink { h.link_name_bytes().unwrap_or_default().into_owned() } else { vec![] };
    node.size = match kind {
        Kind::File => entry.size(),
        Kind::Symlink => node.link_target.len() as u64,
        _ => 0,
    };
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                node.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    node.xattrs.sort();
    Ok(Some(node))
}

/// A PAX time field (`mtime=1700000000.123456789`), with its fraction.
fn pax_time<R: Read>(entry: &mut tar::Entry<R>, key: &str) -> Option<Time> {
    let pax = entry.pax_extensions().ok()??;
    let v = pax.flatten().find(|e| e.key_bytes() == key.as_bytes())?;
    let v = v.value().ok()?;
    let (sec, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits: String = frac.chars().take(9).collect();
    let nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(Time { sec: sec.parse().ok()?, nsec })
}

/// Cuts an entry's contents with the repository's chunker and stores them.
fn chunks(repo: &Repository, p: &Packer, r: &mut impl Read, s: &mut Summary) -> Result<Vec<Id>> {
    let chunker = repo.chunker();
    let want = 2 * chunker.max_size();
    let mut buf = Vec::with_capacity(want);
    let mut ids = Vec::new();
    let mut eof = false;
    while !eof {
        let need = want - buf.len();
        let n = (&mut *r).take(need as u64).read_to_end(&mut buf).map_err(|e| Error::io("read tar archive", e))?;
        eof = n < need;
        s.bytes_read += n as u64;
        let mut off = 0;
        while off < buf.len() && (eof || buf.len() - off >= chunker.max_size()) {
            let n = chunker.next_len(&buf[off..], eof);
            ids.push(p.add(ObjType::Data, &buf[off..off + n])?);
            off += n;
        }
        buf.drain(..off);
    }
    Ok(ids)
}
