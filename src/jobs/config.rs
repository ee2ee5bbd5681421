//! The jobs config file: where it is found, what it may say, and its validation. Everything
//! that can be wrong with it is found here, before any hook or backup runs, and reported with
//! the file, the line and the dotted key (`jobs.web.schedule`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::JobError;
use super::schedule::Calendar;
use crate::policy::{Duration, Policy};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositoryConfig>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    /// How many sources of parallel jobs are backed up at once.
    pub max_parallel: Option<usize>,
    /// A Prometheus textfile written after every run.
    pub metrics_file: Option<PathBuf>,
    /// Where the status file lives, instead of the XDG state directory.
    pub state_dir: Option<PathBuf>,
    /// Where the index caches live, instead of `$XDG_CACHE_HOME/snapfs`.
    pub cache_dir: Option<PathBuf>,
    /// Set after loading: the file this came from.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepositoryConfig {
    pub repository: String,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Execution {
    #[default]
    Sequential,
    Parallel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobConfig {
    pub repository: String,
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// More sources, one path a line (as `backup --files-from-verbatim`).
    pub include_file: Option<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub iexclude: Vec<String>,
    pub exclude_file: Option<PathBuf>,
    #[serde(default)]
    pub exclude_caches: bool,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub keep: Option<Keep>,
    pub prune: Option<String>,
    pub schedule: Option<Schedules>,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default)]
    pub execution: Execution,
    pub before: Option<String>,
    pub after: Option<String>,
    pub on_failure: Option<String>,
    pub check: Option<String>,
    #[serde(default)]
    pub commands: Vec<CommandSource>,
    /// When a repository is locked (a prune elsewhere), keep trying this long (e.g. `10m`).
    pub retry_lock: Option<String>,
}

fn default_priority() -> u8 {
    50
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Schedules {
    One(String),
    Many(Vec<String>),
}

impl Schedules {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Schedules::One(s) => vec![s.as_str()],
            Schedules::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommandSource {
    /// The file name in the snapshot.
    pub name: String,
    /// Run with `sh -c`; its standard output is the file.
    pub command: String,
}

/// restic's `--keep-*` options, as keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Keep {
    pub last: Option<i64>,
    pub hourly: Option<i64>,
    pub daily: Option<i64>,
    pub weekly: Option<i64>,
    pub monthly: Option<i64>,
    pub yearly: Option<i64>,
    pub within: Option<String>,
    pub within_hourly: Option<String>,
    pub within_daily: Option<String>,
    pub within_weekly: Option<String>,
    pub within_monthly: Option<String>,
    pub within_yearly: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Keep {
    pub fn policy(&self) -> Result<Policy, String> {
        let d = |s: &Option<String>| s.as_deref().map(Duration::parse).transpose().map(Option::unwrap_or_default);
        let p = (|| {
            Ok::<_, crate::Error>(Policy {
                last: self.last.unwrap_or(0),
                hourly: self.hourly.unwrap_or(0),
                daily: self.daily.unwrap_or(0),
                weekly: self.weekly.unwrap_or(0),
                monthly: self.monthly.unwrap_or(0),
                yearly: self.yearly.unwrap_or(0),
                within: d(&self.within)?,
                within_hourly: d(&self.within_hourly)?,
                within_daily: d(&self.within_daily)?,
                within_weekly: d(&self.within_weekly)?,
                within_monthly: d(&self.within_monthly)?,
                within_yearly: d(&self.within_yearly)?,
                tags: self.tags.clone(),
            })
        })()
        .map_err(|e| e.to_string())?;
        p.validate().map_err(|e| e.to_string())?;
        if p.is_empty() {
            return Err("keeps nothing: give at least one of last, hourly, daily, … (or leave keep out)".into());
        }
        Ok(p)
    }
}

/// One thing a job backs up, as its own snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(PathBuf),
    Command { name: String, command: String },
}

impl Source {
    /// How the status file and the output name it.
    pub fn label(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Command { name, .. } => format!("command:{name}"),
        }
    }
}

impl JobConfig {
    /// The sources in the order they are backed up: `sources`, then `include-file`'s, then the
    /// commands.
    pub fn sources(&self) -> Result<Vec<Source>, JobError> {
        let mut out: Vec<Source> = self.sources.iter().cloned().map(Source::Path).collect();
        if let Some(f) = &self.include_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| JobError::io(format!("read include-file {}", f.display()), e))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| Source::Path(l.into())),
            );
        }
        out.extend(self.commands.iter().map(|c| Source::Command { name: c.name.clone(), command: c.command.clone() }));
        Ok(out)
    }

    pub fn calendars(&self) -> Vec<Calendar> {
        let list = self.schedule.as_ref().map(Schedules::list).unwrap_or_default();
        list.iter().filter_map(|s| Calendar::parse(s).ok()).collect()
    }

    /// The tag every snapshot of this job carries, so its forget touches only its snapshots.
    pub fn job_tag(name: &str) -> String {
        format!("job:{name}")
    }
}

/// The config file to read: `--config`, `SNAPFS_CONFIG`, then the XDG and system locations.
pub fn locate(given: Option<&Path>) -> Result<PathBuf, JobError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SNAPFS_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(p.into());
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let mut tried = Vec::new();
    for p in xdg.map(|d| d.join("snapfs/snapfs.toml")).into_iter().chain([PathBuf::from("/etc/snapfs/snapfs.toml")]) {
        if p.exists() {
            return Ok(p);
        }
        tried.push(p.display().to_string());
    }
    Err(JobError::NoConfig(tried.join(", ")))
}

