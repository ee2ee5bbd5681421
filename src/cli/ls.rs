//! `snapfs ls`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::Global;
use super::entries::{entry_line, node_json};
use snapfs::browse::ls::ls;
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id prefix or `latest`, optionally followed by `:/path/inside`
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    snapshot: String,
    /// The path inside the snapshot to list (instead of `:PATH`)
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// Mode, owner, group, size and modification time too, as `ls -l` shows them
    #[arg(short, long)]
    long: bool,
    /// Descend into subdirectories (the default when listing a whole snapshot)
    #[arg(long, overrides_with = "no_recursive")]
    recursive: bool,
    /// List only the path and, for a directory, its entries (the default for a path)
    #[arg(long, overrides_with = "recursive")]
    no_recursive: bool,
    /// One JSON object a line: the snapshot first, then each entry (as restic's ls --json)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "ls")?;
    let snaps = super::snapshot_list(&repo)?;
    let ((id, snap), spec_path) = super::pick_spec(&snaps, &a.snapshot, &a.filter.into())?;
    let path = super::one_path(spec_path, a.path)?;
    let recursive = if a.recursive {
        Some(true)
    } else if a.no_recursive {
        Some(false)
    } else {
        None
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        let v = json!({
            "time": timespec::rfc3339(snap.time_ns),
            "tree": snap.tree.hex(),
            "paths": snap.paths,
            "hostname": snap.hostname,
            "username": snap.username,
            "tags": snap.tags,
            "id": id.hex(),
            "short_id": id.short(),
            "struct_type": "snapshot",
            "message_type": "snapshot",
        });
        writeln!(out, "{v}")?;
    } else if !g.quiet {
        // On stderr, so that stdout is only paths and a pipe gets nothing else.
        errln!("snapshot {} of {:?} at {}:", id.short(), snap.paths, timespec::local(snap.time_ns));
    }
    // The first write error (a closed pipe) stops the walk.
    let mut failed: Option<std::io::Error> = None;
    ls(&repo, id, snap.tree, path.as_deref(), recursive, |p, n| {
        let r = if a.json { writeln!(out, "{}", node_json(p, n)) } else { entry_line(&mut out, p, n, a.long) };
        failed = r.err();
        failed.is_none()
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    Ok(0)
}
