//! Progress on stderr, drawn by indicatif at the terminal's real width and only on a terminal:
//! JSON status lines for `backup --json`, otherwise nothing on a pipe or with --quiet.
//!
//! [`Bars`] holds any number of lines (one per backup source of a job); each is fed from the
//! library's counters by a `follow_*` loop on its own thread.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use snapfs::archiver::progress::{Change, OnEntry, Progress};
use snapfs::progress::Work;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Terminal,
    Json,
}

impl Mode {
    pub fn choose(quiet: bool, json: bool) -> Mode {
        if json {
            Mode::Json
        } else if !quiet && std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Off
        }
    }
}

/// How often a line is redrawn; also how often the counters are read.
const TICK: Duration = Duration::from_millis(250);

/// A set of progress lines drawn together below whatever else is printed.
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Lines that are drawn only when stderr is a terminal and `quiet` is not given.
    pub fn new(quiet: bool) -> Bars {
        let target = if !quiet && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars { multi: MultiProgress::with_draw_target(target) }
    }

    /// A new line under the others, e.g. one per source of a job, fed with [`follow_backup`].
    pub fn line(&self) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::no_length());
        bar.set_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template"));
        bar
    }

    /// A new line for work of known size: bytes, items, rate and ETA, fed with [`follow_work`].
    pub fn work(&self) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(0));
        // All text in `wide_msg`, the one part indicatif cuts to the terminal's width.
        bar.set_style(ProgressStyle::with_template("{bar:12} {wide_msg}").expect("a valid template"));
        bar
    }

    /// Runs `f` (which prints) with the lines cleared, then draws them again.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }
}

/// Copies `work`'s counters into `bar` (`verb` leads the line, `items` names what is counted)
/// until `done`, then removes the line; call on its own
/// thread.
pub fn follow_work(bar: &ProgressBar, verb: &str, items: &str, work: &Work, done: &AtomicBool) {
    while !done.load(Relaxed) {
        let (total, n) = (work.bytes_total.load(Relaxed), work.bytes_done.load(Relaxed));
        let of = format!("{}/{} {items}", work.items_done.load(Relaxed), work.items_total.load(Relaxed));
        bar.set_message(work_line(bar, verb, &of));
        bar.set_length(total);
        bar.set_position(n);
        std::thread::sleep(TICK);
    }
    bar.finish_and_clear();
}

/// `restoring 1.2 GiB of 4.0 GiB, 12/40 files, 98.0 MiB/s, ETA 0:31`
fn work_line(bar: &ProgressBar, verb: &str, items: &str) -> String {
    let (n, total) = (bar.position(), bar.length().unwrap_or(0));
    let rate = super::human(bar.per_sec() as u64);
    let mut line = format!("{verb} {} of {}, {items}, {rate}/s", super::human(n), super::human(total));
    if n > 0 && n < total {
        let eta = bar.eta().as_secs();
        line.push_str(&format!(", ETA {}:{:02}", eta / 60, eta % 60));
    }
    line
}

/// A copy of known size (prune's repack, key rotation), until `done`; call on its own thread.
pub fn report_copy(verb: &str, p: &snapfs::prune::CopyProgress, done: &AtomicBool) {
    let bars = Bars::new(false);
    let bar = bars.work();
    while !done.load(Relaxed) {
        let (n, total) = (p.done.load(Relaxed), p.total.load(Relaxed));
        bar.set_length(total);
        bar.set_position(n);
        let percent = if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
        bar.set_message(work_line(&bar, verb, &format!("{percent:.0}%")));
        std::thread::sleep(TICK);
    }
    bar.finish_and_clear();
}

/// Reports a backup until `done` is set: one line of `bars` on a terminal, or JSON status
/// lines; call on its own thread.
pub fn report(p: &Progress, mode: Mode, bars: &Bars, done: &AtomicBool) {
    match mode {
        Mode::Off => {}
        Mode::Terminal => follow_backup(&bars.line(), p, "", done),
        Mode::Json => json_status(p, done),
    }
}

