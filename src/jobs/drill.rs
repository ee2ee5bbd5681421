//! Restore drills: the latest snapshot of every source of a job restored into a scratch
//! directory with every file re-read against the repository, optionally compared with the live
//! source, timed (the recovery time a real restore would take), recorded in the status, and the
//! scratch copy removed. A drill that cannot prove a source restorable fails.

use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;

use super::JobError;
use super::config::{Config, JobConfig, Source};
use super::repo::Target;
use super::status::{self, Outcome, Store};
use crate::browse::diff::{DiffOptions, Side, diff};
use crate::repo::LockMode;
use crate::restore::{RestoreOptions, restore};

pub struct DrillOptions {
    /// Where the scratch directory is made (a new directory inside it); the system's temporary
    /// directory when `None`.
    pub target: Option<PathBuf>,
    /// Also compare each restored source with the live one.
    pub compare_source: bool,
}

#[derive(Debug, Default)]
pub struct DrillSource {
    pub source: String,
    pub snapshot: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// Files re-read and checked against the snapshot.
    pub verified: u64,
    /// Files that differ from the snapshot after the restore, or could not be restored.
    pub problems: Vec<String>,
    /// With `compare_source`: how the live source differs from the snapshot.
    pub differences: Vec<String>,
    pub duration_s: f64,
}

#[derive(Debug)]
pub struct DrillReport {
    pub job: String,
    pub scratch: PathBuf,
    pub sources: Vec<DrillSource>,
    pub duration_s: f64,
    pub ok: bool,
}

/// The path a snapshot of this source records (backup cleans it the same way).
fn snapshot_path(source: &Source) -> String {
    match source {
        Source::Command { name, .. } => format!("/{name}"),
        Source::Path(p) => {
            let abs = std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.clone());
            let mut clean = PathBuf::from("/");
            for c in abs.components() {
                match c {
                    Component::ParentDir => {
                        clean.pop();
                    }
                    Component::Normal(n) => clean.push(n),
                    _ => {}
                }
            }
            clean.display().to_string()
        }
    }
}

pub fn drill(config: &Config, name: &str, opts: &DrillOptions) -> Result<DrillReport, JobError> {
    let (_, job) = super::select(config, &[name.to_string()])?[0];
    let started = Instant::now();
    let base = opts.target.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = base.join(format!("snapfs-drill-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(|e| JobError::io(format!("create {}", base.display()), e))?;
    std::fs::create_dir(&scratch).map_err(|e| JobError::io(format!("create {}", scratch.display()), e))?;
    let result = run(config, name, job, &scratch, opts);
    let removed =
        std::fs::remove_dir_all(&scratch).map_err(|e| JobError::io(format!("remove {}", scratch.display()), e));
    let sources = result?;
    removed?;
    let ok = sources.iter().all(|s| s.problems.is_empty() && s.differences.is_empty());
    let report = DrillReport { job: name.into(), scratch, sources, duration_s: started.elapsed().as_secs_f64(), ok };
    let detail = if ok {
        format!("{} sources restored and verified", report.sources.len())
    } else {
        let bad: Vec<&str> = report
            .sources
            .iter()
            .filter(|s| !s.problems.is_empty() || !s.differences.is_empty())
            .map(|s| s.source.as_str())
            .collect();
        format!("failed for {}", bad.join(", "))
    };
    let outcome = Outcome { time: Timestamp::now(), duration_s: report.duration_s, ok, detail };
    Store::new(&status::dir(config)).update(|s| s.jobs.entry(name.into()).or_default().last_drill = Some(outcome))?;
    Ok(report)
}

fn run(
    config: &Config,
    name: &str,
    job: &JobConfig,
    scratch: &Path,
    opts: &DrillOptions,
) -> Result<Vec<DrillSource>, JobError> {
    let repo = Target::of(config, job).open_ready(LockMode::Reader, &format!("job {name} drill"), false)?;
    let (snaps, _) = repo.snapshots()?;
    let tag = JobConfig::job_tag(name);
    let mut out = Vec::new();
    for (i, source) in job.sources()?.iter().enumerate() {
        let t = Instant::now();
        let path = snapshot_path(source);
        let mut d = DrillSource { source: source.label(), ..DrillSource::default() };
        let latest = snaps.iter().rev().find(|(_, s)| s.tags.contains(&tag) && s.paths == [path.clone()]);
        let Some((id, snap)) = latest else {
            d.problems.push("no snapshot of this source".into());
            out.push(d);
            continue;
        };
        d.snapshot = Some(id.hex());
        let target = scratch.join(i.to_string());
        let ro = RestoreOptions { subpath: Some(PathBuf::from(&path)), verify: true, ..RestoreOptions::new(target) };
        match restore(&repo, snap.tree, &ro) {
            Ok(r) => {
                d.files = r.counts.restored.files;
                d.bytes = r.bytes;
                d.verified = r.verified;
                d.problems.extend(r.errors);
                d.problems.extend(r.mismatches);
                if r.verified < r.counts.restored.files {
                    d.problems.push(format!("only {} of {} files verified", r.verified, r.counts.restored.files));
                }
            }
            Err(e) => d.problems.push(e.to_string()),
        }
        if opts.compare_source
            && let Source::Path(p) = source
        {
            let left = Side::Snapshot { root: snap.tree, path: PathBuf::from(&path) };
            let mut diffs = Vec::new();
            let r = diff(&repo, &left, &Side::Live(p.clone()), DiffOptions::default(), |c, p, _| {
                diffs.push(format!("{} {}", c.code(), p.display()))
            });
            match r {
                Ok(_) => d.differences = diffs,
                Err(e) => d.differences.push(format!("compare with {}: {e}", p.display())),
            }
        }
        d.duration_s = t.elapsed().as_secs_f64();
        out.push(d);
    }
    Ok(out)
}
