//! `snapfs job`: backup jobs from the config file (the engine is `snapfs::jobs`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::interrupt::Interrupt;
use super::{Global, exit, human};
use snapfs::archiver::progress::Progress;
use snapfs::jobs::status::{self, JobState, SourceState, SourceView, Store};
use snapfs::jobs::{self, Config, JobConfig, JobReport, Observer, RunOptions, RunResult, Stage};

#[derive(clap::Args)]
pub struct Args {
    /// The config file [default: $SNAPFS_CONFIG, then $XDG_CONFIG_HOME/snapfs/snapfs.toml, then
    /// /etc/snapfs/snapfs.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(clap::Subcommand)]
enum JobCommand {
    /// List the jobs: priority, last run, next run, sources
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a job as resolved from the config, its status and its next run
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run jobs now, highest priority first (exit 3 when some sources failed)
    Run {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Write a Prometheus textfile here after the run (overrides metrics-file)
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
    },
    /// The sources of each job (or one) by state: outdated, ongoing, updated, error
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Back up again only the sources of a job that are in error
    Retry {
        name: String,
        /// Write a Prometheus textfile here after the run (overrides metrics-file)
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
    },
    /// Stop a running job cleanly: the snapshot in progress is not written
    Cancel { name: String },
    /// Install (or remove) a systemd .service and .timer per scheduled job
    Schedule {
        #[arg(long, required_unless_present = "uninstall", conflicts_with = "uninstall")]
        install: bool,
        #[arg(long)]
        uninstall: bool,
        /// User units (systemctl --user) instead of system units
        #[arg(long)]
        user: bool,
        /// Write the units into this directory and leave systemctl alone
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
    },
    /// Restore the latest snapshot of every source to a scratch directory, verify it, time it
    Drill {
        name: String,
        /// Make the scratch directory inside this one [default: the temporary directory]
        #[arg(long, value_name = "DIR")]
        target: Option<PathBuf>,
        /// Also compare the restored files with the live source
        #[arg(long)]
        compare_source: bool,
        #[arg(long)]
        json: bool,
    },
}

fn time(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| snapfs::timespec::local(t.as_nanosecond() as i64)).unwrap_or_else(|| "-".into())
}

fn ts(t: Option<jiff::Timestamp>) -> Value {
    json!(t.map(|t| t.to_string()))
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let config = jobs::load(a.config.as_deref())?;
    match a.command {
        JobCommand::List { json } => list(&config, json),
        JobCommand::Show { name, json } => show(&config, &name, json),
        JobCommand::Status { name, json } => status_cmd(&config, name.as_deref(), json),
        JobCommand::Run { names, metrics_file } => run_cmd(g, &config, &names, metrics_file, false),
        JobCommand::Retry { name, metrics_file } => run_cmd(g, &config, &[name], metrics_file, true),
        JobCommand::Cancel { name } => {
            let pid = jobs::cancel(&config, &name)?;
            if !g.quiet {
                outln!("asked job {name} (pid {pid}) to stop");
            }
            Ok(0)
        }
        JobCommand::Schedule { install, user, unit_dir, .. } => {
            let exe = std::env::current_exe().context("find the snapfs binary")?;
            let opts = jobs::systemd::Install { user, unit_dir, exe };
            let out = if install { jobs::systemd::install(&config, &opts)? } else { jobs::systemd::uninstall(&opts)? };
            if !g.quiet {
                for p in &out.written {
                    outln!("wrote {}", p.display());
                }
                for p in &out.removed {
                    outln!("removed {}", p.display());
                }
                for j in &out.unscheduled {
                    outln!("job {j} has no schedule: no timer");
                }
                for c in &out.systemctl {
                    outln!("ran {c}");
                }
            }
            Ok(0)
        }
        JobCommand::Drill { name, target, compare_source, json } => {
            let r = jobs::drill::drill(&config, &name, &jobs::drill::DrillOptions { target, compare_source })?;
            print_drill(&r, json, g.quiet);
            Ok(if r.ok { 0 } else { exit::ERROR })
        }
    }
}

fn list(config: &Config, json: bool) -> Result<u8> {
    let state = Store::new(&status::dir(config)).load()?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for (name, job) in &config.jobs {
        let j = state.jobs.get(name);
        let sources: Vec<String> = job.sources()?.iter().map(|s| s.label()).collect();
        rows.push((name, job.priority, j.and_then(|j| j.last_run), jobs::next_run(job, now), sources));
    }
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(n, p, last, next, s)| json!({"name": n, "priority": p, "last_run": ts(*last), "next_run": ts(*next), "sources": s}))
            .collect();
        outln!("{}", Value::Array(v));
        return Ok(0);
    }
    outln!("{:<16} {:>8}  {:<19}  {:<19}  SOURCES", "NAME", "PRIORITY", "LAST RUN", "NEXT RUN");
    for (n, p, last, next, s) in rows {
        outln!("{n:<16} {p:>8}  {:<19}  {:<19}  {}", time(last), time(next), s.join(", "));
    }
    Ok(0)
}

