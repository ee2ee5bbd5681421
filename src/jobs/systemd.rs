//! systemd units for scheduled jobs: a oneshot `.service` that runs `snapfs job run NAME` and a
//! `.timer` with the job's `OnCalendar=` lines and `Persistent=true` (a run missed while the
//! machine was off happens at the next boot). Only files with our marker line are ever removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::JobError;
use super::config::Config;

const MARKER: &str = "# Written by `snapfs job schedule --install`; removed by --uninstall.";

pub struct Install {
    /// A user's units (`systemctl --user`) rather than the system's.
    pub user: bool,
    /// Write the units here and do not call systemctl (for packaging, and tests).
    pub unit_dir: Option<PathBuf>,
    /// The snapfs binary the service runs.
    pub exe: PathBuf,
}

#[derive(Debug, Default)]
pub struct Installed {
    pub dir: PathBuf,
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    /// Jobs without a schedule, which get no timer.
    pub unscheduled: Vec<String>,
    /// The systemctl commands run.
    pub systemctl: Vec<String>,
}

pub fn unit_name(job: &str) -> String {
    format!("snapfs-job-{job}")
}

fn dir(opts: &Install) -> PathBuf {
    if let Some(d) = &opts.unit_dir {
        return d.clone();
    }
    if !opts.user {
        return PathBuf::from("/etc/systemd/system");
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("systemd/user")
}

/// systemd's quoting for one word of `ExecStart=`.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c)) {
        return s.to_string();
    }
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$"))
}

pub fn service(config: &Config, job: &str, exe: &Path) -> String {
    let cfg = std::path::absolute(&config.path).unwrap_or_else(|_| config.path.clone());
    let exec = [exe.display().to_string(), "job".into(), "--config".into(), cfg.display().to_string()]
        .iter()
        .map(|w| quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{MARKER}\n[Unit]\nDescription=snapfs backup job {job}\nWants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nType=oneshot\nExecStart={exec} run {}\nNice=10\nIOSchedulingClass=idle\n",
        quote(job)
    )
}

pub fn timer(job: &str, schedules: &[&str]) -> String {
    let mut t = format!("{MARKER}\n[Unit]\nDescription=Schedule of snapfs backup job {job}\n\n[Timer]\n");
    for s in schedules {
        t.push_str(&format!("OnCalendar={s}\n"));
    }
    t.push_str(&format!("Persistent=true\nUnit={}.service\n\n[Install]\nWantedBy=timers.target\n", unit_name(job)));
    t
}

fn systemctl(opts: &Install, args: &[&str], out: &mut Installed) -> Result<(), JobError> {
    let mut c = Command::new("systemctl");
    if opts.user {
        c.arg("--user");
    }
    c.args(args);
    out.systemctl.push(format!("{c:?}"));
    let status = c.status().map_err(|e| JobError::io("run systemctl", e))?;
    if !status.success() {
        return Err(JobError::Invalid(format!("{c:?} exited with {status}")));
    }
    Ok(())
}

pub fn install(config: &Config, opts: &Install) -> Result<Installed, JobError> {
    let dir = dir(opts);
    std::fs::create_dir_all(&dir).map_err(|e| JobError::io(format!("create {}", dir.display()), e))?;
    let mut out = Installed { dir: dir.clone(), ..Installed::default() };
    let mut timers = Vec::new();
    for (name, job) in &config.jobs {
        let schedules = job.schedule.as_ref().map(|s| s.list()).unwrap_or_default();
        if schedules.is_empty() {
            out.unscheduled.push(name.clone());
            continue;
        }
        for (ext, text) in [("service", service(config, name, &opts.exe)), ("timer", timer(name, &schedules))] {
            let path = dir.join(format!("{}.{ext}", unit_name(name)));
            super::status::write_atomic(&path, text.as_bytes())?;
            out.written.push(path);
        }
        timers.push(format!("{}.timer", unit_name(name)));
    }
    if opts.unit_dir.is_none() && !timers.is_empty() {
        systemctl(opts, &["daemon-reload"], &mut out)?;
        let mut args = vec!["enable", "--now"];
        args.extend(timers.iter().map(String::as_str));
        systemctl(opts, &args, &mut out)?;
    }
    Ok(out)
}

/// Removes every unit this command wrote in the directory (stopping their timers first).
pub fn uninstall(opts: &Install) -> Result<Installed, JobError> {
    let dir = dir(opts);
    let mut out = Installed { dir: dir.clone(), ..Installed::default() };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(JobError::io(format!("list {}", dir.display()), e)),
    };
    let mut ours = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_unit = name.starts_with("snapfs-job-") && (name.ends_with(".service") || name.ends_with(".timer"));
        if is_unit && std::fs::read_to_string(e.path()).is_ok_and(|t| t.starts_with(MARKER)) {
            ours.push((name, e.path()));
        }
    }
    ours.sort();
    let timers: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).filter(|n| n.ends_with(".timer")).collect();
    if opts.unit_dir.is_none() && !timers.is_empty() {
        let mut args = vec!["disable", "--now"];
        args.extend(timers);
        systemctl(opts, &args, &mut out)?;
    }
    for (_, path) in ours {
        std::fs::remove_file(&path).map_err(|e| JobError::io(format!("remove {}", path.display()), e))?;
        out.removed.push(path);
    }
    if opts.unit_dir.is_none() && !out.removed.is_empty() {
        systemctl(opts, &["daemon-reload"], &mut out)?;
    }
    Ok(out)
}
