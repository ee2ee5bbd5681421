//! `snapfs restore`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{Global, count, human, output, progress};
use snapfs::patterns::Patterns;
use snapfs::restore::{Counts, Overwrite, PerKind, RestoreOptions, restore};
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
    /// Print what would be done and its counts, write and remove nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Restore files with damaged chunks anyway, the damaged byte ranges left as holes (listed;
    /// exit 3); without it such files are not restored
    #[arg(long)]
    allow_damaged: bool,
    /// What to do with entries that already exist in the target
    #[arg(long, value_enum, default_value = "never")]
    overwrite: OverwriteArg,
    /// Remove what the restored directories hold that the snapshot does not (only what the
    /// includes and excludes select); try it with --dry-run first
    #[arg(long)]
    delete: bool,
    /// Re-read every file written and check it against the snapshot (exit 1 if any differs)
    #[arg(long)]
    verify: bool,
    /// Print the summary as a JSON object
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OverwriteArg {
    /// Keep existing entries (the default)
    Never,
    /// Replace existing entries
    Always,
    /// Replace unless a regular file with the same size and modification time
    IfChanged,
    /// Replace only when the snapshot's entry is newer (modification time)
    IfNewer,
    /// Keep the existing entry and write the snapshot's beside it as NAME.snapfs-<UTC time>
    Rename,
    /// Write nothing at all if any entry already exists (existing directories are merged into)
    Error,
}

impl From<OverwriteArg> for Overwrite {
    fn from(a: OverwriteArg) -> Overwrite {
        match a {
            OverwriteArg::Never => Overwrite::Never,
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::IfNewer => Overwrite::IfNewer,
            OverwriteArg::Rename => Overwrite::Rename,
            OverwriteArg::Error => Overwrite::Error,
        }
    }
}

/// Only the kinds that are there, e.g. "2 files, 1 symlink"; "0" when none.
fn kinds(p: &PerKind) -> String {
    let parts: Vec<String> = [
        (p.files, "file", "files"),
        (p.dirs, "directory", "directories"),
        (p.symlinks, "symlink", "symlinks"),
        (p.others, "other entry", "other entries"),
    ]
    .iter()
    .filter(|(n, _, _)| *n > 0)
    .map(|&(n, one, many)| count(n, one, many))
    .collect();
    if parts.is_empty() { "0".to_string() } else { parts.join(", ") }
}

fn kinds_json(p: &PerKind) -> Value {
    json!({"files": p.files, "dirs": p.dirs, "symlinks": p.symlinks, "others": p.others})
}

/// One line with every count: what a script greps and a person reads.
fn summary(c: &Counts, bytes: Option<u64>) -> String {
    let mut line = format!("restored {}", kinds(&c.restored));
    if let Some(b) = bytes {
        line.push_str(&format!(" ({})", human(b)));
    }
    for (word, p) in [("skipped", &c.skipped), ("renamed", &c.renamed), ("deleted", &c.deleted), ("failed", &c.failed)]
    {
        line.push_str(&format!("; {word} {}", kinds(p)));
    }
    line
}