/// Reads and validates the config file.
pub fn load(path: &Path) -> Result<Config, JobError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobError::io(format!("read config {}", path.display()), e))?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Config, JobError> {
    let at = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
        let offset = span.map(|s| s.start).unwrap_or(0);
        let key =
            key.or_else(|| DeTable::parse(text).ok().and_then(|t| key_at(t.get_ref(), offset))).unwrap_or_default();
        JobError::Config { file: path.to_path_buf(), line: line_of(text, offset), key, message }
    };
    let mut config: Config = toml::from_str(text).map_err(|e| at(e.span(), None, e.message().trim().to_string()))?;
    config.path = path.to_path_buf();
    let table = DeTable::parse(text).map_err(|e| at(e.span(), None, e.message().to_string()))?;
    let span_of = |key: &str| find(table.get_ref(), &key.split('.').collect::<Vec<_>>());
    let fail = |key: String, message: String| Err(at(span_of(&key), Some(key), message));
    if config.max_parallel == Some(0) {
        return fail("max-parallel".into(), "must be at least 1".into());
    }
    for (name, job) in &config.jobs {
        let key = |k: &str| format!("jobs.{name}.{k}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return fail(
                format!("jobs.{name}"),
                "a job name is letters, digits, `_`, `.` and `-` (it names systemd units)".into(),
            );
        }
        if !config.repositories.contains_key(&job.repository) && !job.repository.contains(['/', ':']) {
            let known: Vec<&str> = config.repositories.keys().map(String::as_str).collect();
            let defined = if known.is_empty() {
                "the config defines no [repositories.NAME]; give a path or URL instead".to_string()
            } else {
                format!("defined: {}", known.join(", "))
            };
            return fail(key("repository"), format!("no repository named {:?} ({defined})", job.repository));
        }
        if job.priority > 99 {
            return fail(key("priority"), format!("{} is out of range (0-99)", job.priority));
        }
        for s in job.schedule.as_ref().map(Schedules::list).unwrap_or_default() {
            if let Err(why) = Calendar::parse(s) {
                return fail(key("schedule"), format!("cannot parse schedule {s:?}: {why}"));
            }
        }
        if let Some(p) = &job.prune
            && !matches!(p.as_str(), "always" | "never")
            && let Err(why) = Calendar::parse(p)
        {
            return fail(
                key("prune"),
                format!("{p:?}: {why} (use always, never or a calendar expression like weekly)"),
            );
        }
        if let Some(k) = &job.keep
            && let Err(why) = k.policy()
        {
            return fail(key("keep"), why);
        }
        if let Some(c) = &job.check
            && crate::check::parse_subset(c).is_none()
        {
            return fail(key("check"), format!("{c:?}: use N% or n/m, as check --read-data-subset"));
        }
        if let Some(r) = &job.retry_lock
            && parse_seconds(r).is_none()
        {
            return fail(key("retry-lock"), format!("{r:?}: use e.g. 30s, 10m, 1h"));
        }
        if job.sources.is_empty() && job.commands.is_empty() && job.include_file.is_none() {
            return fail(format!("jobs.{name}"), "has no sources, include-file or commands".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &job.commands {
            if c.name.is_empty() || c.name.contains('/') || !seen.insert(&c.name) {
                return fail(key("commands"), format!("name {:?}: one file name, each used once", c.name));
            }
        }
    }
    Ok(config)
}

/// `30s`, `10m`, `1h30m`.
pub fn parse_seconds(s: &str) -> Option<u64> {
    let (mut total, mut n) = (0u64, String::new());
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            n.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total += n.parse::<u64>().ok()? * unit;
        n.clear();
    }
    (n.is_empty() && total > 0).then_some(total)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The span of a dotted key's value (or of the key, for tables defined by a header).
fn find(table: &DeTable, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    match (rest.is_empty(), v.get_ref()) {
        (true, _) => Some(if v.span().is_empty() { k.span() } else { v.span() }),
        (false, DeValue::Table(t)) => find(t, rest).or(Some(k.span())),
        (false, _) => Some(k.span()),
    }
}

/// A key (an index for arrays), its value, and the key's span (arrays have none).
type Entry<'a, 'i> = (String, &'a toml::Spanned<DeValue<'i>>, Option<std::ops::Range<usize>>);

/// The dotted key whose key or value holds the byte at `offset` (the innermost one).
fn key_at(table: &DeTable, offset: usize) -> Option<String> {
    fn walk(v: &DeValue, prefix: &str, offset: usize, best: &mut Option<(usize, String)>) {
        let entries: Vec<Entry> = match v {
            DeValue::Table(t) => t.iter().map(|(k, v)| (k.get_ref().to_string(), v, Some(k.span()))).collect(),
            DeValue::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v, None)).collect(),
            _ => return,
        };
        for (name, value, kspan) in entries {
            let path = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
            for span in kspan.into_iter().chain([value.span()]) {
                if span.contains(&offset) && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
                    *best = Some((span.len(), path.clone()));
                }
            }
            walk(value.get_ref(), &path, offset, best);
        }
    }
    let mut best = None;
    walk(&DeValue::Table(table.clone()), "", offset, &mut best);
    best.map(|(_, p)| p)
}
