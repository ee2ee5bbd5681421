//! Backup progress: a status line on a terminal, JSON status lines for scripts, or nothing.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;

use super::human;
use snapfs::archiver::progress::Progress;

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

/// Reports until `done` is set; call on its own thread.
pub fn report(p: &Progress, mode: Mode, done: &std::sync::atomic::AtomicBool) {
    let started = Instant::now();
    let tick = if mode == Mode::Json { Duration::from_secs(1) } else { Duration::from_millis(250) };
    let mut next = started + tick;
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if mode == Mode::Off || Instant::now() < next {
            continue;
        }
        next += tick;
        let secs = started.elapsed().as_secs_f64();
        let (files, bytes) = (p.total_files.load(Relaxed), p.total_bytes.load(Relaxed));
        let (sfiles, sbytes) = (p.scan_files.load(Relaxed), p.scan_bytes.load(Relaxed));
        let scanned = p.scan_done.load(Relaxed);
        let fraction = (scanned && sbytes > 0).then(|| (bytes as f64 / sbytes as f64).min(1.0));
        let current = p.current.lock().map(|c| c.display().to_string()).unwrap_or_default();
        if mode == Mode::Json {
            let line = json!({
                "message_type": "status",
                "seconds_elapsed": secs as u64,
                "files_done": files,
                "bytes_done": bytes,
                "bytes_read": p.bytes_read.load(Relaxed),
                "total_files": sfiles,
                "total_bytes": sbytes,
                "scan_finished": scanned,
                "percent_done": fraction.unwrap_or(0.0),
                "current_file": current,
            });
            outln!("{line}");
            continue;
        }
        let rate = p.bytes_read.load(Relaxed) as f64 / secs.max(0.001);
        let eta = match fraction {
            Some(f) if f > 0.01 => {
                let left = (secs / f - secs).max(0.0) as u64;
                format!(" ETA {}:{:02}", left / 60, left % 60)
            }
            _ => String::new(),
        };
        let of = if scanned { format!("/{sfiles}") } else { String::new() };
        let line = format!(
            "[{}:{:02}] {files}{of} files, {} read, {}/s{eta}  {current}",
            secs as u64 / 60,
            secs as u64 % 60,
            human(p.bytes_read.load(Relaxed)),
            human(rate as u64)
        );
        let width = terminal_width();
        let line: String = line.chars().take(width.saturating_sub(1)).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
    }
    if mode == Mode::Terminal {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
}

/// The terminal's real width (bash does not export `COLUMNS`), read on every update so a
/// resized window is followed.
fn terminal_width() -> usize {
    snapfs::sys::terminal_columns(&std::io::stderr())
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .unwrap_or(80)
}

/// A progress line for a copy of known size (prune's repack, key rotation), on a terminal
/// only, until `done` is set; call on its own thread.
pub fn report_copy(verb: &str, p: &snapfs::prune::CopyProgress, done: &std::sync::atomic::AtomicBool) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let started = Instant::now();
    let mut shown = false;
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let (n, total) = (p.done.load(Relaxed), p.total.load(Relaxed));
        if total == 0 {
            continue;
        }
        let secs = started.elapsed().as_secs_f64();
        let f = (n as f64 / total as f64).min(1.0);
        let eta = if f > 0.01 { format!(" ETA {}s", ((secs / f - secs).max(0.0)) as u64) } else { String::new() };
        let line = format!("{verb} {} of {} ({:.0}%){eta}", human(n), human(total), f * 100.0);
        let line: String = line.chars().take(terminal_width().saturating_sub(1)).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        shown = true;
    }
    if shown {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
}
