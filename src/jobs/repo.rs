//! Opening a job's repository as the config describes it: its location, its password (a file,
//! a command, or `SNAPFS_PASSWORD`), the index cache, and how long to wait for a lock.

use std::time::Duration;

use zeroize::Zeroizing;

use super::JobError;
use super::config::{Config, JobConfig, RepositoryConfig, parse_seconds};
use crate::repo::{Cache, LockMode, Opened, Opening, Repository};

/// A job's repository: its name in the config (or its location, when given directly).
pub struct Target<'a> {
    pub name: &'a str,
    pub location: &'a str,
    settings: Option<&'a RepositoryConfig>,
    cache: Cache,
    retry: Duration,
}

impl<'a> Target<'a> {
    pub fn of(config: &'a Config, job: &'a JobConfig) -> Target<'a> {
        let settings = config.repositories.get(&job.repository);
        let dir = config
            .cache_dir
            .clone()
            .or_else(|| std::env::var_os("SNAPFS_CACHE_DIR").filter(|v| !v.is_empty()).map(Into::into))
            .or_else(Cache::default_dir);
        // A forget after a parallel job's run waits for another job's forget rather than failing.
        let retry = job.retry_lock.as_deref().and_then(parse_seconds).unwrap_or(300);
        Target {
            name: &job.repository,
            location: settings.map_or(job.repository.as_str(), |r| r.repository.as_str()),
            settings,
            cache: Cache { dir, ..Cache::default() },
            retry: Duration::from_secs(retry),
        }
    }

    pub fn open(&self, mode: LockMode, command: &str) -> Result<Repository<Opened>, JobError> {
        let backend = crate::backend::from_location(self.location)?;
        let pw = self.password()?;
        let opts = Opening { retry: self.retry, cache: Some(&self.cache), ..Opening::new(mode, command) };
        Ok(Repository::open_with(backend, pw.as_bytes(), &opts)?)
    }

    /// Opened with its index caught up (audited for check, which must not trust the cache).
    pub fn open_ready(&self, mode: LockMode, command: &str, audit: bool) -> Result<Repository, JobError> {
        // A prune lock is for a prune, which streams the index and catches it up itself
        // (`Cache::streaming`, `Cache::deferred`).
        let prune = mode == LockMode::Prune;
        let cache = Cache { audit, streaming: prune, deferred: prune, ..self.cache.clone() };
        Ok(self.open(mode, command)?.load_index(&cache)?.0)
    }

    fn password(&self) -> Result<Zeroizing<String>, JobError> {
        let bad = |why: String| JobError::Invalid(format!("repository {}: {why}", self.name));
        let s = self.settings;
        let text = if let Some(cmd) = s.and_then(|s| s.password_command.as_deref()) {
            let out = std::process::Command::new("sh")
                .args(["-c", cmd])
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| bad(format!("run password-command: {e}")))?;
            let stdout = Zeroizing::new(out.stdout);
            if !out.status.success() {
                return Err(bad(format!("password-command exited with {}", out.status)));
            }
            let t = std::str::from_utf8(&stdout).map_err(|_| bad("password-command printed non-UTF-8".into()))?;
            Zeroizing::new(t.trim_end_matches(['\n', '\r']).to_string())
        } else if let Some(f) = s.and_then(|s| s.password_file.as_deref()) {
            let all = Zeroizing::new(
                std::fs::read_to_string(f).map_err(|e| bad(format!("read password-file {}: {e}", f.display())))?,
            );
            Zeroizing::new(all.lines().next().unwrap_or("").to_string())
        } else {
            let v = std::env::var("SNAPFS_PASSWORD")
                .map_err(|_| bad("no password-file or password-command, and SNAPFS_PASSWORD is not set".into()))?;
            Zeroizing::new(v)
        };
        if text.is_empty() {
            return Err(bad("the password is empty".into()));
        }
        Ok(text)
    }
}
