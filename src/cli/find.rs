//! `snapfs find`.

use std::io::Write;

use anyhow::{Result, bail};
use serde_json::json;

use super::Global;
use super::entries::{entry_line, node_json};
use snapfs::browse::find::{IdPrefix, Query, Target, find, pack_blobs};
use snapfs::{select, timespec};

#[derive(clap::Args)]
pub struct Args {
    /// Glob patterns: matched against the name, or against the absolute path when they hold a `/`
    #[arg(value_name = "PATTERN", required_unless_present_any = ["blob", "pack"])]
    patterns: Vec<String>,
    /// Search only this snapshot (id prefix or `latest`; repeatable) [default: all]
    #[arg(short, long = "snapshot", value_name = "ID")]
    snapshots: Vec<String>,
    /// Only entries whose absolute path matches this glob
    #[arg(long, value_name = "GLOB")]
    path: Option<String>,
    /// Only entries modified at or after this time
    #[arg(short = 'O', long, value_name = "TIME")]
    oldest: Option<String>,
    /// Only entries modified at or before this time
    #[arg(short = 'N', long, value_name = "TIME")]
    newest: Option<String>,
    /// Files and directories that use this blob (a data blob or a tree; an id prefix works; repeatable)
    #[arg(long, value_name = "ID", conflicts_with_all = ["patterns", "pack"])]
    blob: Vec<String>,
    /// Files that use a blob of this pack (an id prefix works)
    #[arg(long, value_name = "ID", conflicts_with = "patterns")]
    pack: Option<String>,
    /// Mode, owner, size and modification time too
    #[arg(short, long)]
    long: bool,
    /// A JSON array: one object per snapshot with matches
    #[arg(long)]
    json: bool,
    /// Only snapshots with these tags (comma-separated: all of them; repeat: any of the sets)
    #[arg(long = "tag", value_name = "TAGS")]
    tags: Vec<String>,
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "find")?;
    let all = super::snapshot_list(&repo)?;
    let filter = select::Filter { tags: a.tags, hosts: a.hosts, paths: Vec::new() };
    let snaps: Vec<_> = if a.snapshots.is_empty() {
        all.iter().filter(|(_, s)| filter.matches(s)).cloned().collect()
    } else {
        let mut chosen = Vec::new();
        for spec in &a.snapshots {
            let ((id, s), path) = super::pick_spec(&all, spec, &filter)?;
            if path.is_some() {
                bail!("--snapshot takes a snapshot, not a path in one: use --path GLOB");
            }
            chosen.push((*id, s.clone()));
        }
        chosen.sort_by_key(|(id, s)| (s.time_ns, *id));
        chosen.dedup_by_key(|(id, _)| *id);
        chosen
    };
    let target = match (&a.pack, a.blob.is_empty()) {
        (Some(p), _) => {
            let (pack, blobs) = pack_blobs(&repo, p)?;
            if !g.quiet && !a.json {
                errln!("pack {} holds {} blobs", pack.short(), blobs.len());
            }
            Target::BlobSet(blobs)
        }
        (None, false) => Target::Blobs(a.blob.iter().map(|b| IdPrefix::parse(b)).collect::<Result<_, _>>()?),
        (None, true) => Target::patterns(&a.patterns)?,
    };
    let query = Query {
        target,
        within: a.path.as_deref().map(Query::within).transpose()?,
        oldest: a.oldest.as_deref().map(timespec::parse_at).transpose()?.map(|t| t.as_nanosecond() as i64),
        newest: a.newest.as_deref().map(timespec::parse_until).transpose()?.map(|t| t.as_nanosecond() as i64),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut groups = Vec::new();
    let mut printed = false;
    let mut failed: Option<std::io::Error> = None;
    let stats = find(&repo, &snaps, &query, |id, snap, hits| {
        if hits.is_empty() || failed.is_some() {
            return;
        }
        if a.json {
            let matches: Vec<_> = hits
                .iter()
                .map(|h| {
                    let mut v = node_json(&h.path, &h.node);
                    if !h.blobs.is_empty() {
                        v["blobs"] = json!(h.blobs.iter().map(|b| b.hex()).collect::<Vec<_>>());
                    }
                    v
                })
                .collect();
            groups.push(json!({
                "snapshot": id.hex(),
                "short_id": id.short(),
                "time": timespec::rfc3339(snap.time_ns),
                "hits": hits.len(),
                "matches": matches,
            }));
            return;
        }
        let r = (|| -> std::io::Result<()> {
            if printed {
                writeln!(out)?;
            }
            printed = true;
            writeln!(out, "Found matching entries in snapshot {} from {}", id.short(), timespec::local(snap.time_ns))?;
            for h in hits {
                entry_line(&mut out, &h.path, &h.node, a.long)?;
            }
            Ok(())
        })();
        failed = r.err();
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if a.json {
        writeln!(out, "{}", serde_json::Value::Array(groups))?;
    } else if stats.hits == 0 && !g.quiet {
        errln!("no matches in {} snapshot{}", stats.snapshots, if stats.snapshots == 1 { "" } else { "s" });
    }
    out.flush()?;
    Ok(0)
}