/// The counters restore advances; with `verbose`, each entry is printed as it is written.
fn work(verbose: bool, bars: &Arc<progress::Bars>) -> snapfs::progress::Work {
    let bars = bars.clone();
    let each: Option<snapfs::progress::OnItem> =
        verbose.then(|| Box::new(move |p: &Path| bars.suspend(|| outln!("restored {}", p.display()))) as _);
    snapfs::progress::Work { each, ..Default::default() }
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let (selector, subpath) = match (&a.snapshot, &a.timestamp) {
        (Some(spec), _) => select::parse_spec(spec)?,
        (None, Some(t)) => (select::Selector::AtOrBefore(timespec::parse_until(t)?), None),
        (None, None) => bail!("name a snapshot, or give --timestamp"),
    };
    // Armed before the lock is taken: the lock is found by this process's id, not its name.
    let interrupt = super::interrupt::Interrupt::catch()?;
    interrupt.exit_releasing(super::backend(g)?);
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
        overwrite: a.overwrite.into(),
        allow_damaged: a.allow_damaged,
        delete: a.delete,
        verify: a.verify,
        progress: Default::default(),
    };
    if !g.quiet && !a.json {
        outln!("restoring snapshot {} of {} to {}", id.short(), timespec::local(snap.time_ns), a.target.display());
    }
    let started = Instant::now();
    let bars = Arc::new(progress::Bars::new(g.quiet || a.json || a.dry_run));
    let bar = bars.work();
    let opts = RestoreOptions { progress: Arc::new(work(g.verbose > 0 && !a.json && !a.dry_run, &bars)), ..opts };
    let done = AtomicBool::new(false);
    // The library's errors name the target or the entry in the way.
    let out = std::thread::scope(|s| {
        s.spawn(|| progress::follow_work(&bar, "restoring", "entries", &opts.progress, &done));
        let out = restore(&repo, snap.tree, &opts);
        done.store(true, Relaxed);
        out
    })?;
    if !opts.includes.is_empty() && out.entries == 0 {
        let given: Vec<&str> = a.includes.iter().chain(&a.iincludes).map(String::as_str).collect();
        bail!("--include {} matches nothing in snapshot {}; nothing was restored", given.join(", "), id.short());
    }
    let elapsed = started.elapsed();
    if a.json {
        let v = json!({
            "snapshot_id": id.hex(),
            "target": a.target.display().to_string(),
            "dry_run": a.dry_run,
            "restored": kinds_json(&out.counts.restored),
            "skipped": kinds_json(&out.counts.skipped),
            "renamed": kinds_json(&out.counts.renamed),
            "deleted": kinds_json(&out.counts.deleted),
            "failed": kinds_json(&out.counts.failed),
            "bytes": out.bytes,
            "verified": out.verified,
            "mismatches": out.mismatches,
            "errors": out.errors,
            "duration_ns": elapsed.as_nanos() as u64,
        });
        outln!("{v}");
    } else if a.dry_run {
        for line in &out.planned {
            if output::stopped() {
                break;
            }
            outln!("{line}");
        }
        outln!("dry run: would have {}; nothing written", summary(&out.counts, None));
    } else if !g.quiet {
        outln!("{} in {:.2} s", summary(&out.counts, Some(out.bytes)), elapsed.as_secs_f64());
    }
    if a.dry_run {
        return Ok(0);
    }
    if !out.skipped.is_empty() && !a.json {
        let n = out.skipped.len() as u64;
        match opts.overwrite {
            Overwrite::IfChanged => outln!(
                "kept {} the snapshot (same size and modification time):",
                count(n, "existing file that already matches", "existing files that already match")
            ),
            Overwrite::IfNewer => {
                outln!("kept {} (not older than the snapshot's):", count(n, "existing entry", "existing entries"))
            }
            _ => outln!(
                "skipped {} (use --overwrite always, if-changed, if-newer or rename to restore them):",
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
    for m in &out.mismatches {
        errln!("error: verify: {m}");
    }
    let restored = out.counts.restored.total() + out.counts.renamed.total();
    let failed = out.counts.failed.total();
    if failed > 0 || out.errors.len() as u64 > failed {
        let n = count(failed.max(out.errors.len() as u64), "entry", "entries");
        if restored == 0 {
            bail!("nothing was restored: {n} could not be");
        }
        bail!("{n} could not be restored; {restored} were");
    }
    if !out.mismatches.is_empty() {
        let n = count(out.mismatches.len() as u64, "file differs", "files differ");
        bail!("verify: {n} from the snapshot after restore (of {} checked)", out.verified);
    }
    if !out.damaged.is_empty() {
        let n = count(out.damaged.len() as u64, "file was", "files were");
        errln!("snapfs: {n} restored with holes where their data is damaged");
        return Ok(super::exit::INCOMPLETE);
    }
    Ok(0)
}