fn show(config: &Config, name: &str, json: bool) -> Result<u8> {
    let (_, job) = jobs::select(config, &[name.to_string()])?[0];
    let state = Store::new(&status::dir(config)).load()?;
    let j = state.jobs.get(name);
    let views = status::view(job, j, jiff::Timestamp::now())?;
    let schedules = job.schedule.as_ref().map(|s| s.list()).unwrap_or_default();
    let next = jobs::next_run(job, jiff::Timestamp::now());
    let location = config.repositories.get(&job.repository).map_or(job.repository.as_str(), |r| &r.repository);
    if json {
        let mut v = job_json(name, j, &views);
        let o = v.as_object_mut().expect("an object");
        o.insert("repository".into(), json!({"name": job.repository, "location": location}));
        o.insert("priority".into(), json!(job.priority));
        o.insert("execution".into(), json!(format!("{:?}", job.execution).to_lowercase()));
        o.insert("schedule".into(), json!(schedules));
        o.insert("next_run".into(), ts(next));
        o.insert("tags".into(), json!(job.tags));
        o.insert("exclude".into(), json!(job.exclude));
        o.insert("before".into(), json!(job.before));
        o.insert("after".into(), json!(job.after));
        o.insert("on_failure".into(), json!(job.on_failure));
        o.insert("check".into(), json!(job.check));
        o.insert("prune".into(), json!(job.prune));
        o.insert("keep".into(), json!(job.keep.as_ref().map(|k| format!("{k:?}"))));
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    outln!("job {name}");
    outln!("  repository: {} ({location})", job.repository);
    outln!("  priority:   {}, {:?}", job.priority, job.execution);
    outln!("  sources:    {}", views.iter().map(|v| v.source.as_str()).collect::<Vec<_>>().join(", "));
    let opt = |label: &str, v: &Option<String>| {
        if let Some(v) = v {
            outln!("  {label:<11} {v}");
        }
    };
    if !job.exclude.is_empty() {
        outln!("  exclude:    {}", job.exclude.join(", "));
    }
    opt("exclude-file:", &job.exclude_file.as_ref().map(|p| p.display().to_string()));
    outln!(
        "  tags:       {}",
        job.tags.iter().cloned().chain([JobConfig::job_tag(name)]).collect::<Vec<_>>().join(", ")
    );
    opt("keep:", &job.keep.as_ref().and_then(|k| k.policy().ok()).map(|p| keep_text(&p)));
    opt("prune:", &job.prune);
    opt("check:", &job.check);
    opt("before:", &job.before);
    opt("after:", &job.after);
    opt("on-failure:", &job.on_failure);
    if schedules.is_empty() {
        outln!("  schedule:   none (run by hand or from cron)");
    } else {
        outln!("  schedule:   {}; next run {}", schedules.join(" | "), time(next));
    }
    print_status(name, j, &views);
    Ok(0)
}

fn keep_text(p: &snapfs::policy::Policy) -> String {
    let counts = [
        ("last", p.last),
        ("hourly", p.hourly),
        ("daily", p.daily),
        ("weekly", p.weekly),
        ("monthly", p.monthly),
        ("yearly", p.yearly),
    ];
    counts.iter().filter(|(_, n)| *n != 0).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

fn job_json(name: &str, j: Option<&JobState>, views: &[SourceView]) -> Value {
    let outcome = |o: &Option<status::Outcome>| {
        o.as_ref()
            .map(|o| json!({"time": o.time.to_string(), "duration_s": o.duration_s, "ok": o.ok, "detail": o.detail}))
    };
    json!({
        "job": name,
        "running_pid": j.and_then(|j| j.run.as_ref()).map(|r| r.pid),
        "last_run": ts(j.and_then(|j| j.last_run)),
        "duration_s": j.and_then(|j| j.duration_s),
        "result": j.and_then(|j| j.result.clone()),
        "error": j.and_then(|j| j.error.clone()),
        "last_check": j.map(|j| outcome(&j.last_check)),
        "last_drill": j.map(|j| outcome(&j.last_drill)),
        "sources": views.iter().map(|v| json!({
            "source": v.source,
            "state": v.state.as_str(),
            "last_run": ts(v.status.last_run),
            "duration_s": v.status.duration_s,
            "snapshot": v.status.snapshot,
            "error": v.status.error,
        })).collect::<Vec<_>>(),
    })
}

fn print_status(name: &str, j: Option<&JobState>, views: &[SourceView]) {
    let last = match j.and_then(|j| j.last_run) {
        Some(t) => format!(
            "last run {} ({:.1} s, {})",
            time(Some(t)),
            j.and_then(|j| j.duration_s).unwrap_or(0.0),
            j.and_then(|j| j.result.as_deref()).unwrap_or("?")
        ),
        None => "never run".into(),
    };
    let running = j.and_then(|j| j.run.as_ref()).map(|r| format!("; running (pid {})", r.pid)).unwrap_or_default();
    outln!("job {name}: {last}{running}");
    for st in [SourceState::Outdated, SourceState::Ongoing, SourceState::Updated, SourceState::Error] {
        let set: Vec<&SourceView> = views.iter().filter(|v| v.state == st).collect();
        if set.is_empty() {
            continue;
        }
        outln!("  {}:", st.as_str());
        for v in set {
            let snap = v
                .status
                .snapshot
                .as_deref()
                .map(|s| format!("  snapshot {}", &s[..8.min(s.len())]))
                .unwrap_or_default();
            let err = v.status.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default();
            let when = v.status.last_run.map(|t| format!("  {}", time(Some(t)))).unwrap_or_default();
            let took = v.status.duration_s.map(|d| format!(" ({d:.1} s)")).unwrap_or_default();
            outln!("    {}{when}{took}{snap}{err}", v.source);
        }
    }
    if let Some(d) = j.and_then(|j| j.last_drill.as_ref()) {
        let verdict = if d.ok { "passed" } else { "FAILED" };
        outln!("  last drill: {} {verdict}, took {:.1} s: {}", time(Some(d.time)), d.duration_s, d.detail);
    }
    if let Some(c) = j.and_then(|j| j.last_check.as_ref()) {
        outln!("  last check: {} {}: {}", time(Some(c.time)), if c.ok { "clean" } else { "PROBLEMS" }, c.detail);
    }
}

fn status_cmd(config: &Config, name: Option<&str>, json: bool) -> Result<u8> {
    let names: Vec<String> = match name {
        Some(n) => vec![n.to_string()],
        None => config.jobs.keys().cloned().collect(),
    };
    let state = Store::new(&status::dir(config)).load()?;
    let now = jiff::Timestamp::now();
    let mut all = Vec::new();
    for n in &names {
        let (_, job) = jobs::select(config, std::slice::from_ref(n))?[0];
        let j = state.jobs.get(n);
        let views = status::view(job, j, now)?;
        if json {
            all.push(job_json(n, j, &views));
        } else {
            print_status(n, j, &views);
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&Value::Array(all))?);
    }
    Ok(0)
}

fn run_cmd(g: &Global, config: &Config, names: &[String], metrics: Option<PathBuf>, retry: bool) -> Result<u8> {
    jobs::select(config, names)?;
    let interrupt = Interrupt::catch()?;
    interrupt.arm();
    let lines = Lines::new(!g.quiet && std::io::stderr().is_terminal());
    let opts = RunOptions { interrupt: interrupt.flag(), metrics_file: metrics, only_errors: retry, observer: &lines };
    let reports = std::thread::scope(|s| {
        let drawing = s.spawn(|| lines.draw_until_done());
        let r = jobs::run_jobs(config, names, &opts);
        lines.done.store(true, Relaxed);
        let _ = drawing.join();
        r
    })?;
    let mut code = 0;
    for r in &reports {
        if !g.quiet {
            print_report(r);
        }
        for s in &r.sources {
            for w in &s.warnings {
                errln!("warning: {}: {w}", s.source);
            }
        }
        let c = match r.result {
            RunResult::Ok => 0,
            RunResult::SomeFailed => exit::INCOMPLETE,
            RunResult::Failed => exit::ERROR,
            RunResult::Cancelled => exit::INTERRUPTED,
        };
        if r.result != RunResult::Ok {
            errln!(
                "snapfs: job {}: {}{}",
                r.job,
                r.result.as_str(),
                r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        code = code.max(c);
    }
    if retry && reports.iter().all(|r| r.sources.is_empty()) && !g.quiet {
        outln!("no source is in error: nothing to retry");
    }
    Ok(code)
}

fn print_report(r: &JobReport) {
    outln!("job {}: {} in {:.2} s", r.job, r.result.as_str(), r.duration_s);
    for s in &r.sources {
        match (&s.snapshot, &s.error) {
            (Some(id), _) => outln!(
                "  {}: snapshot {} saved, {}, {} added",
                s.source,
                &id[..8.min(id.len())],
                super::count(s.files, "file", "files"),
                human(s.bytes_added)
            ),
            (None, Some(e)) => outln!("  {}: error: {e}", s.source),
            (None, None) => outln!("  {}: {}", s.source, s.state.as_str()),
        }
    }
    if r.forgotten > 0 {
        outln!("  forget: removed {}", super::count(r.forgotten as u64, "snapshot", "snapshots"));
    }
    if r.pruned {
        outln!("  prune: done");
    }
    if let Some(c) = &r.check {
        outln!("  check: {} ({})", if c.ok { "clean" } else { "PROBLEMS" }, c.detail);
    }
}

fn print_drill(r: &jobs::drill::DrillReport, json: bool, quiet: bool) {
    if json {
        let v = json!({
            "job": r.job,
            "ok": r.ok,
            "duration_s": r.duration_s,
            "sources": r.sources.iter().map(|s| json!({
                "source": s.source, "snapshot": s.snapshot, "files": s.files, "bytes": s.bytes,
                "verified": s.verified, "problems": s.problems, "differences": s.differences,
                "duration_s": s.duration_s,
            })).collect::<Vec<_>>(),
        });
        outln!("{v}");
        return;
    }
    for s in &r.sources {
        if !quiet {
            outln!(
                "{}: snapshot {}: {} ({}) restored, {} verified, {:.2} s",
                s.source,
                s.snapshot.as_deref().map(|x| &x[..8.min(x.len())]).unwrap_or("-"),
                super::count(s.files, "file", "files"),
                human(s.bytes),
                s.verified,
                s.duration_s
            );
        }
        for p in &s.problems {
            errln!("error: {}: {p}", s.source);
        }
        for d in &s.differences {
            errln!("differs from the live source: {}: {d}", s.source);
        }
    }
    if !quiet {
        let verdict = if r.ok { "passed" } else { "FAILED" };
        outln!("drill of job {} {verdict}: recovery time {:.2} s", r.job, r.duration_s);
    }
}

/// One progress line per source on a terminal, redrawn in place; nothing otherwise. Kept behind
/// [`Observer`] so a progress library can replace it without touching the engine.
struct Lines {
    on: bool,
    done: AtomicBool,
    rows: Mutex<Vec<Row>>,
}

struct Row {
    label: String,
    stage: Stage,
    progress: Option<Arc<Progress>>,
    since: Instant,
}

impl Lines {
    fn new(on: bool) -> Lines {
        Lines { on, done: AtomicBool::new(false), rows: Mutex::new(Vec::new()) }
    }

    fn draw_until_done(&self) {
        if !self.on {
            return;
        }
        let mut drawn = 0;
        while !self.done.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            drawn = self.draw(drawn);
        }
        self.draw(drawn);
    }

    /// Redraws the rows over the `above` lines drawn last time; returns how many it drew.
    fn draw(&self, above: usize) -> usize {
        let rows = self.rows.lock().expect("poisoned");
        let width = snapfs::sys::terminal_columns(&std::io::stderr()).unwrap_or(80);
        let mut err = std::io::stderr().lock();
        if above > 0 {
            let _ = write!(err, "\x1b[{above}A");
        }
        for r in rows.iter() {
            let mut line = format!("{}: {}", r.label, r.stage.as_str());
            if let (Stage::BackingUp, Some(p)) = (r.stage, &r.progress) {
                let (read, total) = (p.bytes_read.load(Relaxed), p.scan_bytes.load(Relaxed));
                line.push_str(&format!(" {} read", human(read)));
                let secs = r.since.elapsed().as_secs_f64();
                if !p.scan_done.load(Relaxed) && p.scan_files.load(Relaxed) > 0 {
                    line.push_str(", scanning");
                }
                if p.scan_done.load(Relaxed) && total > 0 && read > 0 {
                    let f = (p.total_bytes.load(Relaxed) as f64 / total as f64).min(1.0);
                    line.push_str(&format!(" of {} ETA {:.0} s", human(total), (secs / f.max(0.01) - secs).max(0.0)));
                }
            }
            let line: String = line.chars().take(width.saturating_sub(1)).collect();
            let _ = writeln!(err, "\r\x1b[K{line}");
        }
        let _ = err.flush();
        rows.len()
    }
}

impl Observer for Lines {
    fn job(&self, _job: &str, sources: &[String]) {
        let mut rows = self.rows.lock().expect("poisoned");
        rows.clear();
        rows.extend(sources.iter().map(|s| Row {
            label: s.clone(),
            stage: Stage::Waiting,
            progress: None,
            since: Instant::now(),
        }));
    }

    fn stage(&self, index: usize, stage: Stage, progress: Option<Arc<Progress>>) {
        if let Some(r) = self.rows.lock().expect("poisoned").get_mut(index) {
            r.stage = stage;
            if progress.is_some() {
                r.progress = progress;
                r.since = Instant::now();
            }
        }
    }

    fn note(&self, line: &str) {
        errln!("snapfs: {line}");
    }

    fn wants_totals(&self) -> bool {
        self.on
    }
}
