//! Tree blobs: one directory's entries, canonically encoded (format-spec §8).

use super::codec::{Dec, Enc};
use crate::error::Result;
use crate::id::Id;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDev = 5,
    BlockDev = 6,
    Socket = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::CharDev,
            6 => Kind::BlockDev,
            7 => Kind::Socket,
            _ => return None,
        })
    }
}

/// Seconds and nanoseconds since the Unix epoch, as stat reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub mtime: Time,
    pub ctime: Time,
    pub atime: Option<Time>,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub link_target: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A file's data blobs in order, or a directory's single subtree id.
    pub content: Vec<Id>,
}

impl Node {
    /// A node that no file on disk stands behind (a stream, a directory made up by an
    /// import): owned by root, at one time, with nothing else set.
    pub fn made_up(name: &[u8], kind: Kind, mode: u32, time: Time) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime: time,
            ctime: time,
            atime: None,
            dev: 0,
            ino: 0,
            nlink: 1,
            size: 0,
            rdev: 0,
            link_target: Vec::new(),
            xattrs: Vec::new(),
            content: Vec::new(),
        }
    }

    pub fn subtree(&self) -> Option<Id> {
        (self.kind == Kind::Dir).then(|| self.content.first().copied()).flatten()
    }
}

/// Names must be one path component; anything else in a tree is corruption or an attack.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

const VERSION: u8 = 1;

/// Encodes nodes, which the caller has sorted by name.
pub fn encode(nodes: &[Node]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(VERSION).u32(nodes.len() as u32);
    for n in nodes {
        e.str16(&n.name).u8(n.kind as u8).u32(n.mode).u32(n.uid).u32(n.gid);
        e.str16(n.user.as_bytes()).str16(n.group.as_bytes());
        for t in [n.mtime, n.ctime] {
            e.i64(t.sec).u32(t.nsec);
        }
        e.u8(n.atime.is_some() as u8);
        if let Some(t) = n.atime {
            e.i64(t.sec).u32(t.nsec);
        }
        e.u64(n.dev).u64(n.ino).u32(n.nlink).u64(n.size).u64(n.rdev);
        e.bytes32(&n.link_target);
        e.u16(n.xattrs.len() as u16);
        for (k, v) in &n.xattrs {
            e.str16(k).bytes32(v);
        }
        e.u32(n.content.len() as u32);
        for id in &n.content {
            e.raw(&id.0);
        }
    }
    e.0
}

pub fn decode(buf: &[u8]) -> Result<Vec<Node>> {
    let mut d = Dec::new(buf, "tree");
    if d.u8()? != VERSION {
        return Err(d.err("unknown tree version"));
    }
    let count = d.u32()? as usize;
    let count = d.count(count, 80)?;
    let mut nodes: Vec<Node> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = d.str16()?.to_vec();
        if !valid_name(&name) {
            return Err(d.err("invalid entry name"));
        }
        if nodes.last().is_some_and(|p| p.name >= name) {
            return Err(d.err("entries not sorted"));
        }
        let kind = Kind::from_u8(d.u8()?).ok_or_else(|| d.err("unknown entry kind"))?;
        let (mode, uid, gid) = (d.u32()?, d.u32()?, d.u32()?);
        let user = String::from_utf8_lossy(d.str16()?).into_owned();
        let group = String::from_utf8_lossy(d.str16()?).into_owned();
        let mtime = time(&mut d)?;
        let ctime = time(&mut d)?;
        let atime = match d.u8()? {
            0 => None,
            1 => Some(time(&mut d)?),
            _ => return Err(d.err("bad flags")),
        };
        let (dev, ino, nlink, size, rdev) = (d.u64()?, d.u64()?, d.u32()?, d.u64()?, d.u64()?);
        let link_target = d.bytes32()?.to_vec();
        let nx = d.u16()? as usize;
        let nx = d.count(nx, 6)?;
        let mut xattrs = Vec::with_capacity(nx);
        for _ in 0..nx {
            xattrs.push((d.str16()?.to_vec(), d.bytes32()?.to_vec()));
        }
        let nc = d.u32()? as usize;
        let nc = d.count(nc, 32)?;
        let mut content = Vec::with_capacity(nc);
        for _ in 0..nc {
            content.push(Id(d.arr()?));
        }
        if kind == Kind::Dir && content.len() != 1 || !matches!(kind, Kind::Dir | Kind::File) && !content.is_empty() {
            return Err(d.err("content does not fit the entry kind"));
        }
        nodes.push(Node {
            name,
            kind,
            mode,
            uid,
            gid,
            user,
            group,
            mtime,
            ctime,
            atime,
            dev,
            ino,
            nlink,
            size,
            rdev,
            link_target,
            xattrs,
            content,
        });
    }
    d.finish()?;
    Ok(nodes)
}

fn time(d: &mut Dec) -> Result<Time> {
    let sec = d.i64()?;
    let nsec = d.u32()?;
    if nsec >= 1_000_000_000 {
        return Err(d.err("nanoseconds out of range"));
    }
    Ok(Time { sec, nsec })
}
