//! Pure byte codecs for everything snapfs stores (format-spec §3, §6, §8, §11). No I/O here.

pub mod bundle;
pub mod codec;
pub mod condemned;
pub mod config;
pub mod pack;
pub mod snapshot;
pub mod tree;