/// `-v` (files new or modified) and `-vv` (every entry) for a backup: lines on stdout, as
/// restic's `verbose_status` objects with `json`.
pub fn backup_listing(verbose: u8, json: bool, bars: &Arc<Bars>) -> Option<OnEntry> {
    if verbose == 0 {
        return None;
    }
    let bars = bars.clone();
    Some(Box::new(move |change: Change, dir: bool, path: &Path| {
        if verbose < 2 && (change == Change::Unchanged || dir) {
            return;
        }
        if json {
            outln!("{}", json!({"message_type": "verbose_status", "action": change.word(), "item": path}));
        } else {
            bars.suspend(|| outln!("{:<9} {}", change.word(), path.display()));
        }
    }))
}

/// Feeds one backup's counters into `bar` until `done`, then removes the line; `label` leads
/// the line (a job's source name; empty for a lone backup).
pub fn follow_backup(bar: &ProgressBar, p: &Progress, label: &str, done: &AtomicBool) {
    let started = Instant::now();
    while !done.load(Relaxed) {
        std::thread::sleep(TICK);
        bar.set_message(backup_line(p, label, started.elapsed().as_secs_f64()));
    }
    bar.finish_and_clear();
}

/// `[0:12] 1200/5000 files, 1.2 GiB read, 98.0 MiB/s ETA 0:40  /the/current/file`; the
/// terminal's width cuts the end (`wide_msg`).
fn backup_line(p: &Progress, label: &str, secs: f64) -> String {
    let (files, bytes) = (p.total_files.load(Relaxed), p.total_bytes.load(Relaxed));
    let (sfiles, sbytes) = (p.scan_files.load(Relaxed), p.scan_bytes.load(Relaxed));
    let scanned = p.scan_done.load(Relaxed);
    let fraction = (scanned && sbytes > 0).then(|| (bytes as f64 / sbytes as f64).min(1.0));
    let current = p.current.lock().map(|c| c.display().to_string()).unwrap_or_default();
    let read = p.bytes_read.load(Relaxed);
    let rate = read as f64 / secs.max(0.001);
    let eta = match fraction {
        Some(f) if f > 0.01 => {
            let left = (secs / f - secs).max(0.0) as u64;
            format!(" ETA {}:{:02}", left / 60, left % 60)
        }
        _ => String::new(),
    };
    let of = if scanned { format!("/{sfiles}") } else { String::new() };
    let label = if label.is_empty() { String::new() } else { format!("{label} ") };
    format!(
        "{label}[{}:{:02}] {files}{of} files, {} read, {}/s{eta}  {current}",
        secs as u64 / 60,
        secs as u64 % 60,
        super::human(read),
        super::human(rate as u64)
    )
}

/// `backup --json`: a status object on stdout every second.
fn json_status(p: &Progress, done: &AtomicBool) {
    let started = Instant::now();
    let tick = Duration::from_secs(1);
    let mut next = started + tick;
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next {
            continue;
        }
        next += tick;
        let (bytes, sbytes) = (p.total_bytes.load(Relaxed), p.scan_bytes.load(Relaxed));
        let scanned = p.scan_done.load(Relaxed);
        let fraction = if scanned && sbytes > 0 { (bytes as f64 / sbytes as f64).min(1.0) } else { 0.0 };
        let line = json!({
            "message_type": "status",
            "seconds_elapsed": started.elapsed().as_secs(),
            "files_done": p.total_files.load(Relaxed),
            "bytes_done": bytes,
            "bytes_read": p.bytes_read.load(Relaxed),
            "total_files": p.scan_files.load(Relaxed),
            "total_bytes": sbytes,
            "scan_finished": scanned,
            "percent_done": fraction,
            "current_file": p.current.lock().map(|c| c.display().to_string()).unwrap_or_default(),
        });
        outln!("{line}");
    }
}
