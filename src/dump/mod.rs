//! `dump`: one file of a snapshot as its bytes, or a directory (or the whole snapshot) as an
//! archive, streamed: memory stays bounded by a few chunks whatever the size of the tree.

mod content;
mod tar;
mod zip;

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::tree::Kind;
use crate::id::Id;
use crate::repo::Repository;
use crate::trees::Trees;

pub use self::tar::write_tar;
pub use self::zip::write_zip;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    Tar,
    Zip,
}

/// What a dump wrote, and what it could not put in the archive.
#[derive(Debug, Default)]
pub struct DumpOutcome {
    pub entries: u64,
    /// Bytes of file contents written (without archive headers, holes not counted).
    pub bytes: u64,
    /// Entries an archive cannot hold (sockets), by path in the archive.
    pub left_out: Vec<String>,
}

/// Writes the entry at `path` of the snapshot tree `tree` to `out`: a regular file's bytes when
/// no `archive` is asked for, otherwise (and for anything that is not a regular file) an archive
/// whose entries are named relative to `path`, as `restore` would place them.
pub fn dump(
    repo: &Repository,
    tree: Id,
    path: &Path,
    archive: Option<Archive>,
    out: &mut dyn Write,
) -> Result<DumpOutcome> {
    let node = Trees::new(repo, 1 << 20).resolve(tree, path)?;
    match (archive, node) {
        (None, Some(n)) if n.kind == Kind::File => {
            let index = repo.index().reader()?;
            let bytes = content::copy_file(repo, &index, &n, out)
                .map_err(|e| Error::io(format!("dump {}", path.display()), e))?;
            Ok(DumpOutcome { entries: 1, bytes, left_out: Vec::new() })
        }
        (Some(Archive::Zip), _) => write_zip(repo, tree, path, out),
        _ => write_tar(repo, tree, path, out),
    }
}
