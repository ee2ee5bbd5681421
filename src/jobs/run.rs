//! Running jobs: the before hook, each source as its own snapshot (in order, or several at
//! once for a parallel job), forget with the job's policy, prune when due, check, the after and
//! on-failure hooks, and the status recorded after every step, so a run killed anywhere leaves
//! an honest status. Backup, forget, prune and check are the library's; only hooks and command
//! sources are spawned.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::config::{Config, JobConfig, Source};
use super::repo::Target;
use super::source::{Shared, back_up_one};
use super::status::{self, JobState, Outcome, SourceState, SourceStatus, Store};
use super::{JobError, metrics};
use crate::archiver::progress::Progress;
use crate::forget::{ForgetOptions, forget};
use crate::policy::GroupBy;
use crate::repo::LockMode;
use crate::select::Filter;

/// What a source is doing, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Waiting,
    Hook,
    BackingUp,
    Forgetting,
    Pruning,
    Checking,
    Done,
    Failed,
    Cancelled,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Hook => "hook",
            Stage::BackingUp => "backing up",
            Stage::Forgetting => "forgetting",
            Stage::Pruning => "pruning",
            Stage::Checking => "checking",
            Stage::Done => "done",
            Stage::Failed => "failed",
            Stage::Cancelled => "cancelled",
        }
    }
}

/// Told what each source of a run is doing; the CLI draws it. Every method has a silent default.
pub trait Observer: Sync {
    /// A job starts with these sources (labels, in order).
    fn job(&self, _job: &str, _sources: &[String]) {}
    /// Source `index` of the current job enters `stage`; while backing up, its counters.
    fn stage(&self, _index: usize, _stage: Stage, _progress: Option<Arc<Progress>>) {}
    /// A warning or a note about the run.
    fn note(&self, _line: &str) {}
    /// Whether a quick pre-scan should count each path source's files and bytes first (for
    /// an ETA); it costs a stat of every entry.
    fn wants_totals(&self) -> bool {
        false
    }
}

/// The observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

