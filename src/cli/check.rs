//! `snapfs check`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use anyhow::{Context, Result};

use super::{Global, count, exit, human, parse_duration, progress};
use snapfs::check::{CheckOptions, Report, Subset, check, parse_subset};
use snapfs::repo::LockMode;
use snapfs::select::{self, Filter};
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// Also read every pack in full: authenticate, decompress and re-hash every blob
    #[arg(long)]
    read_data: bool,
    /// Read only part of the packs: `N%` (least recently verified first) or `n/m` (a fixed slice)
    #[arg(long, value_name = "N%|n/m")]
    read_data_subset: Option<String>,
    /// Stop starting new packs after this long (e.g. 10m, 1h30m); implies --read-data, least
    /// recently verified packs first
    #[arg(long, value_name = "DURATION")]
    max_duration: Option<String>,
    /// Check only what this snapshot (id prefix or `latest`) needs
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let subset = match &a.read_data_subset {
        Some(s) => Some(parse_subset(s).with_context(|| format!("bad --read-data-subset {s:?}: use N% or n/m"))?),
        None if a.read_data || a.max_duration.is_some() => Some(Subset::All),
        None => None,
    };
    let max_duration = a.max_duration.as_deref().map(parse_duration).transpose()?;
    // The cache is checked page by page on open (check must not trust an altered file), and
    // packs that vanished stay in it for check to name.
    // Armed before the lock is taken: the lock is found by this process's id, not its name.
    let interrupt = super::interrupt::Interrupt::catch()?;
    interrupt.exit_releasing(super::backend(g)?);
    let repo = super::open_cached(g, LockMode::Reader, "check", &super::cache(g).audited())?;
    let snapshot = match &a.snapshot {
        None => None,
        Some(name) => {
            let (snaps, _) = repo.snapshots()?;
            Some(select::pick(&snaps, &select::parse_spec(name)?.0, &Filter::default())?.0)
        }
    };
    let opts = CheckOptions { read_data: subset, max_duration, snapshot, progress: Default::default() };
    let bars = progress::Bars::new(g.quiet || a.json || subset.is_none());
    let bar = bars.work();
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        s.spawn(|| progress::follow_work(&bar, "reading", "packs", &opts.progress, &done));
        let report = check(&repo, &opts);
        done.store(true, Relaxed);
        report
    })?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&snapfs::json::check_report(&report))?);
    } else {
        print_text(&report, g.quiet);
    }
    Ok(if report.is_clean() { 0 } else { exit::ERROR })
}

fn print_text(r: &Report, quiet: bool) {
    if !quiet {
        outln!(
            "checked {}: {}, {}, in {} ({})",
            count(r.snapshots, "snapshot", "snapshots"),
            count(r.trees, "tree", "trees"),
            count(r.data_blobs, "data blob", "data blobs"),
            count(r.packs, "pack", "packs"),
            human(r.pack_bytes)
        );
        if let Some(d) = &r.read {
            let rate = if d.seconds > 0.0 { d.bytes as f64 / d.seconds } else { 0.0 };
            outln!(
                "read {} of {} selected packs ({}, {}) in {:.2} s, {}/s{}",
                d.packs,
                d.packs_selected,
                human(d.bytes),
                count(d.blobs, "blob", "blobs"),
                d.seconds,
                human(rate as u64),
                if d.complete { "" } else { "; stopped at --max-duration" }
            );
        }
        let c = &r.coverage;
        outln!(
            "coverage: {:.0}% of packs ({} of {}) verified in the last {} days",
            c.percent(),
            c.verified_recently,
            c.packs,
            c.days
        );
        if r.unreferenced_packs + r.unreferenced_blobs > 0 {
            outln!(
                "unreferenced: {}, {} that no snapshot needs (not damage)",
                count(r.unreferenced_packs, "pack", "packs"),
                count(r.unreferenced_blobs, "blob", "blobs")
            );
        }
        if r.redundant_blobs > 0 {
            outln!(
                "redundant: {} stored in more than one pack (not damage; prune reclaims them)",
                count(r.redundant_blobs, "blob", "blobs")
            );
        }
        if r.index.unindexed_packs > 0 {
            let n = count(r.index.unindexed_packs, "pack is", "packs are");
            outln!("{n} not in the index (left by an interrupted backup?)");
        }
        if !r.index.gone_packs.is_empty() && r.problems.iter().all(|p| p.kind != "pack_missing") {
            let n = r.index.gone_packs.len() as u64;
            outln!(
                "{} the index knew {} gone, and no snapshot needs them",
                count(n, "pack", "packs"),
                if n == 1 { "is" } else { "are" }
            );
        }
        for s in &r.stray_files {
            outln!("note: {s} is not a pack file");
        }
        for (name, age) in &r.staging_files {
            let minutes = count(age.as_secs() / 60, "minute", "minutes");
            outln!(
                "note: {name} is a staging file {minutes} old, left by an interrupted write or one under way; the next backup removes it once it is an hour old"
            );
        }
    }
    if !r.problems.is_empty() {
        outln!("DAMAGE: {}", count(r.problems.len() as u64, "problem", "problems"));
        for p in &r.problems {
            match p.blob {
                Some((id, ty)) => outln!("  {:<12} {} {id}: {}", p.kind, ty.name(), p.detail),
                None => outln!("  {:<12} {}", p.kind, p.detail),
            }
        }
    }
    for a in &r.affected {
        // The root listing lost is the whole snapshot lost: nothing else in it restores.
        if let [root] = a.paths.as_slice()
            && root.kind == "directory"
            && root.path == "/"
        {
            outln!(
                "snapshot {} of {}: its root tree {} is lost: nothing in it can be restored",
                a.snapshot.short(),
                timespec::local(a.time_ns),
                root.blob.short()
            );
            continue;
        }
        outln!(
            "snapshot {} of {}: {} affected (everything else in it restores):",
            a.snapshot.short(),
            timespec::local(a.time_ns),
            count(a.paths.len() as u64, "path", "paths")
        );
        for p in &a.paths {
            outln!("  {:<10} {}", p.kind, p.path);
        }
    }
    if r.index.needs_repair() {
        outln!(
            "INDEX: {}; run `snapfs repair index` to rebuild it from the pack headers",
            count(r.index.problems.len() as u64, "problem", "problems")
        );
        for p in &r.index.problems {
            outln!("  {p}");
        }
    }
    if r.is_clean() {
        if !quiet {
            outln!("no damage found");
        }
    } else if r.problems.is_empty() {
        outln!("the data is intact; only the index needs repair");
    }
}
