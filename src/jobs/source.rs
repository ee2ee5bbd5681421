//! One source of a job as one snapshot: the job's shared backup options, then `backup` for a
//! path or `backup_stream` for a command (run with `sh -c`), with a pre-scan for the progress
//! display's totals when the observer wants them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use jiff::Timestamp;

use super::JobError;
use super::config::{JobConfig, Source};
use super::run::{RunOptions, SourceReport, Stage};
use super::status::SourceState;
use crate::archiver::progress::Progress;
use crate::archiver::select::{CACHEDIR_TAG, Selection};
use crate::archiver::{BackupOptions, Stream, backup, backup_stream};
use crate::patterns::Patterns;

/// What every source of a job shares; [`Shared::options`] makes one source's options from it.
pub struct Shared {
    tags: Vec<String>,
    host: Option<String>,
    description: String,
    excludes: Patterns,
    select: Selection,
    one_file_system: bool,
}

impl Shared {
    pub fn of(name: &str, job: &JobConfig) -> Result<Shared, JobError> {
        let mut excludes = job.exclude.clone();
        if let Some(f) = &job.exclude_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| JobError::io(format!("read exclude-file {}", f.display()), e))?;
            excludes
                .extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        }
        let mut select = Selection::default();
        if job.exclude_caches {
            select.if_present.push((CACHEDIR_TAG.0.into(), Some(CACHEDIR_TAG.1.to_vec())));
        }
        let mut tags = job.tags.clone();
        tags.push(JobConfig::job_tag(name));
        Ok(Shared {
            tags,
            host: job.host.clone(),
            description: format!("snapfs job {name}"),
            excludes: Patterns::new(&excludes, &job.iexclude)?,
            select,
            one_file_system: job.one_file_system,
        })
    }

    fn options(
        &self,
        paths: Vec<std::path::PathBuf>,
        progress: Arc<Progress>,
        interrupt: Arc<AtomicBool>,
    ) -> BackupOptions {
        BackupOptions {
            paths,
            tags: self.tags.clone(),
            host: self.host.clone(),
            description: self.description.clone(),
            excludes: self.excludes.clone(),
            select: self.select.clone(),
            one_file_system: self.one_file_system,
            progress,
            interrupt,
            ..Default::default()
        }
    }
}

pub fn back_up_one(
    repo: &crate::repo::Repository,
    base: &Shared,
    source: &Source,
    index: usize,
    opts: &RunOptions,
) -> SourceReport {
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let paths = match source {
        Source::Path(p) => vec![p.clone()],
        Source::Command { .. } => Vec::new(),
    };
    let o = base.options(paths, progress.clone(), opts.interrupt.clone());
    opts.observer.stage(index, Stage::BackingUp, Some(progress.clone()));
    let out = std::thread::scope(|s| {
        if let (true, Source::Path(p)) = (opts.observer.wants_totals(), source) {
            let (o, progress) = (&o, &progress);
            s.spawn(move || {
                crate::archiver::progress::prescan(std::slice::from_ref(p), &o.excludes, &o.select, progress)
            });
        }
        let out = match source {
            Source::Path(_) => backup(repo, &o),
            Source::Command { name, command } => {
                backup_stream(repo, &o, name, Stream::Command(vec!["sh".into(), "-c".into(), command.into()]))
            }
        };
        progress.stop.store(true, Relaxed);
        out
    });
    let mut r = SourceReport {
        source: source.label(),
        state: SourceState::Updated,
        snapshot: None,
        error: None,
        duration_s: started.elapsed().as_secs_f64(),
        finished: Timestamp::now(),
        bytes_added: 0,
        files: 0,
        warnings: Vec::new(),
    };
    match out {
        Ok(out) => {
            r.snapshot = out.snapshot.map(|id| id.hex());
            r.bytes_added = out.summary.bytes_added;
            r.files = out.summary.total_files;
            r.warnings = out.warnings.iter().map(|w| w.to_string()).collect();
            opts.observer.stage(index, Stage::Done, None);
        }
        Err(crate::Error::Interrupted) => {
            r.state = SourceState::Error;
            r.error = Some("cancelled".into());
            opts.observer.stage(index, Stage::Cancelled, None);
        }
        Err(e) => {
            r.state = SourceState::Error;
            r.error = Some(e.to_string());
            opts.observer.stage(index, Stage::Failed, None);
        }
    }
    r
}
