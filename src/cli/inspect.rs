//! `snapfs cat` and `snapfs list`: restic's debugging commands, objects by kind and single
//! objects decrypted.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::Global;
use snapfs::backend::Kind;
use snapfs::crypto::ObjType;
use snapfs::repo::LockMode;
use snapfs::{Id, inspect, select, timespec};

#[derive(clap::Subcommand)]
pub enum Cat {
    /// The repository's parameters (JSON)
    Config,
    /// A snapshot (JSON); an id prefix or `latest`
    Snapshot { id: String },
    /// A tree blob: the entries of one directory (JSON)
    Tree { id: String },
    /// A blob's decrypted bytes: file data as stored, a tree's encoding
    Blob { id: String },
    /// A key slot's public part: owner, KDF parameters and salt (JSON; the key stays sealed)
    Key { id: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum List {
    Snapshots,
    Packs,
    Keys,
    Locks,
    /// Every blob in the index, as `data ID` or `tree ID`
    Blobs,
}

pub fn cat(g: &Global, what: Cat) -> Result<u8> {
    let value = match what {
        Cat::Config => {
            let repo = super::open_keys(g, LockMode::None, "cat")?;
            let p = repo.params();
            json!({
                "version": snapfs::format::config::VERSION,
                "id": snapfs::repo::hex(repo.repo_id()),
                "chunker": {"min": p.chunk_min, "avg": p.chunk_avg, "max": p.chunk_max},
                "pack_size": p.pack_size,
                "zstd_level": p.zstd_level,
            })
        }
        Cat::Snapshot { id } => {
            let repo = super::open_keys(g, LockMode::None, "cat")?;
            let snaps = super::snapshot_list(&repo)?;
            let (id, snap) = select::pick(&snaps, &select::parse_spec(&id)?.0, &Default::default())?;
            super::snapshots::json_of(id, snap)
        }
        Cat::Tree { id } => {
            let repo = super::open(g, LockMode::Reader, "cat")?;
            let id = Id::from_hex(&id).with_context(|| format!("tree {id:?}: give the full id"))?;
            let nodes = repo.load_tree(&id).with_context(|| format!("tree {}", id.short()))?;
            let nodes: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let name = String::from_utf8_lossy(&n.name).into_owned();
                    let mut v = super::entries::node_json(Path::new(&name), n);
                    v["content"] = json!(n.content.iter().map(Id::hex).collect::<Vec<_>>());
                    v
                })
                .collect();
            json!({"nodes": nodes})
        }
        Cat::Blob { id } => {
            let repo = super::open(g, LockMode::Reader, "cat")?;
            let id = Id::from_hex(&id).with_context(|| format!("blob {id:?}: give the full id"))?;
            let (_, bytes) = inspect::blob(&repo, &id).with_context(|| format!("blob {}", id.short()))?;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes).and_then(|()| out.flush()).context("write standard output")?;
            return Ok(0);
        }
        Cat::Key { id } => {
            let repo = super::open_keys(g, LockMode::None, "cat")?;
            let (name, slot) = inspect::key_slot(&repo, &id)?;
            json!({
                "id": name,
                "created": timespec::rfc3339(slot.created_ns),
                "hostname": slot.hostname,
                "username": slot.username,
                "kdf": {"algorithm": "argon2id", "m_kib": slot.kdf.m_kib, "t": slot.kdf.t, "p": slot.kdf.p},
                "salt": snapfs::repo::hex(&slot.salt),
            })
        }
    };
    outln!("{}", serde_json::to_string_pretty(&value)?);
    Ok(0)
}

pub fn list(g: &Global, what: List) -> Result<u8> {
    let kind = match what {
        List::Snapshots => Kind::Snapshot,
        List::Packs => Kind::Pack,
        List::Keys => Kind::Key,
        List::Locks => Kind::Lock,
        List::Blobs => {
            let repo = super::open(g, LockMode::Reader, "list")?;
            for (id, ty) in inspect::blobs(&repo)? {
                if super::output::stopped() {
                    break;
                }
                outln!("{} {id}", if ty == ObjType::Tree { "tree" } else { "data" });
            }
            return Ok(0);
        }
    };
    // Names only: no index, no lock (a lock would list itself).
    let repo = super::open_keys(g, LockMode::None, "list")?;
    let names = inspect::names(&repo, kind)?;
    for n in names {
        if super::output::stopped() {
            break;
        }
        outln!("{n}");
    }
    Ok(0)
}
