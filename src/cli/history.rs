//! `snapfs history`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Global, human};
use snapfs::browse::history::history;
use snapfs::browse::{kind_name, time_ns};
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// The file or directory (absolute, or relative to the current directory)
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Print a JSON array of the versions, oldest first
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

/// To the minute: enough to tell snapshots apart in a line that must fit 80 columns.
fn minute(ns: i64) -> String {
    let t = timespec::local(ns);
    t.get(..16).unwrap_or(&t).to_string()
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // The path need not exist any more, so it is made absolute without resolving it.
    let path = if a.path.is_absolute() {
        a.path.clone()
    } else {
        std::env::current_dir().context("the current directory")?.join(&a.path)
    };
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "history")?;
    let filter: snapfs::select::Filter = a.filter.into();
    let snaps: Vec<_> = super::snapshot_list(&repo)?.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    let h = history(&repo, &snaps, &path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        let arr: Vec<_> = h
            .versions
            .iter()
            .map(|v| {
                let (first, last) = (&snaps[v.snapshots[0]], &snaps[*v.snapshots.last().expect("one at least")]);
                json!({
                    "type": kind_name(v.node.kind),
                    "size": v.node.size,
                    "mtime": timespec::rfc3339(time_ns(v.node.mtime)),
                    "fingerprint": v.fingerprint,
                    "first_snapshot": first.0.hex(),
                    "last_snapshot": last.0.hex(),
                    "first_time": timespec::rfc3339(first.1.time_ns),
                    "last_time": timespec::rfc3339(last.1.time_ns),
                    "snapshots": v.snapshots.iter().map(|&i| snaps[i].0.hex()).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(arr))?;
        out.flush()?;
        return Ok(0);
    }
    let held: usize = h.versions.iter().map(|v| v.snapshots.len()).sum();
    writeln!(
        out,
        "{}: {} version{} in {held} of {} snapshots",
        path.display(),
        h.versions.len(),
        if h.versions.len() == 1 { "" } else { "s" },
        snaps.len()
    )?;
    writeln!(
        out,
        "{:>3}  {:<16}  {:<16}  {:>5}  {:>10}  {:<16}",
        "#", "first seen", "last seen", "seen", "size", "modified"
    )?;
    for (n, v) in h.versions.iter().enumerate() {
        let (first, last) = (&snaps[v.snapshots[0]], &snaps[*v.snapshots.last().expect("one at least")]);
        writeln!(
            out,
            "{:>3}  {:<16}  {:<16}  {:>5}  {:>10}  {}",
            n + 1,
            minute(first.1.time_ns),
            minute(last.1.time_ns),
            v.snapshots.len(),
            human(v.node.size),
            minute(time_ns(v.node.mtime)),
        )?;
        writeln!(out, "     {} .. {}  {} {}", first.0.short(), last.0.short(), kind_name(v.node.kind), v.fingerprint)?;
    }
    for gap in &h.gaps {
        let d = &snaps[gap.deleted_in];
        write!(out, "deleted in {} ({})", d.0.short(), minute(d.1.time_ns))?;
        match gap.back_in {
            Some(b) => writeln!(out, ", back in {} ({})", snaps[b].0.short(), minute(snaps[b].1.time_ns))?,
            None => writeln!(out)?,
        }
    }
    out.flush()?;
    Ok(0)
}
