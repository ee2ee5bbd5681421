//! The Prometheus textfile-collector file: per job and source the last success, the last run's
//! duration, bytes added, files, errors and state; per repository its size, snapshot count and
//! verification coverage. Rebuilt from the status file after every run and replaced atomically,
//! so node_exporter never reads half a file.

use std::fmt::Write;
use std::path::Path;

use super::JobError;
use super::config::Config;
use super::status::{self, RepoStats, SourceState, State};
use crate::repo::Repository;

/// A repository's figures from its index, read while a run has it open.
pub fn repo_stats(repo: &Repository, snapshots: u64) -> Result<RepoStats, JobError> {
    let packs = repo.index().packs()?;
    let month_ago = jiff::Timestamp::now().as_nanosecond() as i64 - 30 * 86_400 * 1_000_000_000;
    let verified = packs.iter().filter(|(_, p)| p.last_verified > month_ago).count();
    Ok(RepoStats {
        size_bytes: packs.iter().map(|(_, p)| p.size).sum(),
        packs: packs.len() as u64,
        snapshots,
        coverage: verified as f64 / packs.len().max(1) as f64,
    })
}

/// Writes the metrics of every configured job to `path`.
pub fn write(config: &Config, state: &State, path: &Path) -> Result<(), JobError> {
    status::write_atomic(path, render(config, state).as_bytes())
}

fn label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// One metric family: its help, type and samples.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

pub fn render(config: &Config, state: &State) -> String {
    let fam = |name, help| Family { name, help, samples: Vec::new() };
    let mut job_f = [
        fam("snapfs_job_last_run_timestamp_seconds", "When the job's last run ended."),
        fam("snapfs_job_last_run_duration_seconds", "How long the job's last run took."),
        fam("snapfs_job_success", "1 when the job's last run backed up every source."),
        fam("snapfs_job_last_drill_timestamp_seconds", "When the job's last restore drill ended."),
        fam("snapfs_job_last_drill_duration_seconds", "How long the last restore drill took (the recovery time)."),
        fam("snapfs_job_last_drill_success", "1 when the last restore drill verified everything."),
    ];
    let mut src_f = [
        fam("snapfs_source_last_success_timestamp_seconds", "When the source was last backed up."),
        fam("snapfs_source_last_run_duration_seconds", "How long the source's last backup took."),
        fam("snapfs_source_bytes_added", "Bytes the source's last successful backup added to the repository."),
        fam("snapfs_source_files", "Files in the source's last snapshot."),
        fam("snapfs_source_errors", "1 when the source's last backup failed."),
        fam("snapfs_source_state", "The source's state: 1 for the current one."),
    ];
    let mut repo_f = [
        fam("snapfs_repository_size_bytes", "Bytes of packs in the repository."),
        fam("snapfs_repository_snapshots", "Snapshots in the repository."),
        fam("snapfs_repository_verified_ratio", "Fraction of packs fully verified in the last 30 days."),
    ];
    let secs = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
    let now = jiff::Timestamp::now();
    for (name, job) in &config.jobs {
        let j = state.jobs.get(name);
        let l = format!("job=\"{}\"", label(name));
        if let Some(j) = j {
            if let Some(t) = j.last_run {
                job_f[0].samples.push((l.clone(), secs(t)));
            }
            if let Some(d) = j.duration_s {
                job_f[1].samples.push((l.clone(), d));
            }
            if let Some(r) = &j.result {
                job_f[2].samples.push((l.clone(), f64::from(u8::from(r == "ok"))));
            }
            if let Some(d) = &j.last_drill {
                job_f[3].samples.push((l.clone(), secs(d.time)));
                job_f[4].samples.push((l.clone(), d.duration_s));
                job_f[5].samples.push((l.clone(), f64::from(u8::from(d.ok))));
            }
        }
        for v in status::view(job, j, now).unwrap_or_default() {
            let sl = format!("{l},source=\"{}\"", label(&v.source));
            if let Some(t) = v.status.last_success {
                src_f[0].samples.push((sl.clone(), secs(t)));
            }
            if let Some(d) = v.status.duration_s {
                src_f[1].samples.push((sl.clone(), d));
            }
            src_f[2].samples.push((sl.clone(), v.status.bytes_added as f64));
            src_f[3].samples.push((sl.clone(), v.status.files as f64));
            src_f[4].samples.push((sl.clone(), f64::from(u8::from(v.state == SourceState::Error))));
            for s in [SourceState::Outdated, SourceState::Ongoing, SourceState::Updated, SourceState::Error] {
                let value = f64::from(u8::from(v.state == s));
                src_f[5].samples.push((format!("{sl},state=\"{}\"", s.as_str()), value));
            }
        }
    }
    for (name, r) in &state.repositories {
        let l = format!("repository=\"{}\"", label(name));
        repo_f[0].samples.push((l.clone(), r.size_bytes as f64));
        repo_f[1].samples.push((l.clone(), r.snapshots as f64));
        repo_f[2].samples.push((l, r.coverage));
    }
    let mut out = String::new();
    for f in job_f.iter().chain(&src_f).chain(&repo_f) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", f.name, f.help, f.name);
        for (labels, v) in &f.samples {
            let _ = writeln!(out, "{}{{{labels}}} {v}", f.name);
        }
    }
    out
}