pub struct RunOptions<'a> {
    /// Set from another thread (a signal, `job cancel`): the run stops at the next step, and the
    /// snapshot of a source being backed up is not written.
    pub interrupt: Arc<AtomicBool>,
    /// Overrides `metrics-file` of the config.
    pub metrics_file: Option<PathBuf>,
    /// Only the sources in the error set (`job retry`).
    pub only_errors: bool,
    pub observer: &'a dyn Observer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// Every source was backed up.
    Ok,
    /// Some sources (or the check) failed; the others' snapshots are saved.
    SomeFailed,
    /// The job could not run (its repository, its before hook).
    Failed,
    Cancelled,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::SomeFailed => "error",
            RunResult::Failed => "failed",
            RunResult::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SourceReport {
    pub source: String,
    pub state: SourceState,
    pub snapshot: Option<String>,
    pub error: Option<String>,
    pub duration_s: f64,
    /// When its backup ended (or the job gave up on it).
    pub finished: Timestamp,
    pub bytes_added: u64,
    pub files: u64,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct JobReport {
    pub job: String,
    pub result: RunResult,
    pub error: Option<String>,
    pub sources: Vec<SourceReport>,
    pub duration_s: f64,
    pub forgotten: usize,
    pub pruned: bool,
    pub check: Option<Outcome>,
}

/// Runs the named jobs now, highest priority first, one after the other.
pub fn run_jobs(config: &Config, names: &[String], opts: &RunOptions) -> Result<Vec<JobReport>, JobError> {
    let jobs = super::select(config, names)?;
    let store = Store::new(&status::dir(config));
    let mut reports = Vec::new();
    for (name, job) in jobs {
        if opts.interrupt.load(Relaxed) {
            break;
        }
        reports.push(run_one(config, &store, name, job, opts)?);
    }
    if let Some(path) = opts.metrics_file.as_ref().or(config.metrics_file.as_ref()) {
        metrics::write(config, &store.load()?, path)?;
    }
    Ok(reports)
}

fn run_one(
    config: &Config,
    store: &Store,
    name: &str,
    job: &JobConfig,
    opts: &RunOptions,
) -> Result<JobReport, JobError> {
    let started = Instant::now();
    let mut sources = job.sources()?;
    if opts.only_errors {
        let st = store.load()?;
        let errors = |s: &Source| {
            st.jobs.get(name).and_then(|j| j.sources.get(&s.label())).is_some_and(|s| s.state == SourceState::Error)
        };
        sources.retain(errors);
    }
    let labels: Vec<String> = sources.iter().map(Source::label).collect();
    // Claim the job in the status, unless another live process runs it.
    let claimed = store.update(|s| {
        let j = s.jobs.entry(name.to_string()).or_default();
        if let Some(r) = j.run.as_ref().filter(|r| r.alive()) {
            return Err(JobError::AlreadyRunning { job: name.to_string(), pid: r.pid });
        }
        j.run = Some(status::this_run());
        for l in &labels {
            j.sources.entry(l.clone()).or_default().state = SourceState::Ongoing;
        }
        Ok(())
    })?;
    claimed?;
    opts.observer.job(name, &labels);
    let mut report = JobReport {
        job: name.to_string(),
        result: RunResult::Ok,
        error: None,
        sources: Vec::new(),
        duration_s: 0.0,
        forgotten: 0,
        pruned: false,
        check: None,
    };
    let env = vec![("SNAPFS_JOB".to_string(), name.to_string())];
    let outcome = run_body(config, store, name, job, &sources, &env, opts, &mut report);
    if let Err(e) = outcome {
        report.result = if matches!(e, JobError::Repo(crate::Error::Interrupted)) || opts.interrupt.load(Relaxed) {
            RunResult::Cancelled
        } else {
            RunResult::Failed
        };
        report.error = Some(e.to_string());
    }
    // Sources not reached (a failed before hook, a cancel) are in error with the reason.
    let why = match report.result {
        RunResult::Cancelled => "cancelled".to_string(),
        _ => report.error.clone().unwrap_or_else(|| "not run".into()),
    };
    for l in &labels {
        if !report.sources.iter().any(|s| &s.source == l) {
            report.sources.push(SourceReport {
                source: l.clone(),
                state: SourceState::Error,
                snapshot: None,
                error: Some(why.clone()),
                duration_s: 0.0,
                finished: Timestamp::now(),
                bytes_added: 0,
                files: 0,
                warnings: Vec::new(),
            });
        }
    }
    let in_error = report.sources.iter().filter(|s| s.state == SourceState::Error).count();
    let check_failed = report.check.as_ref().is_some_and(|c| !c.ok);
    if report.result == RunResult::Ok && (in_error > 0 || check_failed) {
        report.result = RunResult::SomeFailed;
        report.error = Some(match (in_error, check_failed) {
            (0, _) => "the check found problems".to_string(),
            (n, _) => format!("{n} of {} sources in error", report.sources.len()),
        });
    }
    report.duration_s = started.elapsed().as_secs_f64();
    if report.result != RunResult::Ok
        && report.result != RunResult::Cancelled
        && let Some(hook) = &job.on_failure
    {
        let failed: Vec<&SourceReport> = report.sources.iter().filter(|s| s.state == SourceState::Error).collect();
        let mut env = env.clone();
        env.push(("SNAPFS_RESULT".into(), report.result.as_str().into()));
        env.push(("SNAPFS_SOURCE".into(), failed.first().map(|s| s.source.clone()).unwrap_or_default()));
        env.push(("SNAPFS_SOURCES".into(), failed.iter().map(|s| s.source.as_str()).collect::<Vec<_>>().join("\n")));
        let first_error = failed.first().and_then(|s| s.error.clone());
        env.push(("SNAPFS_ERROR".into(), first_error.or(report.error.clone()).unwrap_or_default()));
        env.push(("SNAPFS_DURATION".into(), format!("{:.3}", report.duration_s)));
        if let Err(e) = hook_run(hook, &env, &AtomicBool::new(false)) {
            opts.observer.note(&format!("job {name}: on-failure hook: {e}"));
        }
    }
    store.update(|s| finish(s.jobs.entry(name.to_string()).or_default(), &report))?;
    Ok(report)
}

fn finish(j: &mut JobState, r: &JobReport) {
    j.run = None;
    let now = Timestamp::now();
    j.last_run = Some(now);
    j.duration_s = Some(r.duration_s);
    j.result = Some(r.result.as_str().into());
    j.error = r.error.clone();
    if r.pruned {
        j.last_prune = Some(now);
    }
    if let Some(c) = &r.check {
        j.last_check = Some(c.clone());
    }
    for s in &r.sources {
        record(j.sources.entry(s.source.clone()).or_default(), s);
    }
}

fn record(st: &mut SourceStatus, s: &SourceReport) {
    st.state = s.state;
    st.last_run = Some(s.finished);
    st.duration_s = Some(s.duration_s);
    st.error = s.error.clone();
    if s.state == SourceState::Updated {
        st.snapshot = s.snapshot.clone();
        st.last_success = st.last_run;
        st.bytes_added = s.bytes_added;
        st.files = s.files;
    }
}

#[allow(clippy::too_many_arguments)]
fn run_body(
    config: &Config,
    store: &Store,
    name: &str,
    job: &JobConfig,
    sources: &[Source],
    env: &[(String, String)],
    opts: &RunOptions,
    report: &mut JobReport,
) -> Result<(), JobError> {
    let target = Target::of(config, job);
    let stage_all = |stage| (0..sources.len()).for_each(|i| opts.observer.stage(i, stage, None));
    if let Some(before) = &job.before {
        stage_all(Stage::Hook);
        hook_run(before, env, &opts.interrupt).map_err(|e| JobError::Invalid(format!("before hook: {e}")))?;
    }
    let body = (|| {
        let repo = target.open_ready(LockMode::Shared, &format!("job {name}"), false)?;
        let base = Shared::of(name, job)?;
        let workers = match job.execution {
            super::config::Execution::Parallel => config.max_parallel.unwrap_or(2).min(sources.len()).max(1),
            super::config::Execution::Sequential => 1,
        };
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<(usize, SourceReport)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Relaxed);
                        if i >= sources.len() || opts.interrupt.load(Relaxed) {
                            break;
                        }
                        let r = back_up_one(&repo, &base, &sources[i], i, opts);
                        let _ = store.update(|st| {
                            record(
                                st.jobs.entry(name.into()).or_default().sources.entry(r.source.clone()).or_default(),
                                &r,
                            )
                        });
                        done.lock().expect("poisoned").push((i, r));
                    }
                });
            }
        });
        let mut done = done.into_inner().expect("poisoned");
        done.sort_by_key(|(i, _)| *i);
        report.sources = done.into_iter().map(|(_, r)| r).collect();
        let snapshots = repo.snapshots()?.0.len() as u64;
        let stats = metrics::repo_stats(&repo, snapshots)?;
        store.update(|s| s.repositories.insert(target.name.to_string(), stats))?;
        drop(repo);
        if opts.interrupt.load(Relaxed) {
            return Err(JobError::Repo(crate::Error::Interrupted));
        }
        let any_saved = report.sources.iter().any(|s| s.state == SourceState::Updated);
        if let Some(keep) = &job.keep
            && any_saved
        {
            stage_all(Stage::Forgetting);
            let repo = target.open(LockMode::Prune, &format!("job {name} forget"))?;
            let fo = ForgetOptions {
                policy: keep.policy().map_err(JobError::Invalid)?,
                group_by: GroupBy::parse("host,paths")?,
                filter: Filter { tags: vec![JobConfig::job_tag(name)], ..Filter::default() },
                ids: Vec::new(),
                dry_run: false,
                allow_remove_all: false,
            };
            report.forgotten = forget(&repo, &fo)?.removed.len();
            store.update(|s| {
                if let Some(r) = s.repositories.get_mut(target.name) {
                    r.snapshots = r.snapshots.saturating_sub(report.forgotten as u64);
                }
            })?;
        }
        if prune_due(job, store.load()?.jobs.get(name)) && any_saved {
            stage_all(Stage::Pruning);
            let repo = target.open_ready(LockMode::Prune, &format!("job {name} prune"), false)?;
            crate::prune::prune(&repo, &crate::prune::PruneOptions::default())?;
            report.pruned = true;
        }
        if let Some(subset) = job.check.as_deref().and_then(crate::check::parse_subset) {
            stage_all(Stage::Checking);
            let t = Instant::now();
            let repo = target.open_ready(LockMode::Reader, &format!("job {name} check"), true)?;
            let opts = crate::check::CheckOptions {
                read_data: Some(subset),
                max_duration: None,
                snapshot: None,
                progress: Default::default(),
            };
            let r = crate::check::check(&repo, &opts)?;
            let detail = match r.problems.first() {
                None if r.is_clean() => format!("{} packs, {} snapshots: no problems", r.packs, r.snapshots),
                None => "the index needs a repair".to_string(),
                Some(p) => format!("{} problems, the first: {}", r.problems.len(), p.detail),
            };
            report.check = Some(Outcome {
                time: Timestamp::now(),
                duration_s: t.elapsed().as_secs_f64(),
                ok: r.is_clean(),
                detail,
            });
            store.update(|s| {
                if let Some(st) = s.repositories.get_mut(target.name) {
                    st.coverage = r.coverage.verified_recently as f64 / r.coverage.packs.max(1) as f64;
                }
            })?;
        }
        Ok(())
    })();
    if let Some(after) = &job.after {
        let mut env = env.to_vec();
        let result = match &body {
            Ok(()) if report.sources.iter().all(|s| s.state == SourceState::Updated) => "ok",
            Ok(()) => "error",
            Err(_) if opts.interrupt.load(Relaxed) => "cancelled",
            Err(_) => "failed",
        };
        env.push(("SNAPFS_RESULT".into(), result.into()));
        if let Err(e) = hook_run(after, &env, &AtomicBool::new(false)) {
            opts.observer.note(&format!("job {name}: after hook: {e}"));
            if body.is_ok() {
                report.error = Some(format!("after hook: {e}"));
                report.result = RunResult::SomeFailed;
            }
        }
    }
    let stage = if opts.interrupt.load(Relaxed) { Stage::Cancelled } else { Stage::Done };
    for (i, s) in report.sources.iter().enumerate() {
        opts.observer.stage(i, if s.state == SourceState::Error { Stage::Failed } else { stage }, None);
    }
    body
}

