//! `snapfs snapshots`.

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::{Global, human};
use snapfs::format::snapshot::Snapshot;
use snapfs::{Id, timespec};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Only the newest N snapshots (of each group, with --group-by)
    #[arg(long = "latest", visible_alias = "last", value_name = "N")]
    last: Option<usize>,
    /// One line per snapshot: id, time, host and tags (no paths or sizes)
    #[arg(long, conflicts_with = "json")]
    compact: bool,
    /// Only snapshots taken at or after this time (RFC 3339, or local YYYY-MM-DD[ HH:MM[:SS]])
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only snapshots taken at or before this time (a date means the end of that day)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// List the snapshots in groups with the same host, paths and/or tags (e.g. host,paths)
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    group_by: Vec<GroupKey>,
    /// Print a JSON array (of groups, each with its key and snapshots, with --group-by)
    #[arg(long)]
    json: bool,
    /// With --keep-* options: why each snapshot is kept under that policy, and when a
    /// --keep-within* rule stops keeping it (grouped by host and paths, as forget does)
    #[command(flatten)]
    policy: super::forget::PolicyArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GroupKey {
    Host,
    Paths,
    Tags,
}

pub use snapfs::json::snapshot as json_of;

type Group<'a> = (serde_json::Value, Vec<&'a (Id, Snapshot)>);

/// The snapshots in groups by `keys` (one group of all when there are none), each oldest
/// first, groups in the order of their first snapshot.
fn groups<'a>(list: &[&'a (Id, Snapshot)], keys: &[GroupKey]) -> Vec<Group<'a>> {
    let mut out: Vec<Group<'a>> = Vec::new();
    for item in list {
        let s = &item.1;
        let mut key = serde_json::Map::new();
        for k in keys {
            let (name, v) = match k {
                GroupKey::Host => ("hostname", json!(s.hostname)),
                GroupKey::Paths => ("paths", json!(s.paths)),
                GroupKey::Tags => ("tags", json!(s.tags)),
            };
            key.insert(name.to_string(), v);
        }
        let key = serde_json::Value::Object(key);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(*item),
            None => out.push((key, vec![*item])),
        }
    }
    out
}

/// The table, its columns as wide as their widest value so that it fits 80 columns for
/// ordinary host names and tags.
fn table(out: &mut impl Write, list: &[&(Id, Snapshot)], compact: bool) -> std::io::Result<()> {
    let width = |f: &dyn Fn(&Snapshot) -> usize, min: usize| list.iter().map(|(_, s)| f(s)).max().unwrap_or(0).max(min);
    let hw = width(&|s| s.hostname.len(), 4);
    let tw = width(&|s| s.tags.join(",").len(), 4);
    if compact {
        writeln!(out, "{:<8}  {:<19}  {:<hw$}  tags", "id", "time", "host")?;
        for (id, s) in list {
            let line = format!(
                "{:<8}  {:<19}  {:<hw$}  {}",
                id.short(),
                timespec::local(s.time_ns),
                s.hostname,
                s.tags.join(",")
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<8}  {:<19}  {:<hw$}  {:<tw$}  {:>9}  {:>9}  paths",
        "id", "time", "host", "tags", "size", "added"
    )?;
    for (id, s) in list {
        let paths = if s.paths.is_empty() { vec![String::new()] } else { s.paths.clone() };
        let (size, added) = (human(s.summary.total_bytes), human(s.summary.bytes_added));
        let lead = format!(
            "{:<8}  {:<19}  {:<hw$}  {:<tw$}  {size:>9}  {added:>9}  ",
            id.short(),
            timespec::local(s.time_ns),
            s.hostname,
            s.tags.join(","),
        );
        writeln!(out, "{lead}{}", paths[0])?;
        for p in &paths[1..] {
            writeln!(out, "{:w$}{p}", "", w = lead.len())?;
        }
    }
    Ok(())
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // Listing reads no pack and writes nothing: no lock, no index, so it works on read-only media.
    let repo = super::open_keys(g, snapfs::repo::LockMode::None, "snapshots")?;
    let (snaps, bad) = repo.snapshots()?;
    for (name, e) in &bad {
        errln!("warning: snapshot {name} is damaged and was left out: {e}");
    }
    let filter: snapfs::select::Filter = a.filter.into();
    let since = a.since.as_deref().map(timespec::parse_at).transpose()?.map(|t| t.as_nanosecond());
    let until = a.until.as_deref().map(timespec::parse_until).transpose()?.map(|t| t.as_nanosecond());
    let list: Vec<_> = snaps
        .iter()
        .filter(|(_, s)| filter.matches(s))
        .filter(|(_, s)| {
            since.is_none_or(|t| i128::from(s.time_ns) >= t) && until.is_none_or(|t| i128::from(s.time_ns) <= t)
        })
        .collect();
    let policy = a.policy.policy()?;
    let verdicts = (!policy.is_empty()).then(|| verdicts(&snaps, &filter, &policy));
    let mut grouped = groups(&list, &a.group_by);
    if let Some(n) = a.last {
        for (_, members) in &mut grouped {
            *members = members.split_off(members.len().saturating_sub(n));
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let json_of = |id: &Id, s: &Snapshot| {
        let mut v = json_of(id, s);
        if let Some(m) = &verdicts {
            let (reasons, expires) = m.get(id).cloned().unwrap_or_default();
            v["keep_reasons"] = json!(reasons);
            v["expires"] = json!(expires.map(|t| t.to_string()));
        }
        v
    };
    if a.json {
        let arr: Vec<_> = if a.group_by.is_empty() {
            grouped.iter().flat_map(|(_, m)| m.iter().map(|(id, s)| json_of(id, s))).collect()
        } else {
            grouped
                .iter()
                .map(|(key, m)| json!({ "group_key": key, "snapshots": m.iter().map(|(id, s)| json_of(id, s)).collect::<Vec<_>>() }))
                .collect()
        };
        writeln!(out, "{}", serde_json::Value::Array(arr))?;
    } else if let Some(m) = &verdicts {
        writeln!(out, "{:<8}  {:<19}  {:<19}  keep (times in the local zone)", "id", "time", "expires")?;
        for (id, s) in grouped.iter().flat_map(|(_, m)| m.iter()) {
            let (reasons, expires) = m.get(id).cloned().unwrap_or_default();
            let expires = expires.map(|t| timespec::local(t.as_nanosecond() as i64)).unwrap_or_default();
            let keep = if reasons.is_empty() { "(removed by this policy)".to_string() } else { reasons.join(", ") };
            writeln!(out, "{:<8}  {:<19}  {:<19}  {keep}", id.short(), timespec::local(s.time_ns), expires)?;
        }
    } else {
        let mut shown = 0;
        for (i, (key, members)) in grouped.iter().enumerate() {
            if !a.group_by.is_empty() {
                let k = key.as_object().expect("an object");
                let parts: Vec<String> = k.iter().map(|(n, v)| format!("{n} {v}")).collect();
                writeln!(out, "{}snapshots for {}:", if i > 0 { "\n" } else { "" }, parts.join(", "))?;
            }
            table(&mut out, members, a.compact)?;
            shown += members.len();
        }
        if grouped.is_empty() {
            table(&mut out, &[], a.compact)?;
        }
        if !g.quiet {
            // The times are the local zone's; a reader elsewhere (or in a log) must be told which.
            writeln!(
                out,
                "{}; times in the local zone ({})",
                super::count(shown as u64, "snapshot", "snapshots"),
                timespec::zone_name()
            )?;
        }
    }
    out.flush()?;
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
