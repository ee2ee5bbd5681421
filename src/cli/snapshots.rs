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
    /// With --keep-* options: why each snapshot is kept under that policy, and when a
    /// --keep-within* rule stops keeping it (grouped by host and paths, as forget does)
    #[command(flatten)]
    policy: super::forget::PolicyArgs,
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
    v
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // Listing reads no pack and writes nothing: no lock, no index, so it works on read-only media.
    let repo = super::open_keys(g, snapfs::repo::LockMode::None, "snapshots")?;
    let (snaps, bad) = repo.snapshots()?;
    for (name, e) in &bad {
        errln!("warning: snapshot {name} is damaged and was left out: {e}");
    }
    let filter: snapfs::select::Filter = a.filter.into();
    let policy = a.policy.policy()?;
    let verdicts = (!policy.is_empty()).then(|| verdicts(&snaps, &filter, &policy));
    let mut list: Vec<_> = snaps.iter().filter(|(_, s)| filter.matches(s)).collect();
    if let Some(n) = a.last {
        list = list.split_off(list.len().saturating_sub(n));
    }
    if a.json {
        let arr: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                let mut v = json_of(id, s);
                if let Some(m) = &verdicts {
                    let (reasons, expires) = m.get(id).cloned().unwrap_or_default();
                    v["keep_reasons"] = json!(reasons);
                    v["expires"] = json!(expires.map(|t| t.to_string()));
                }
                v
            })
            .collect();
        outln!("{}", serde_json::Value::Array(arr));
    } else if let Some(m) = &verdicts {
        outln!("{:<8}  {:<19}  {:<19}  keep (times in the local zone)", "id", "time", "expires");
        for (id, s) in &list {
            let (reasons, expires) = m.get(id).cloned().unwrap_or_default();
            let expires = expires.map(|t| timespec::local(t.as_nanosecond() as i64)).unwrap_or_default();
            let keep = if reasons.is_empty() { "(removed by this policy)".to_string() } else { reasons.join(", ") };
            outln!("{:<8}  {:<19}  {:<19}  {keep}", id.short(), timespec::local(s.time_ns), expires);
        }
    } else {
        outln!("{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  paths", "id", "time", "host", "tags", "size");
        for (id, s) in &list {
            let paths = if s.paths.is_empty() { vec![String::new()] } else { s.paths.clone() };
            outln!(
                "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
                id.short(),
                timespec::local(s.time_ns),
                s.hostname,
                s.tags.join(","),
                human(s.summary.total_bytes),
                paths[0]
            );
            for p in &paths[1..] {
                outln!("{:>78}  {p}", "");
            }
        }
        if !g.quiet {
            outln!("{}", super::count(list.len() as u64, "snapshot", "snapshots"));
        }
    }
    Ok(if bad.is_empty() { 0 } else { super::exit::ERROR })
}

type Verdicts = std::collections::HashMap<Id, (Vec<String>, Option<jiff::Timestamp>)>;

/// Why each snapshot is kept under `policy` (empty: it would be removed), per forget's groups.
fn verdicts(snaps: &[(Id, Snapshot)], filter: &snapfs::select::Filter, policy: &snapfs::policy::Policy) -> Verdicts {
    let matching: Vec<(Id, Snapshot)> = snaps.iter().filter(|(_, s)| filter.matches(s)).cloned().collect();
    let (tz, now) = (jiff::tz::TimeZone::system(), jiff::Timestamp::now());
    let mut out = Verdicts::new();
    for (_, group) in snapfs::policy::group(&matching, snapfs::policy::GroupBy::DEFAULT) {
        for kept in snapfs::policy::apply(&group, policy, &tz, now).keep {
            out.insert(kept.id, (kept.matches, kept.expires));
        }
    }
    out
}
