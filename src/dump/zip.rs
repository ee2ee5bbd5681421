//! `dump --archive zip`: a tree as a zip archive for people without tar, streamed (data
//! descriptors, no seeking back), entries stored as they are: the repository's compression
//! happened at backup, and recompressing would cost more than it saves on the data that
//! compresses (what does not compress is most of a typical backup).
//!
//! A zip holds less than a tar: regular files, directories and symlinks with their permission
//! bits and local modification time (to 2 s, within 1980–2107). Hard links are written as
//! separate copies; devices, FIFOs and sockets are left out and named in the outcome.

use std::io::{self, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::DumpOutcome;
use super::content::copy_file;
use crate::error::{Error, Result};
use crate::format::tree::{Kind, Node, Time};
use crate::id::Id;
use crate::index::IndexReader;
use crate::repo::Repository;
use crate::sys;
use crate::trees::Trees;

const TREE_CACHE: usize = 8 << 20;

/// Writes the entry at `path` of the snapshot tree `tree` as a zip archive to `out`, its
/// entries named relative to it as [`super::write_tar`] names them.
pub fn write_zip<W: Write>(repo: &Repository, tree: Id, path: &Path, out: W) -> Result<DumpOutcome> {
    let trees = Trees::new(repo, TREE_CACHE);
    crate::trees::check_expansion(&trees, tree)?;
    let node = trees.resolve(tree, path)?;
    let mut w = ZipDump {
        repo,
        index: repo.index().reader()?,
        trees: &trees,
        zip: ZipWriter::new_stream(out),
        outcome: DumpOutcome::default(),
    };
    match node {
        None => w.dir(tree, "")?,
        Some(n) => match n.subtree() {
            Some(sub) => w.dir(sub, "")?,
            None => w.entry(&n, &String::from_utf8_lossy(&n.name))?,
        },
    }
    w.zip.finish().map_err(|e| Error::io("write the archive's end", io::Error::other(e)))?;
    Ok(w.outcome)
}

struct ZipDump<'a, W: Write> {
    repo: &'a Repository,
    index: IndexReader,
    trees: &'a Trees<&'a Repository>,
    zip: ZipWriter<zip::write::StreamWriter<W>>,
    outcome: DumpOutcome,
}

impl<W: Write> ZipDump<'_, W> {
    fn dir(&mut self, tree: Id, at: &str) -> Result<()> {
        let listing = self.trees.get(&tree)?;
        for n in listing.iter() {
            let name = String::from_utf8_lossy(sys::os(&n.name).as_encoded_bytes()).into_owned();
            let p = if at.is_empty() { name } else { format!("{at}/{name}") };
            self.entry(n, &p)?;
            if let Some(sub) = n.subtree() {
                self.dir(sub, &p)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, n: &Node, p: &str) -> Result<()> {
        let fail = |e: zip::result::ZipError| Error::io(format!("write {p} to the archive"), io::Error::other(e));
        let mut opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .unix_permissions(n.mode & 0o7777)
            .large_file(n.size >= u64::from(u32::MAX));
        if let Some(t) = dos_time(n.mtime) {
            opts = opts.last_modified_time(t);
        }
        match n.kind {
            Kind::Dir => self.zip.add_directory(p, opts).map_err(fail)?,
            Kind::Symlink => {
                let target = String::from_utf8_lossy(&n.link_target).into_owned();
                self.zip.add_symlink(p, target, opts).map_err(fail)?;
            }
            Kind::File => {
                self.zip.start_file(p, opts).map_err(fail)?;
                let written = copy_file(self.repo, &self.index, n, &mut self.zip)
                    .map_err(|e| Error::io(format!("write {p} to the archive"), e))?;
                self.outcome.bytes += written;
            }
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket => {
                self.outcome.left_out.push(format!("{p}: a {}, which zip cannot hold", kind_name(n.kind)));
                return Ok(());
            }
        }
        self.outcome.entries += 1;
        Ok(())
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Fifo => "FIFO",
        Kind::CharDev => "character device",
        Kind::BlockDev => "block device",
        _ => "socket",
    }
}

/// The local time zip's DOS field holds, when the time fits in it.
fn dos_time(t: Time) -> Option<DateTime> {
    let ts = jiff::Timestamp::new(t.sec, 0).ok()?;
    let dt = jiff::tz::TimeZone::system().to_datetime(ts);
    let field = |v: i8| u8::try_from(v).ok();
    DateTime::from_date_and_time(
        u16::try_from(dt.year()).ok()?,
        field(dt.month())?,
        field(dt.day())?,
        field(dt.hour())?,
        field(dt.minute())?,
        field(dt.second())?,
    )
    .ok()
}
