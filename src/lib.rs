//! snapfs: a content-addressed, deduplicating, encrypted backup store whose snapshots are
//! read-only filesystems.
//!
//! The repository format is specified in `format-spec/README.md`; this crate implements it.
//! [`repo::Repository`] opens or creates a repository; [`archiver::backup`] writes a snapshot;
//! [`restore::restore`] reads one back.

pub mod archiver;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
pub mod index;
pub mod repo;
pub mod restore;
pub mod select;
pub mod sys;
pub mod timespec;

pub use error::{Error, Result};
pub use id::Id;