/// Prune runs when the job says `always`, or when its calendar expression has fired since the
/// last prune (a job never pruned prunes on its first run).
fn prune_due(job: &JobConfig, state: Option<&JobState>) -> bool {
    match job.prune.as_deref() {
        None | Some("never") => false,
        Some("always") => true,
        Some(expr) => {
            let Ok(cal) = super::schedule::Calendar::parse(expr) else { return false };
            match state.and_then(|s| s.last_prune) {
                None => true,
                Some(last) => {
                    cal.next_after(last, &jiff::tz::TimeZone::system()).is_some_and(|n| n <= Timestamp::now())
                }
            }
        }
    }
}

/// Runs a hook with `sh -c`, its output going where ours goes; stops it when `stop` is set.
fn hook_run(cmd: &str, env: &[(String, String)], stop: &AtomicBool) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .envs(env.iter().map(|(k, v)| (k, v)))
        // A hook (an alert to a chat, a dump) has no business with the repository's password.
        .env_remove("SNAPFS_PASSWORD")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("run {cmd:?}: {e}"))?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait for {cmd:?}: {e}"))? {
            return if status.success() { Ok(()) } else { Err(format!("{cmd:?} exited with {status}")) };
        }
        if stop.load(Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} was stopped: the job was cancelled"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks the process running `job` to stop (SIGTERM); returns its pid.
pub fn cancel(config: &Config, job: &str) -> Result<u32, JobError> {
    super::select(config, &[job.to_string()])?;
    let store = Store::new(&status::dir(config));
    let state = store.load()?;
    let run = state.jobs.get(job).and_then(|j| j.run.clone()).ok_or_else(|| JobError::NotRunning(job.into()))?;
    let pid = nix::unistd::Pid::from_raw(run.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| JobError::io(format!("signal pid {}", run.pid), e.into()))?;
    Ok(run.pid)
}
