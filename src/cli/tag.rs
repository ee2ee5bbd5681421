//! `snapfs tag`.

use std::io::Write;

use anyhow::{Result, bail};
use serde_json::json;

use super::Global;
use snapfs::tag::{TagChange, retag};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to change (id prefix or `latest`)
    #[arg(value_name = "SNAPSHOT", required = true)]
    snapshots: Vec<String>,
    /// Add this tag (repeat, or separate with commas)
    #[arg(long, value_name = "TAG")]
    add: Vec<String>,
    /// Remove this tag (repeat, or separate with commas)
    #[arg(long, value_name = "TAG")]
    remove: Vec<String>,
    /// Replace all tags with these (repeat, or separate with commas; `--set ''` removes all)
    #[arg(long, value_name = "TAG")]
    set: Option<Vec<String>>,
    /// Replace the description
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Print a JSON array: each snapshot's old and new id and its tags
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    if a.add.is_empty() && a.remove.is_empty() && a.set.is_none() && a.description.is_none() {
        bail!("nothing to change: give --add, --remove, --set or --description");
    }
    // Exclusive: two rewrites of one snapshot at once would leave two copies of it.
    let repo = super::open_keys(g, snapfs::repo::LockMode::Exclusive, "tag")?;
    let snaps = super::snapshot_list(&repo)?;
    let filter: snapfs::select::Filter = a.filter.into();
    let mut chosen = Vec::new();
    for spec in &a.snapshots {
        let (pick, path) = super::pick_spec(&snaps, spec, &filter)?;
        if path.is_some() {
            bail!("tag changes whole snapshots, not a path in one");
        }
        if !chosen.iter().any(|(id, _)| id == &pick.0) {
            chosen.push(pick.clone());
        }
    }
    let change = TagChange { set: a.set, remove: a.remove, add: a.add, description: a.description };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut results = Vec::new();
    for (id, snap) in &chosen {
        let done = retag(&repo, id, snap, &change)?;
        if a.json {
            let (new, tags) = match &done {
                Some((n, s)) => (n.hex(), s.tags.clone()),
                None => (id.hex(), snap.tags.clone()),
            };
            results.push(json!({ "old": id.hex(), "new": new, "changed": done.is_some(), "tags": tags }));
        } else if !g.quiet {
            match &done {
                Some((n, s)) => {
                    writeln!(out, "snapshot {} saved as {} (tags: {})", id.short(), n.short(), s.tags.join(","))?
                }
                None => writeln!(out, "snapshot {} unchanged", id.short())?,
            }
        }
    }
    if a.json {
        writeln!(out, "{}", serde_json::Value::Array(results))?;
    }
    out.flush()?;
    Ok(0)
}
