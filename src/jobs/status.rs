//! The jobs' status: a small JSON file beside no repository, since it describes this machine's
//! runs. Every change is a read-modify-write under an `flock` (a run and a `job cancel` in
//! another process both write it), written to a temporary file, fsynced and renamed, so a crash
//! leaves the old or the new file, never half of one.
//!
//! A run records its pid, the process's start time and the boot id; whoever reads the file
//! next and finds that process gone reports its unfinished sources as *error: interrupted*
//! instead of *ongoing* forever.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::JobError;
use super::config::{Config, JobConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Outdated,
    Ongoing,
    Updated,
    Error,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Outdated => "outdated",
            SourceState::Ongoing => "ongoing",
            SourceState::Updated => "updated",
            SourceState::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub jobs: BTreeMap<String, JobState>,
    /// What the last run saw of each repository, for the metrics.
    #[serde(default)]
    pub repositories: BTreeMap<String, RepoStats>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RepoStats {
    pub size_bytes: u64,
    pub packs: u64,
    pub snapshots: u64,
    /// The fraction of packs fully read by a check in the last 30 days.
    pub coverage: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobState {
    /// The run in progress, if any.
    pub run: Option<RunMark>,
    pub last_run: Option<Timestamp>,
    pub duration_s: Option<f64>,
    /// `ok`, `error` (some sources), `failed` (the job could not run), `cancelled`,
    /// `interrupted`.
    pub result: Option<String>,
    pub error: Option<String>,
    pub last_prune: Option<Timestamp>,
    pub last_check: Option<Outcome>,
    pub last_drill: Option<Outcome>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceStatus>,
}

/// A check or a drill.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub time: Timestamp,
    pub duration_s: f64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMark {
    pub pid: u32,
    /// The process's start time in clock ticks since boot (/proc/PID/stat): a reused pid
    /// has another.
    pub start_ticks: u64,
    pub boot_id: String,
    pub started: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceStatus {
    pub state: SourceState,
    pub last_run: Option<Timestamp>,
    pub duration_s: Option<f64>,
    pub snapshot: Option<String>,
    pub error: Option<String>,
    pub last_success: Option<Timestamp>,
    #[serde(default)]
    pub bytes_added: u64,
    #[serde(default)]
    pub files: u64,
}

impl SourceStatus {
    pub fn new() -> SourceStatus {
        SourceStatus {
            state: SourceState::Outdated,
            last_run: None,
            duration_s: None,
            snapshot: None,
            error: None,
            last_success: None,
            bytes_added: 0,
            files: 0,
        }
    }
}

impl Default for SourceStatus {
    fn default() -> Self {
        SourceStatus::new()
    }
}

/// The status directory: `state-dir` in the config, `$XDG_STATE_HOME/snapfs`, `/var/lib/snapfs`
/// for root, else `~/.local/state/snapfs`.
pub fn dir(config: &Config) -> PathBuf {
    if let Some(d) = &config.state_dir {
        return d.clone();
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("snapfs");
    }
    match std::env::var_os("HOME") {
        Some(h) if crate::sys::uid() != 0 => PathBuf::from(h).join(".local/state/snapfs"),
        _ => PathBuf::from("/var/lib/snapfs"),
    }
}

/// Where one status file is kept, and its lock beside it.
pub struct Store {
    pub path: PathBuf,
    lock: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store { path: dir.join("jobs.json"), lock: dir.join("jobs.lock") }
    }

    /// The status as recorded, with runs whose process is gone marked interrupted.
    pub fn load(&self) -> Result<State, JobError> {
        let mut s = self.read()?;
        settle(&mut s);
        Ok(s)
    }

    fn read(&self) -> Result<State, JobError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| JobError::State { path: self.path.clone(), detail: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(JobError::io(format!("read {}", self.path.display()), e)),
        }
    }

    /// Changes the status under the lock and writes it back atomically.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, JobError> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| JobError::io(format!("create {}", parent.display()), e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| JobError::io(format!("open {}", self.lock.display()), e))?;
        // SAFETY: flock on a descriptor this function owns; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(JobError::io(format!("lock {}", self.lock.display()), std::io::Error::last_os_error()));
        }
        let mut state = self.load()?;
        let out = f(&mut state);
        let bytes = serde_json::to_vec_pretty(&state).expect("status serializes");
        write_atomic(&self.path, &bytes)?;
        drop(lock);
        Ok(out)
    }
}

/// Writes `bytes` to `path` through a temporary file, fsynced, renamed, the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JobError> {
    let io = |what: &str, e| JobError::io(format!("{what} {}", path.display()), e);
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| io("create a temporary file for", e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("write", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("rename into", e)
    })?;
    File::open(parent).and_then(|d| d.sync_all()).map_err(|e| io("sync the directory of", e))
}

/// This process, as a run records it.
pub fn this_run() -> RunMark {
    let pid = std::process::id();
    RunMark { pid, start_ticks: start_ticks(pid).unwrap_or(0), boot_id: boot_id(), started: Timestamp::now() }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

impl RunMark {
    pub fn alive(&self) -> bool {
        self.boot_id == boot_id() && start_ticks(self.pid).is_some_and(|t| t == self.start_ticks)
    }
}

/// Marks the runs whose process is gone as interrupted.
fn settle(s: &mut State) {
    for job in s.jobs.values_mut() {
        if let Some(run) = job.run.take_if(|r| !r.alive()) {
            job.last_run = Some(run.started);
            job.result = Some("interrupted".into());
            job.error = Some("interrupted: the run ended without finishing".into());
            for src in job.sources.values_mut().filter(|s| s.state == SourceState::Ongoing) {
                src.state = SourceState::Error;
                src.error = Some("interrupted".into());
            }
        }
    }
}

/// One source as `job status` shows it.
#[derive(Clone, Debug)]
pub struct SourceView {
    pub source: String,
    pub state: SourceState,
    pub status: SourceStatus,
}

/// The job's sources in config order with their states: those never backed up, and those a
/// scheduled run has come due for since their last success, are *outdated*.
pub fn view(job: &JobConfig, state: Option<&JobState>, now: Timestamp) -> Result<Vec<SourceView>, JobError> {
    let tz = jiff::tz::TimeZone::system();
    let calendars = job.calendars();
    Ok(job
        .sources()?
        .iter()
        .map(|s| {
            let label = s.label();
            let status = state.and_then(|j| j.sources.get(&label)).cloned().unwrap_or_default();
            let due = |t: Timestamp| calendars.iter().filter_map(|c| c.next_after(t, &tz)).any(|n| n <= now);
            let st = match status.state {
                SourceState::Updated if status.last_success.is_some_and(due) => SourceState::Outdated,
                s => s,
            };
            SourceView { source: label, state: st, status }
        })
        .collect())
}
