//! `snapfs restore`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};

use super::{Global, human};
use snapfs::patterns::Patterns;
use snapfs::restore::{Overwrite, RestoreOptions, restore};
use snapfs::select;
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id prefix or `latest`, optionally followed by `:/path/inside`
    #[arg(value_name = "SNAPSHOT[:PATH]", required_unless_present = "timestamp", conflicts_with = "timestamp")]
    snapshot: Option<String>,
    /// Restore the newest snapshot taken at or before this time (RFC 3339, or local
    /// YYYY-MM-DD[ HH:MM[:SS]], a date meaning the end of that day)
    #[arg(long, value_name = "TIME")]
    timestamp: Option<String>,
    /// Directory to restore into
    #[arg(short, long, value_name = "DIR")]
    target: PathBuf,
    /// Restore only entries that match this pattern, and what is below them (repeatable; the
    /// rules of `backup --exclude`, against the path in the snapshot)
    #[arg(short, long = "include", value_name = "PATTERN")]
    includes: Vec<String>,
    /// As --include, ignoring case
    #[arg(long = "iinclude", value_name = "PATTERN")]
    iincludes: Vec<String>,
    /// Leave out entries that match this pattern (repeatable)
    #[arg(short, long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// As --exclude, ignoring case
    #[arg(long = "iexclude", value_name = "PATTERN")]
    iexcludes: Vec<String>,
    /// List what would be written, write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// What to do with files that already exist in the target
    #[arg(long, value_enum, default_value = "never")]
    overwrite: OverwriteArg,
    #[command(flatten)]
    filter: super::FilterArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OverwriteArg {
    Never,
    Always,
    IfChanged,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let (selector, subpath) = match (&a.snapshot, &a.timestamp) {
        (Some(spec), _) => select::parse_spec(spec)?,
        (None, Some(t)) => (select::Selector::AtOrBefore(timespec::parse_until(t)?), None),
        (None, None) => bail!("name a snapshot, or give --timestamp"),
    };
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "restore")?;
    let (snaps, bad) = repo.snapshots()?;
    for (n, e) in &bad {
        eprintln!("warning: snapshot {n} is damaged and was left out: {e}");
    }
    let filter: snapfs::select::Filter = a.filter.into();
    let (id, snap) = select::pick(&snaps, &selector, &filter)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        subpath,
        includes: Patterns::new(&a.includes, &a.iincludes)?,
        excludes: Patterns::new(&a.excludes, &a.iexcludes)?,
        dry_run: a.dry_run,
        overwrite: match a.overwrite {
            OverwriteArg::Never => Overwrite::Never,
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
        },
    };
    if !g.quiet {
        println!("restoring snapshot {} of {} to {}", id.short(), timespec::local(snap.time_ns), a.target.display());
    }
    let started = Instant::now();
    let out = restore(&repo, snap.tree, &opts)?;
    if a.dry_run {
        for line in &out.planned {
            println!("{line}");
        }
        println!("dry run: {} entries, nothing written", out.planned.len());
        return Ok(0);
    }
    if !g.quiet {
        println!(
            "restored {} files, {} directories, {} other entries, {} in {:.2} s",
            out.files,
            out.dirs,
            out.others,
            human(out.bytes),
            started.elapsed().as_secs_f64()
        );
    }
    if !out.skipped.is_empty() {
        println!(
            "skipped {} existing entries (use --overwrite always or if-changed to replace them):",
            out.skipped.len()
        );
        for p in out.skipped.iter().take(20) {
            println!("  {}", p.display());
        }
        if out.skipped.len() > 20 {
            println!("  ...");
        }
    }
    for e in &out.errors {
        eprintln!("error: {e}");
    }
    if !out.errors.is_empty() {
        bail!("{} entries could not be restored; everything else was", out.errors.len());
    }
    Ok(0)
}
