//! snapfs: a content-addressed, deduplicating, encrypted backup store whose snapshots are
//! read-only filesystems.
//!
//! The repository format is specified in `format-spec/README.md`; this crate implements it.
//! [`repo::Repository`] opens or creates a repository; [`archiver::backup`] writes a snapshot;
//! [`restore::restore`] reads one back; [`vfs::Vfs`] shows snapshots as a filesystem, which
//! [`fuse`] mounts.

pub mod archiver;
pub mod backend;
pub mod browse;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod dump;
pub mod error;
pub mod forget;
pub mod format;
pub mod fuse;
pub mod id;
pub mod index;
pub mod inspect;
pub mod jobs;
pub mod json;
pub mod patterns;
pub mod policy;
pub mod progress;
pub mod prune;
pub mod reader;
pub mod rekey;
pub mod repo;
pub mod restore;
pub mod select;
pub mod server;
pub mod spans;
pub mod sys;
pub mod tag;
pub mod tarimport;
pub mod timespec;
pub mod transfer;
pub mod trees;
pub mod vfs;

pub use error::{Error, Result};
pub use id::Id;
