//! `snapfs forget`: restic's retention options, per group, with the reason each snapshot is kept.

use anyhow::{Context, Result};
use serde_json::json;

use super::{Global, snapshots::json_of};
use snapfs::forget::{ForgetOptions, describe, forget};
use snapfs::policy::{Duration, GroupBy, Policy};
use snapfs::repo::LockMode;
use snapfs::timespec;

/// The `--keep-*` options, shared by `forget` and `snapshots`.
#[derive(clap::Args, Clone, Default)]
pub struct PolicyArgs {
    /// Keep the newest N snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the last N hours (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_hourly: Option<i64>,
    /// Keep the newest snapshot of each of the last N days (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_daily: Option<i64>,
    /// Keep the newest snapshot of each of the last N ISO weeks (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_weekly: Option<i64>,
    /// Keep the newest snapshot of each of the last N months (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_monthly: Option<i64>,
    /// Keep the newest snapshot of each of the last N years (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_yearly: Option<i64>,
    /// Keep every snapshot within this long of the newest one (e.g. 1y5m7d2h)
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep hourly snapshots within this long of the newest one
    #[arg(long, value_name = "DURATION")]
    keep_within_hourly: Option<String>,
    /// Keep daily snapshots within this long of the newest one
    #[arg(long, value_name = "DURATION")]
    keep_within_daily: Option<String>,
    /// Keep weekly snapshots within this long of the newest one
    #[arg(long, value_name = "DURATION")]
    keep_within_weekly: Option<String>,
    /// Keep monthly snapshots within this long of the newest one
    #[arg(long, value_name = "DURATION")]
    keep_within_monthly: Option<String>,
    /// Keep yearly snapshots within this long of the newest one
    #[arg(long, value_name = "DURATION")]
    keep_within_yearly: Option<String>,
    /// Keep snapshots with all of these tags (comma-separated; repeat for any of the sets)
    #[arg(long, value_name = "TAGS")]
    keep_tag: Vec<String>,
}

impl PolicyArgs {
    pub fn policy(&self) -> Result<Policy> {
        let dur = |s: &Option<String>, flag: &str| -> Result<Duration> {
            s.as_deref()
                .map(Duration::parse)
                .transpose()
                .with_context(|| format!("--{flag}"))
                .map(Option::unwrap_or_default)
        };
        let p = Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: dur(&self.keep_within, "keep-within")?,
            within_hourly: dur(&self.keep_within_hourly, "keep-within-hourly")?,
            within_daily: dur(&self.keep_within_daily, "keep-within-daily")?,
            within_weekly: dur(&self.keep_within_weekly, "keep-within-weekly")?,
            within_monthly: dur(&self.keep_within_monthly, "keep-within-monthly")?,
            within_yearly: dur(&self.keep_within_yearly, "keep-within-yearly")?,
            tags: self.keep_tag.clone(),
        };
        p.validate()?;
        Ok(p)
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to remove (id prefixes or `latest`), instead of a policy
    #[arg(value_name = "SNAPSHOT")]
    ids: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Group snapshots by these before applying the policy ('' for one group)
    #[arg(short = 'g', long, value_name = "host,paths,tags", default_value = "host,paths")]
    group_by: String,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Show what would be removed; remove nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Run `prune` afterwards
    #[arg(long)]
    prune: bool,
    /// Allow a policy to remove every snapshot of a group
    #[arg(long)]
    unsafe_allow_remove_all: bool,
    #[command(flatten)]
    prune_args: super::prune::Tuning,
    /// Print JSON in restic's shape: an array of groups
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let opts = ForgetOptions {
        policy: a.policy.policy()?,
        group_by: GroupBy::parse(&a.group_by)?,
        filter: a.filter.into(),
        ids: a.ids.clone(),
        dry_run: a.dry_run,
        allow_remove_all: a.unsafe_allow_remove_all,
    };
    let repo = super::open_keys(g, LockMode::Prune, "forget")?;
    let out = forget(&repo, &opts)?;
    for (name, e) in &out.damaged {
        errln!("warning: snapshot {name} is damaged and was left alone: {e}");
    }
    if a.json {
        let groups: Vec<_> = out
            .groups
            .iter()
            .map(|grp| {
                let find = |id| grp.snapshots.iter().find(|(i, _)| *i == id).map(|(i, s)| json_of(i, s));
                json!({
                    "host": grp.key.host,
                    "paths": grp.key.paths,
                    "tags": grp.key.tags,
                    "keep": grp.decision.keep.iter().filter_map(|k| find(k.id)).collect::<Vec<_>>(),
                    "remove": grp.decision.remove.iter().filter_map(|id| find(*id)).collect::<Vec<_>>(),
                    "reasons": grp.decision.keep.iter().map(|k| json!({
                        "snapshot": find(k.id),
                        "matches": k.matches,
                        "counters": counters(&k.counters),
                        "expires": k.expires.map(|t| t.to_string()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(groups));
    } else if !g.quiet {
        for grp in &out.groups {
            print_group(grp);
        }
    }
    if !g.quiet && !a.json {
        let n = out.removed.len();
        let s = if n == 1 { "" } else { "s" };
        if a.dry_run {
            outln!("would remove {n} snapshot{s}; nothing was removed (dry run)");
        } else {
            outln!("removed {n} snapshot{s}");
        }
    }
    if a.prune && !a.dry_run {
        return super::prune::run_with(g, repo, &a.prune_args, false, a.json);
    }
    Ok(0)
}

fn counters(c: &[i64; 6]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (name, v) in ["last", "hourly", "daily", "weekly", "monthly", "yearly"].iter().zip(c) {
        if *v != 0 {
            m.insert(name.to_string(), json!(v));
        }
    }
    serde_json::Value::Object(m)
}

fn print_group(grp: &snapfs::forget::Group) {
    let time = |id: &snapfs::Id| grp.snapshots.iter().find(|(i, _)| i == id).map(|(_, s)| timespec::local(s.time_ns));
    outln!("snapshots of {}:", describe(&grp.key));
    let k = grp.decision.keep.len();
    outln!("keep {k} snapshot{}:", if k == 1 { "" } else { "s" });
    for kept in &grp.decision.keep {
        let expires = kept.expires.map(|t| format!("  (until {})", timespec::local(t.as_nanosecond() as i64)));
        outln!(
            "  {}  {}  {}{}",
            kept.id.short(),
            time(&kept.id).unwrap_or_default(),
            kept.matches.join(", "),
            expires.unwrap_or_default()
        );
    }
    let r = grp.decision.remove.len();
    if r > 0 {
        outln!("remove {r} snapshot{}:", if r == 1 { "" } else { "s" });
        for id in &grp.decision.remove {
            outln!("  {}  {}", id.short(), time(id).unwrap_or_default());
        }
    }
    outln!();
}
