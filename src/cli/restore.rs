//! `snapfs restore`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};

use super::{Global, count, human, output};
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
    /// Restore files with damaged chunks anyway, the damaged byte ranges left as holes (listed;
    /// exit 3); without it such files are not restored
    #[arg(long)]
    allow_damaged: bool,
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
    let repo = super::open(g, snapfs::repo::LockMode::Reader, "restore")?;
    let (snaps, bad) = repo.snapshots()?;
    for (n, e) in &bad {
        errln!("warning: snapshot {n} is damaged and was left out: {e}");
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
        allow_damaged: a.allow_damaged,
    };
    if !g.quiet {
        outln!("restoring snapshot {} of {} to {}", id.short(), timespec::local(snap.time_ns), a.target.display());
    }
    let started = Instant::now();
    let out = restore(&repo, snap.tree, &opts)?;
    if !opts.includes.is_empty() && out.entries == 0 {
        let given: Vec<&str> = a.includes.iter().chain(&a.iincludes).map(String::as_str).collect();
        bail!("--include {} matches nothing in snapshot {}; nothing was restored", given.join(", "), id.short());
    }
    if a.dry_run {
        for line in &out.planned {
            if output::stopped() {
                break;
            }
            outln!("{line}");
        }
        outln!("dry run: {}, nothing written", count(out.planned.len() as u64, "entry", "entries"));
        return Ok(0);
    }
    let restored = out.files + out.dirs + out.others;
    if !g.quiet {
        outln!(
            "restored {}, {}, {}, {} in {:.2} s",
            count(out.files, "file", "files"),
            count(out.dirs, "directory", "directories"),
            count(out.others, "other entry", "other entries"),
            human(out.bytes),
            started.elapsed().as_secs_f64()
        );
    }
    if !out.skipped.is_empty() {
        let n = out.skipped.len() as u64;
        match opts.overwrite {
            Overwrite::IfChanged => outln!(
                "kept {} the snapshot (same size and modification time):",
                count(n, "existing file that already matches", "existing files that already match")
            ),
            _ => outln!(
                "skipped {} (use --overwrite always or if-changed to replace them):",
                count(n, "existing entry", "existing entries")
            ),
        }
        for p in out.skipped.iter().take(20) {
            outln!("  {}", p.display());
        }
        if out.skipped.len() > 20 {
            outln!("  ...");
        }
    }
    for (path, ranges) in &out.damaged {
        let list: Vec<String> = ranges.iter().map(|r| format!("{}-{}", r.start, r.end - 1)).collect();
        errln!("warning: {}: damaged, written with holes at bytes {}", path.display(), list.join(", "));
    }
    for e in &out.errors {
        errln!("error: {e}");
    }
    let failed = out.errors.len() as u64 + out.left_out;
    if failed > 0 {
        let n = count(failed, "entry", "entries");
        if restored == 0 {
            bail!("nothing was restored: {n} could not be");
        }
        bail!("{n} could not be restored; {restored} were");
    }
    if !out.damaged.is_empty() {
        let n = count(out.damaged.len() as u64, "file was", "files were");
        errln!("snapfs: {n} restored with holes where their data is damaged");
        return Ok(super::exit::INCOMPLETE);
    }
    Ok(0)
}
