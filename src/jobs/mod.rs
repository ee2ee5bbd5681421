//! Backup jobs: named sets of sources, each backed up as its own snapshot, with hooks, a
//! retention policy applied after each run, a schedule systemd timers carry out, a local
//! status, metrics for a monitoring system and timed restore drills.
//!
//! Each part is one module: `config` (the TOML file and its validation), `schedule` (the
//! `OnCalendar=` subset and next-run times), `status` (the state file), `run` (running jobs
//! through the library's backup, forget, prune and check), `systemd` (units), `metrics` (the
//! Prometheus textfile) and `drill` (restore drills). None of them prints: the CLI does.

pub mod config;
pub mod drill;
pub mod metrics;
pub mod repo;
pub mod run;
pub mod schedule;
mod source;
pub mod status;
pub mod systemd;

use std::path::PathBuf;

pub use config::{Config, JobConfig, Source};
pub use run::{JobReport, Observer, RunOptions, RunResult, Stage, cancel, run_jobs};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Something in the config file, with where it is.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Config { file: PathBuf, line: usize, key: String, message: String },
    #[error("no config file found (tried {0}); give --config FILE or set SNAPFS_CONFIG")]
    NoConfig(String),
    #[error("no job named {name:?} in {} (jobs: {known})", file.display())]
    UnknownJob { name: String, file: PathBuf, known: String },
    #[error("job {0} is not running")]
    NotRunning(String),
    #[error("job {job} is already running (pid {pid})")]
    AlreadyRunning { job: String, pid: u32 },
    #[error("status file {}: {detail}", path.display())]
    State { path: PathBuf, detail: String },
    #[error("{context}: {cause}")]
    Io { context: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Repo(#[from] crate::Error),
}

impl JobError {
    pub fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        JobError::Io { context: context.into(), cause }
    }
}

/// Loads the config from where [`config::locate`] finds it.
pub fn load(given: Option<&std::path::Path>) -> Result<Config, JobError> {
    config::load(&config::locate(given)?)
}

/// The named jobs, highest priority first (the order given among equals); every name must exist.
pub fn select<'a>(config: &'a Config, names: &[String]) -> Result<Vec<(&'a str, &'a JobConfig)>, JobError> {
    let mut out = Vec::new();
    for n in names {
        let (name, job) = config.jobs.get_key_value(n).ok_or_else(|| JobError::UnknownJob {
            name: n.clone(),
            file: config.path.clone(),
            known: config.jobs.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        if !out.iter().any(|(o, _)| *o == name.as_str()) {
            out.push((name.as_str(), job));
        }
    }
    out.sort_by_key(|(_, j)| std::cmp::Reverse(j.priority));
    Ok(out)
}

/// The next time any of the job's schedules fires.
pub fn next_run(job: &JobConfig, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tz = jiff::tz::TimeZone::system();
    job.calendars().iter().filter_map(|c| c.next_after(after, &tz)).min()
}
