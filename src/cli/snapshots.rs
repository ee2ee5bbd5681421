//! `snapfs snapshots`.

use anyhow::Result;
use serde_json::json;

use super::{Global, human};
use snapfs::format::snapshot::Snapshot;
use snapfs::{Id, timespec};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Only the newest N snapshots
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Print a JSON array
    #[arg(long)]
    json: bool,
}

pub fn json_of(id: &Id, s: &Snapshot) -> serde_json::Value {
    let summary: serde_json::Map<String, serde_json::Value> =
        s.summary.named().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut v = json!({
        "id": id.hex(),
        "short_id": id.short(),
        "time": timespec::rfc3339(s.time_ns),
        "hostname": s.hostname,
        "username": s.username,
        "uid": s.uid,
        "gid": s.gid,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.hex(),
        "description": s.description,
        "program_version": s.program_version,
        "summary": summary,
    });
    if let Some(p) = s.parent {
        v["parent"] = json!(p.hex());
    }
    if let Some(o) = s.original {
        v["original"] = json!(o.hex());
    }
    v
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // Listing reads no pack and writes nothing: no lock, no index, so it works on read-only media.
    let repo = super::open_keys(g, snapfs::repo::LockMode::None, "snapshots")?;
    let (snaps, bad) = repo.snapshots()?;
    for (name, e) in &bad {
        eprintln!("warning: snapshot {name} is damaged and was left out: {e}");
    }
    let filter: snapfs::select::Filter = a.filter.into();
    let mut list: Vec<_> = snaps.iter().filter(|(_, s)| filter.matches(s)).collect();
    if let Some(n) = a.last {
        list = list.split_off(list.len().saturating_sub(n));
    }
    if a.json {
        let arr: Vec<_> = list.iter().map(|(id, s)| json_of(id, s)).collect();
        println!("{}", serde_json::Value::Array(arr));
    } else {
        println!("{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  paths", "id", "time", "host", "tags", "size");
        for (id, s) in &list {
            let paths = if s.paths.is_empty() { vec![String::new()] } else { s.paths.clone() };
            println!(
                "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
                id.short(),
                timespec::local(s.time_ns),
                s.hostname,
                s.tags.join(","),
                human(s.summary.total_bytes),
                paths[0]
            );
            for p in &paths[1..] {
                println!("{:>78}  {p}", "");
            }
        }
        if !g.quiet {
            println!("{} snapshot{}", list.len(), if list.len() == 1 { "" } else { "s" });
        }
    }
    Ok(if bad.is_empty() { 0 } else { super::exit::ERROR })
}
