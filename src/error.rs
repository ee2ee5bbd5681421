//! The library's typed errors. Corruption is kept apart from I/O so callers can tell
//! "the disk said no" from "the repository is damaged", and every variant names its object.

use std::path::PathBuf;

/// A shorthand used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// A variant's message includes its cause's, and `source()` does not return the cause: the
// library's messages are read one at a time (warnings, logs), and a report that walks the
// chain as well (anyhow's `{:#}`) would print the OS error twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{context}: {cause}")]
    Io { context: String, cause: std::io::Error },
    #[error("no snapfs repository at {0}")]
    NoRepository(String),
    #[error("{0} is not empty; refusing to create a repository there")]
    NotEmpty(PathBuf),
    /// With what else was found: the damaged slots, which might have been the right one.
    #[error("wrong password: no key slot in the repository opens with it{0}")]
    WrongPassword(String),
    /// The password given for an export bundle does not open its key slot.
    #[error("wrong password for bundle {0}")]
    WrongBundlePassword(String),
    #[error("repository is locked by {0}")]
    Locked(String),
    /// A shared lock could not be written (read-only or full storage); see `Repository::open`.
    #[error("no lock could be written ({0})")]
    Unlocked(String),
    #[error(
        "the repository has format version {0}; this snapfs reads version 2 only (version 1 repositories must be backed up again into a new one)"
    )]
    UnsupportedVersion(u32),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("blob {0} is not in the index")]
    MissingBlob(String),
    #[error("{0}: no such path in the snapshot")]
    NotFound(String),
    /// A path looked up in one or more snapshots, with the nearest existing path as a hint.
    #[error("{path}: not found in {place}{}", closest_hint(.closest))]
    PathNotFound { path: String, place: String, closest: Option<String> },
    #[error("no snapshot matches {0}")]
    NoSnapshot(String),
    #[error("snapshot prefix {0} is ambiguous")]
    AmbiguousSnapshot(String),
    #[error("{0}")]
    Invalid(String),
    /// `restore --overwrite error` found entries in the way; nothing was written.
    #[error("{} already exists in the target{}; nothing was restored", .path.display(), more_hint(*.more))]
    Exists { path: PathBuf, more: usize },
    #[error("index database: {0}")]
    Index(String),
    /// A tree whose subtrees are referenced over and over: walking it would never end.
    #[error(
        "tree {tree} expands to more than {limit} paths from only {distinct} distinct entries (the same subtree referenced over and over): a crafted or damaged repository; refused"
    )]
    TreeBomb { tree: String, limit: u64, distinct: u64 },
    /// A blob that could not be read, with where it lives, so a log line can name both.
    #[error("{kind} {blob} in pack {pack}: {cause}")]
    Blob { kind: &'static str, blob: String, pack: String, cause: Box<Error> },
    /// The command whose output was being backed up failed, so the backup was not saved.
    #[error("{command:?} exited with {status}; no snapshot was saved")]
    StreamFailed { command: String, status: String },
    /// The caller asked the operation to stop (a signal); nothing it would have committed was.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Error::Io { context: context.into(), cause }
    }

    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into(), detail: detail.into() }
    }
}

fn more_hint(more: usize) -> String {
    match more {
        0 => String::new(),
        1 => ", and 1 more entry".to_string(),
        n => format!(", and {n} more entries"),
    }
}

fn closest_hint(closest: &Option<String>) -> String {
    closest.as_ref().map(|c| format!("; closest: {c}")).unwrap_or_default()
}

/// Attaches a path to an I/O error, the context every caller wants.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Index(e.to_string())
            }
        }
    )*};
}
redb_errors!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
