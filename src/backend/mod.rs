//! The storage seam (format-spec §10): a repository is a set of immutable byte objects, each
//! named by its kind and a name. Every repository byte goes through a [`Backend`]; nothing
//! outside this module knows whether the objects are files, memory or a bucket.
//!
//! Architecture invariant: no module outside `backend/` touches a repository path.

pub mod fault;
pub mod http;
pub mod local;
pub mod memory;
pub mod s3;

use std::sync::Arc;

use crate::error::{Error, Result};

pub use fault::{Fault, FaultBackend};
pub use http::{HttpBackend, HttpOptions};
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use s3::S3Backend;

/// The kinds of object a repository holds; each has its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Config,
    Key,
    Epoch,
    Snapshot,
    Pack,
    Lock,
    /// Lists of packs prune has condemned, to be deleted once no user can still need them.
    Condemned,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Config, Kind::Key, Kind::Epoch, Kind::Snapshot, Kind::Pack, Kind::Lock, Kind::Condemned];

    /// The word used in messages and as the directory of a local repository.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Key => "keys",
            Kind::Epoch => "epochs",
            Kind::Snapshot => "snapshots",
            Kind::Pack => "packs",
            Kind::Lock => "locks",
            Kind::Condemned => "condemned",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Key => "key slot",
            Kind::Epoch => "key epoch",
            Kind::Snapshot => "snapshot",
            Kind::Pack => "pack",
            Kind::Lock => "lock",
            Kind::Condemned => "condemned-pack list",
        }
    }
}

/// How an object is named in messages: `pack 1a2b3c4d…` or `config`.
pub fn object_name(kind: Kind, name: &str) -> String {
    if kind == Kind::Config { "config".into() } else { format!("{} {name}", kind.noun()) }
}

/// An object store. Implementations are small; features (faults, caching, retries) are
/// wrappers, not branches inside them.
pub trait Backend: Send + Sync {
    /// Stores a whole object, atomically (a reader sees all of it or nothing) and durably (it
    /// survives a power loss once this returns). An existing object is never replaced: that is
    /// an error of kind `AlreadyExists`.
    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()>;
    /// A whole object; a missing one is an error of kind `NotFound`.
    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>>;
    /// Fills `buf` from `offset`; an object too short for it is an error of kind `UnexpectedEof`.
    fn read_at(&self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Every object of a kind with its size, in no particular order. Names that cannot be
    /// this kind's (stray files) are listed too: callers decide what a valid name is.
    fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>>;
    /// Replaces an object that exists, atomically and durably (a reader sees the old bytes or
    /// the new ones, whole). Only key rotation uses it, to re-seal an object under a new key
    /// epoch: the content stays the same, only the encryption changes. A missing object is an
    /// error of kind `NotFound`.
    fn replace(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()>;
    /// Removes an object; removing a missing one is not an error.
    fn delete(&self, kind: Kind, name: &str) -> Result<()>;
    /// Where the repository is, for messages: a path or a URL.
    fn location(&self) -> String;
    /// Staging files a writer left (an interrupted or crashed one, or one writing now), by
    /// name with their age, for `check` to name. Stores that stage nothing have none.
    fn staging_files(&self) -> Vec<(String, std::time::Duration)> {
        Vec::new()
    }
    /// Reads worth having in flight at once in a bulk read (restore): requests that wait on a
    /// network, not on a disk or the CPU, want more of them than there are cores. 0: one a core.
    fn parallel_reads(&self) -> usize {
        0
    }
    /// Whole-object writes (packs) worth having in flight at once; each holds a pack in memory.
    fn parallel_writes(&self) -> usize {
        1
    }
    /// The bytes `range` of an object, read front to back by [`ReadStream::fill`]: one request
    /// on object storage however many fills, where a `read_at` each would be a round trip each
    /// (`check --read-data` reads every pack whole, a window at a time). By default, a
    /// `read_at` a fill.
    fn read_stream(&self, kind: Kind, name: &str, range: std::ops::Range<u64>) -> Result<Box<dyn ReadStream + '_>> {
        Ok(Box::new(Windowed { backend: self, kind, name: name.to_string(), pos: range.start, end: range.end }))
    }
}

/// A range of an object being read in order (see [`Backend::read_stream`]).
pub trait ReadStream {
    /// Fills `buf` with the next bytes; past the range's end is an error of kind `UnexpectedEof`.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;
}

struct Windowed<'b, B: ?Sized> {
    backend: &'b B,
    kind: Kind,
    name: String,
    pos: u64,
    end: u64,
}

impl<B: Backend + ?Sized> ReadStream for Windowed<'_, B> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.pos + buf.len() as u64 > self.end {
            return Err(past_end(self.kind, &self.name, self.end));
        }
        self.backend.read_at(self.kind, &self.name, self.pos, buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// A stream asked for more than its range holds.
fn past_end(kind: Kind, name: &str, end: u64) -> Error {
    let cause = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("past the {end} bytes asked for"));
    Error::io(format!("read {}", object_name(kind, name)), cause)
}

/// Whether an error is a backend's "no such object".
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
}

fn is_http(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// Opens the backend a `--repo` value names: a local directory, `s3:…`, or a `snapfs serve`
/// at `http(s)://…` (its token and CA from the environment, see [`HttpOptions::from_env`]).
pub fn from_location(location: &str) -> Result<Arc<dyn Backend>> {
    from_location_with(location, &HttpOptions::from_env()?)
}

/// As [`from_location`], with a server's token and CA given.
pub fn from_location_with(location: &str, http: &HttpOptions) -> Result<Arc<dyn Backend>> {
    if is_http(location) {
        return Ok(Arc::new(HttpBackend::open(location, http)?));
    }
    if location.starts_with("s3:") {
        return Ok(Arc::new(S3Backend::open(location)?));
    }
    refuse_unsupported(location)?;
    Ok(Arc::new(LocalBackend::new(std::path::Path::new(location))))
}

/// As [`from_location`], for `init`: refuses a location that already holds anything, so a
/// repository never mixes with other files or objects.
pub fn for_init(location: &str, http: &HttpOptions) -> Result<Arc<dyn Backend>> {
    if is_http(location) {
        let remote = HttpBackend::open(location, http)?;
        if !remote.list(Kind::Config)?.is_empty() {
            return Err(Error::Invalid(format!("{location} already holds a repository; refusing to create one there")));
        }
        return Ok(Arc::new(remote));
    }
    if location.starts_with("s3:") {
        let s3 = S3Backend::open(location)?;
        s3.check_empty()?;
        return Ok(Arc::new(s3));
    }
    refuse_unsupported(location)?;
    let local = LocalBackend::new(std::path::Path::new(location));
    local.check_empty()?;
    Ok(Arc::new(local))
}

fn refuse_unsupported(location: &str) -> Result<()> {
    for scheme in ["sftp:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:"] {
        if location.starts_with(scheme) {
            return Err(Error::Invalid(format!(
                "repository {location}: {} repositories are not supported yet; only local directories, s3: and http(s):// (snapfs serve) are",
                scheme.trim_end_matches(['/', ':'])
            )));
        }
    }
    Ok(())
}
