//! Snapshot objects (format-spec §8).

use super::codec::{Dec, Enc};
use crate::error::Result;
use crate::id::Id;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unchanged: u64,
    pub bytes_read: u64,
    pub data_blobs_added: u64,
    pub bytes_added: u64,
    pub total_files: u64,
    pub total_bytes: u64,
    pub errors: u64,
    pub duration_ns: u64,
}

impl Summary {
    fn fields(&self) -> [u64; 13] {
        [
            self.files_new,
            self.files_changed,
            self.files_unchanged,
            self.dirs_new,
            self.dirs_changed,
            self.dirs_unchanged,
            self.bytes_read,
            self.data_blobs_added,
            self.bytes_added,
            self.total_files,
            self.total_bytes,
            self.errors,
            self.duration_ns,
        ]
    }

    pub const NAMES: [&'static str; 13] = [
        "files_new",
        "files_changed",
        "files_unchanged",
        "dirs_new",
        "dirs_changed",
        "dirs_unchanged",
        "bytes_read",
        "data_blobs_added",
        "bytes_added",
        "total_files",
        "total_bytes",
        "errors",
        "duration_ns",
    ];

    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> {
        Self::NAMES.into_iter().zip(self.fields())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub time_ns: i64,
    pub tree: Id,
    pub parent: Option<Id>,
    pub hostname: String,
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub description: String,
    pub program_version: String,
    pub summary: Summary,
    /// The snapshot this one rewrote (`tag` writes a new object and deletes the old one): the
    /// first id in a chain of rewrites, as restic keeps it. `None` for a backup's own snapshot.
    pub original: Option<Id>,
}

/// Written: 2 (with `original`). Read: 1 and 2.
const VERSION: u8 = 2;

pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(VERSION).i64(s.time_ns).raw(&s.tree.0);
    e.u8(s.parent.is_some() as u8).raw(&s.parent.unwrap_or(Id::ZERO).0);
    e.str16(s.hostname.as_bytes()).str16(s.username.as_bytes()).u32(s.uid).u32(s.gid);
    for list in [&s.paths, &s.tags] {
        e.u16(list.len() as u16);
        for p in list {
            e.str16(p.as_bytes());
        }
    }
    e.bytes32(s.description.as_bytes()).str16(s.program_version.as_bytes());
    for v in s.summary.fields() {
        e.u64(v);
    }
    e.u8(s.original.is_some() as u8).raw(&s.original.unwrap_or(Id::ZERO).0);
    e.0
}

/// A has-id flag (0 or 1) and 32 bytes, zeros when the flag is 0.
fn optional_id(d: &mut Dec, what: &str) -> Result<Option<Id>> {
    let flag = d.u8()?;
    let id = Id(d.arr()?);
    match flag {
        0 => Ok(None),
        1 => Ok(Some(id)),
        _ => Err(d.err(format!("bad {what} flag"))),
    }
}

pub fn decode(buf: &[u8]) -> Result<Snapshot> {
    let mut d = Dec::new(buf, "snapshot");
    let version = d.u8()?;
    if !(1..=VERSION).contains(&version) {
        return Err(d.err("unknown snapshot version"));
    }
    let time_ns = d.i64()?;
    let tree = Id(d.arr()?);
    let parent = optional_id(&mut d, "parent")?;
    let hostname = d.string16()?;
    let username = d.string16()?;
    let (uid, gid) = (d.u32()?, d.u32()?);
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = d.u16()? as usize;
        for _ in 0..d.count(n, 2)? {
            list.push(d.string16()?);
        }
    }
    let [paths, tags] = lists;
    let description = String::from_utf8(d.bytes32()?.to_vec()).map_err(|_| d.err("invalid UTF-8"))?;
    let program_version = d.string16()?;
    let mut f = [0u64; 13];
    for v in &mut f {
        *v = d.u64()?;
    }
    let original = if version >= 2 { optional_id(&mut d, "original")? } else { None };
    d.finish()?;
    let [
        files_new,
        files_changed,
        files_unchanged,
        dirs_new,
        dirs_changed,
        dirs_unchanged,
        bytes_read,
        data_blobs_added,
        bytes_added,
        total_files,
        total_bytes,
        errors,
        duration_ns,
    ] = f;
    Ok(Snapshot {
        time_ns,
        tree,
        parent,
        hostname,
        username,
        uid,
        gid,
        paths,
        tags,
        description,
        program_version,
        summary: Summary {
            files_new,
            files_changed,
            files_unchanged,
            dirs_new,
            dirs_changed,
            dirs_unchanged,
            bytes_read,
            data_blobs_added,
            bytes_added,
            total_files,
            total_bytes,
            errors,
            duration_ns,
        },
        original,
    })
}
