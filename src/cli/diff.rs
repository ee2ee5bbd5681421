//! `snapfs diff`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Global, human};
use snapfs::browse::diff::{Counts, DiffOptions, Side, diff};
use snapfs::format::tree::Kind;
use snapfs::select;

#[derive(clap::Args)]
pub struct Args {
    /// The old side: snapshot id prefix or `latest`, optionally followed by `:/path/inside`
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    from: String,
    /// The new side: another snapshot, or a directory on this machine
    #[arg(value_name = "SNAPSHOT[:PATH]|DIR")]
    to: String,
    /// Also list entries whose metadata alone changed (U)
    #[arg(long)]
    metadata: bool,
    /// One JSON object a line: each change, then the statistics (as restic's diff --json)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

fn counts_json(c: &Counts) -> serde_json::Value {
    json!({
        "files": c.files, "dirs": c.dirs, "others": c.others,
        "data_blobs": c.data_blobs, "tree_blobs": c.tree_blobs, "bytes": c.bytes,
    })
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "diff")?;
    let snaps = super::snapshot_list(&repo)?;
    let filter: select::Filter = a.filter.into();
    let ((id1, s1), p1) = super::pick_spec(&snaps, &a.from, &filter)?;
    // A second argument that is not a snapshot spec is a directory.
    let (right, to_name, to_full, live) = match select::parse_spec(&a.to) {
        Ok(_) => {
            let ((id2, s2), p2) = super::pick_spec(&snaps, &a.to, &filter)?;
            let path = p2.unwrap_or_else(|| PathBuf::from("/"));
            (Side::Snapshot { root: s2.tree, path }, id2.short(), id2.hex(), None)
        }
        Err(_) => {
            let dir =
                std::fs::canonicalize(&a.to).with_context(|| format!("{}: no such snapshot or directory", a.to))?;
            if !dir.is_dir() {
                bail!("{}: not a directory", dir.display());
            }
            let name = dir.display().to_string();
            (Side::Live(dir.clone()), name.clone(), name, Some(dir))
        }
    };
    // Against a directory, the snapshot's copy of that same directory unless a path is given.
    let left_path = p1.or_else(|| live.clone()).unwrap_or_else(|| PathBuf::from("/"));
    let left = Side::Snapshot { root: s1.tree, path: left_path };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !a.json {
        writeln!(out, "comparing snapshot {} to {to_name}:\n", id1.short())?;
    }
    let mut failed: Option<std::io::Error> = None;
    let stats = diff(&repo, &left, &right, DiffOptions { metadata: a.metadata }, |change, path: &Path, kind| {
        if failed.is_some() {
            return;
        }
        let slash = if kind == Kind::Dir { "/" } else { "" };
        let r = if a.json {
            let v = json!({
                "message_type": "change",
                "path": format!("{}{slash}", path.to_string_lossy()),
                "modifier": change.code().to_string(),
            });
            writeln!(out, "{v}")
        } else {
            write!(out, "{:<5}", change.code())
                .and_then(|()| out.write_all(path.as_os_str().as_bytes()))
                .and_then(|()| writeln!(out, "{slash}"))
        };
        failed = r.err();
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    for w in &stats.warnings {
        errln!("warning: {w}");
    }
    if a.json {
        let v = json!({
            "message_type": "statistics",
            "source_snapshot": id1.hex(),
            "target_snapshot": to_full,
            "changed_files": stats.changed_files,
            "added": counts_json(&stats.added),
            "removed": counts_json(&stats.removed),
            "trees_read": stats.trees_read,
        });
        writeln!(out, "{v}")?;
    } else {
        let (ad, rm) = (&stats.added, &stats.removed);
        writeln!(out)?;
        writeln!(out, "Files:       {:5} new, {:5} removed, {:5} changed", ad.files, rm.files, stats.changed_files)?;
        writeln!(out, "Dirs:        {:5} new, {:5} removed", ad.dirs, rm.dirs)?;
        writeln!(out, "Others:      {:5} new, {:5} removed", ad.others, rm.others)?;
        if live.is_none() {
            writeln!(out, "Data Blobs:  {:5} new, {:5} removed", ad.data_blobs, rm.data_blobs)?;
            writeln!(out, "Tree Blobs:  {:5} new, {:5} removed", ad.tree_blobs, rm.tree_blobs)?;
        }
        writeln!(out, "  Added:   {}", human(ad.bytes))?;
        writeln!(out, "  Removed: {}", human(rm.bytes))?;
    }
    out.flush()?;
    Ok(0)
}
