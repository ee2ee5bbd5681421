//! `snapfs prune`: frees the space no snapshot needs, beside running backups and mounts.

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Global, human};
use snapfs::prune::{CopyProgress, PruneOptions, prune};
use snapfs::repo::{LockMode, Opened, Repository};

/// The tuning options, shared with `forget --prune`.
#[derive(clap::Args, Clone)]
pub struct Tuning {
    /// Unused space to tolerate, as a share of the repository ("5%"); packs with the most
    /// unused space are repacked until the rest is under it
    #[arg(long, value_name = "PERCENT", default_value = "5%")]
    max_unused: String,
    /// Copy at most this much live data out of packs being repacked (e.g. 2G, 500M)
    #[arg(long, value_name = "SIZE")]
    max_repack_size: Option<String>,
}

#[derive(clap::Args)]
pub struct Command {
    #[command(flatten)]
    args: Tuning,
    /// Say what would be deleted and repacked; change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print a JSON summary
    #[arg(long)]
    json: bool,
}

fn percent(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .with_context(|| format!("bad --max-unused {s:?}: use e.g. 5%"))?;
    if !(0.0..=100.0).contains(&v) {
        bail!("--max-unused {s:?}: must be between 0% and 100%");
    }
    Ok(v / 100.0)
}

/// `500M`, `2G`, `1T`, or bytes.
pub fn size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().with_context(|| format!("bad size {s:?}: use e.g. 500M or 2G"))?;
    if n < 0.0 {
        bail!("bad size {s:?}: must not be negative");
    }
    Ok((n * mult as f64) as u64)
}

pub fn run(g: &Global, c: Command) -> Result<u8> {
    run_with(g, super::open_keys(g, LockMode::Prune, "prune")?, &c.args, c.dry_run, c.json)
}

/// Prunes `repo`, opened under a prune lock (by `prune`, or by `forget --prune`, which goes on
/// with its own handle rather than unlocking the keys and taking a lock a second time).
pub fn run_with(g: &Global, repo: Repository<Opened>, a: &Tuning, dry_run: bool, json_out: bool) -> Result<u8> {
    let progress = std::sync::Arc::new(CopyProgress::default());
    let opts = PruneOptions {
        max_unused: percent(&a.max_unused)?,
        max_repack_bytes: a.max_repack_size.as_deref().map(size).transpose()?,
        dry_run,
        progress: Some(progress.clone()),
        ..PruneOptions::default()
    };
    let repo = super::with_index(g, repo, &super::cache(g).streaming().deferred())?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        if !g.quiet && !json_out {
            s.spawn(|| super::progress::report_copy("repacked", &progress, &done));
        }
        let r = prune(&repo, &opts);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    })?;
    let p = &out.plan;
    if json_out {
        outln!(
            "{}",
            json!({
                "dry_run": dry_run,
                "packs": p.packs,
                "bytes": p.bytes,
                "used_blobs": p.used_blobs,
                "used_bytes": p.used_bytes,
                "unused_blobs": p.unused_blobs,
                "unused_bytes": p.unused_bytes,
                "delete_packs": p.delete.len(),
                "delete_bytes": p.delete_bytes,
                "repack_packs": p.repack.len(),
                "repack_bytes": p.repack_bytes,
                "copy_blobs": p.copy_blobs,
                "copy_bytes": p.copy_bytes,
                "bytes_after": p.bytes_after,
                "deleted_packs": out.deleted_packs,
                "deleted_bytes": out.deleted_bytes,
                "waiting_packs": out.waiting_packs,
                "waiting_bytes": out.waiting_bytes,
                "waiting_for": out.waiting_for,
                "rescued_packs": out.rescued_packs,
            })
        );
        return Ok(0);
    }
    if g.quiet {
        return Ok(0);
    }
    outln!(
        "repository: {} packs, {}; in use {} in {} blobs, unused {} in {} blobs",
        p.packs,
        human(p.bytes),
        human(p.used_bytes),
        p.used_blobs,
        human(p.unused_bytes),
        p.unused_blobs
    );
    let verb = if dry_run { "would" } else { "will" };
    outln!(
        "{verb} delete {} unused packs ({}) and repack {} ({}, copying {} of live data in {} blobs)",
        p.delete.len(),
        human(p.delete_bytes),
        p.repack.len(),
        human(p.repack_bytes),
        human(p.copy_bytes),
        p.copy_blobs
    );
    if dry_run {
        outln!("the repository would weigh {} afterwards; nothing was changed (dry run)", human(p.bytes_after));
        return Ok(0);
    }
    outln!("deleted {} packs ({})", out.deleted_packs, human(out.deleted_bytes));
    if out.rescued_packs > 0 {
        outln!("kept {} condemned packs that a snapshot written meanwhile needs", out.rescued_packs);
    }
    if out.waiting_packs > 0 {
        outln!(
            "{} condemned packs ({}) wait for users that started before they were condemned: {}; \
             the next prune after those finish deletes them",
            out.waiting_packs,
            human(out.waiting_bytes),
            out.waiting_for.join(", ")
        );
    }
    Ok(0)
}
