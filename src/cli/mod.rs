//! Command-line interface: argument definitions, password sources, exit codes.

// Every line a command prints goes through these (see `output`): println! panics on a closed pipe.
macro_rules! outln {
    () => { $crate::cli::output::line(format_args!("")) };
    ($($t:tt)*) => { $crate::cli::output::line(format_args!($($t)*)) };
}
macro_rules! errln {
    ($($t:tt)*) => { $crate::cli::output::err_line(format_args!($($t)*)) };
}

mod backup;
mod bundle;
mod check;
mod completion;
mod copy;
mod diff;
mod dump;
mod entries;
mod find;
mod forget;
mod history;
mod inspect;
mod interrupt;
mod job;
mod key;
mod ls;
mod mount;
mod output;
mod password;
mod progress;
mod prune;
mod repair;
mod restore;
mod serve;
mod show;
mod snapshots;
mod stats;
mod tag;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use snapfs::backend::{self, Backend};
use snapfs::crypto::keyfile::KdfParams;
use snapfs::format::snapshot::Snapshot;
use snapfs::repo::{Cache, LockMode, Opened, Opening, Repository, lock};
use snapfs::{Id, select};

use password::password;
pub use password::{PasswordSource, read_password};

/// Exit codes, following restic where it has one. Usage errors exit 2 (clap's).
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const INCOMPLETE: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
    pub const INTERRUPTED: u8 = 130;
}

/// `snapfs --version`: the version, the commit when the build was told it (`SNAPFS_COMMIT` at
/// build time; no build script runs git), the repository format and the target.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let commit = option_env!("SNAPFS_COMMIT").map(|c| format!(", commit {c}")).unwrap_or_default();
    format!(
        "{}{commit} (repository format {}, {}-{})",
        env!("CARGO_PKG_VERSION"),
        snapfs::format::config::VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS
    )
});

const ENVIRONMENT: &str = "\
Environment:
  SNAPFS_REPOSITORY        the repository, as --repo
  SNAPFS_PASSWORD          the password itself (--password-file and --password-command win over it)
  SNAPFS_PASSWORD_FILE     as --password-file
  SNAPFS_PASSWORD_COMMAND  as --password-command
  SNAPFS_CACHE_DIR         as --cache-dir
  SNAPFS_KEY_HINT          as --key-hint
  SNAPFS_SERVER_TOKEN      the token for a repository at http(s):// (snapfs serve)";

#[derive(Parser)]
#[command(
    name = "snapfs",
    version = VERSION.as_str(),
    about = "Deduplicating, encrypted backups you can browse as filesystems",
    after_help = ENVIRONMENT
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository directory
    #[arg(short = 'r', long, global = true, env = "SNAPFS_REPOSITORY", value_name = "DIR")]
    repo: Option<String>,
    /// Where the index cache lives [default: $XDG_CACHE_HOME/snapfs or ~/.cache/snapfs]
    #[arg(long, global = true, env = "SNAPFS_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Read the password from the first line of this file (its line ending removed)
    #[arg(long, global = true, env = "SNAPFS_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password (trailing newlines removed)
    #[arg(long, global = true, env = "SNAPFS_PASSWORD_COMMAND", value_name = "CMD", conflicts_with = "password_file")]
    password_command: Option<String>,
    /// Try this key slot (an id or a prefix) first [default: the one that opened last time]
    #[arg(long, global = true, env = "SNAPFS_KEY_HINT", value_name = "ID")]
    key_hint: Option<String>,
    /// When the repository is locked, keep trying for this long (e.g. 30s, 5m) instead of failing
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    retry_lock: Option<Duration>,
    /// Print only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// List the files as they are backed up or restored (-vv: also those unchanged, and
    /// directories)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// For a repository at http(s)://: read the server's token from this file
    #[arg(long, global = true, env = "SNAPFS_SERVER_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// For a repository at https://: trust the certificates in this PEM file, not the system's
    #[arg(long, global = true, env = "SNAPFS_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository
    Init(copy::InitArgs),
    /// Back up files and directories into a new snapshot
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// Restore a snapshot, or part of one, to a directory
    Restore(restore::Args),
    /// List the files of a snapshot, or of one path in it
    Ls(ls::Args),
    /// Find files by name, path, blob or pack across snapshots
    Find(find::Args),
    /// Show what changed between two snapshots, or a snapshot and a directory
    Diff(diff::Args),
    /// Show every detail of one snapshot
    Show(show::Args),
    /// Sizes of snapshots, distinct contents and the repository's data, and the dedup ratio
    Stats(stats::Args),
    /// Every distinct version of one file or directory across snapshots
    History(history::Args),
    /// Change the tags or description of snapshots (each gets a new id)
    Tag(tag::Args),
    /// Verify the repository: structure, and with --read-data every blob
    Check(check::Args),
    /// Remove snapshots by a retention policy (restic's --keep-* options) or by id
    Forget(Box<forget::Args>),
    /// Delete the data no snapshot needs, beside running backups and mounts
    Prune(prune::Command),
    /// Repair the repository
    #[command(subcommand)]
    Repair(repair::Args),
    /// Browse snapshots as a read-only filesystem (in the foreground, until unmounted)
    Mount(mount::Args),
    /// Write a file of a snapshot to standard output, or a directory as a tar archive
    Dump(dump::Args),
    /// Print a shell completion script (e.g. `snapfs completion bash > /etc/bash_completion.d/snapfs`)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages into a directory (what `cargo xtask man` runs)
    #[command(hide = true)]
    ManPages { dir: PathBuf },
    /// Manage passwords (key slots) and rotate the data keys
    #[command(subcommand)]
    Key(key::Command),
    /// Backup jobs from the config file: run, status, retry, cancel, schedule, drill
    Job(job::Args),
    /// Copy snapshots from another repository (--from-repo), skipping those already here
    Copy(copy::Args),
    /// Write snapshots and only the data they need into one encrypted file any repository can import
    Export(bundle::ExportArgs),
    /// Add the snapshots of a bundle `export` wrote, verifying every blob
    Import(bundle::ImportArgs),
    /// Remove stale locks (those of processes on this host that no longer run)
    Unlock {
        /// Remove every lock, also those of processes that may still run
        #[arg(long)]
        remove_all: bool,
    },
    /// Print an object decrypted, for debugging: config, snapshot ID, tree ID, blob ID, key ID
    #[command(subcommand)]
    Cat(inspect::Cat),
    /// List the objects of one kind, for debugging: snapshots, packs, keys, locks, blobs
    List {
        #[arg(value_enum)]
        kind: inspect::List,
    },
    /// Serve the repository to other machines over HTTP(S), with tokens and roles
    Serve(serve::Args),
    /// Print the version, the repository format it writes and the target it was built for
    Version {
        /// Print a JSON object
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    bound_malloc();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        // A listing that writes its lines itself stops at a closed pipe: that is its end.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            errln!("snapfs: error: {e:#}");
            exit_code(&e)
        }
    };
    if let Some(e) = output::failure() {
        errln!("snapfs: error: write standard output: {e}");
        if code == 0 {
            return ExitCode::from(exit::ERROR);
        }
    }
    ExitCode::from(code)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Keeps the process's memory near what it uses. glibc raises its mmap threshold after large
/// frees, after which every freed ~1 MiB chunk buffer stays in the heap. Measured with the
/// threshold fixed at 256 KiB: mount RSS after reading a 200 MB file 89 -> 45 MB; peak RSS of a
/// 3.15 GB initial backup 279 -> 199 MB, at the same speed.
fn bound_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called first in main, before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<snapfs::Error>() {
            return match err {
                snapfs::Error::NoRepository(_) => exit::NO_REPOSITORY,
                snapfs::Error::Locked(_) => exit::LOCKED,
                snapfs::Error::WrongPassword(_) | snapfs::Error::WrongBundlePassword(_) => exit::WRONG_PASSWORD,
                snapfs::Error::Interrupted => exit::INTERRUPTED,
                _ => exit::ERROR,
            };
        }
    }
    exit::ERROR
}

fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => copy::init(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Show(a) => show::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::History(a) => history::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Forget(a) => forget::run(g, *a),
        Command::Prune(a) => prune::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Job(a) => job::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Export(a) => bundle::export(g, a),
        Command::Import(a) => bundle::import(g, a),
        Command::Cat(a) => inspect::cat(g, a),
        Command::List { kind } => inspect::list(g, kind),
        Command::Serve(a) => serve::run(g, a),
        Command::Completion { shell } => completion::run(shell),
        Command::ManPages { dir } => completion::man_pages(&dir),
        Command::Unlock { remove_all } => {
            let backend = backend(g)?;
            if backend.list(backend::Kind::Config)?.is_empty() {
                return Err(snapfs::Error::NoRepository(backend.location()).into());
            }
            let n = lock::remove(backend.as_ref(), remove_all)?;
            if !g.quiet {
                outln!("removed {}", count(n as u64, "lock", "locks"));
            }
            Ok(0)
        }
        Command::Version { json } => {
            if json {
                let v = serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "commit": option_env!("SNAPFS_COMMIT"),
                    "repository_format": snapfs::format::config::VERSION,
                    "arch": std::env::consts::ARCH,
                    "os": std::env::consts::OS,
                });
                outln!("{v}");
            } else {
                outln!("snapfs {}", *VERSION);
            }
            Ok(0)
        }
    }
}

fn repo_location(g: &Global) -> Result<&str> {
    g.repo.as_deref().context("no repository given: use --repo DIR or set SNAPFS_REPOSITORY")
}

fn backend(g: &Global) -> Result<Arc<dyn Backend>> {
    Ok(backend::from_location_with(repo_location(g)?, &http_options(g)?)?)
}

/// A server's token (`SNAPFS_SERVER_TOKEN`, else `--token-file`) and CA, for `--repo http(s)://`.
fn http_options(g: &Global) -> Result<backend::HttpOptions> {
    let token = match std::env::var("SNAPFS_SERVER_TOKEN").ok().filter(|t| !t.is_empty()) {
        Some(t) => Some(zeroize::Zeroizing::new(t.trim().to_string())),
        None => g.token_file.as_deref().map(backend::http::read_token_file).transpose()?,
    };
    Ok(backend::HttpOptions { token, ca: g.tls_ca.clone() })
}

/// Creates the repository `--repo` names with `make` (which sees the new password).
fn init(
    g: &Global,
    kdf: KdfParams,
    make: impl FnOnce(Arc<dyn Backend>, &[u8], KdfParams) -> Result<Repository<Opened>>,
) -> Result<u8> {
    let location = repo_location(g)?;
    let backend = backend::for_init(location, &http_options(g)?)?;
    let pw = password(g, true)?;
    let repo = make(backend, pw.as_bytes(), kdf)?;
    if !g.quiet {
        let id: String = repo.repo_id().iter().map(|b| format!("{b:02x}")).collect();
        outln!("created snapfs repository {id} at {location}");
        outln!("Keep the password safe: without it the data cannot be read back.");
    }
    Ok(0)
}

/// Where the index cache is: `--cache-dir`, `SNAPFS_CACHE_DIR`, or the XDG default.
pub fn cache(g: &Global) -> Cache {
    Cache { dir: g.cache_dir.clone().or_else(Cache::default_dir), ..Cache::default() }
}

/// Unlocks the repository named on the command line and takes a lock, without its index.
pub fn open_keys(g: &Global, mode: LockMode, command: &str) -> Result<Repository<Opened>> {
    let backend = backend(g)?;
    let pw = password(g, false)?;
    let cache = cache(g);
    let opts = Opening {
        retry: g.retry_lock.unwrap_or(Duration::ZERO),
        key_hint: g.key_hint.clone(),
        cache: Some(&cache),
        ..Opening::new(mode, command)
    };
    let repo = Repository::open_with(backend, pw.as_bytes(), &opts)?;
    if let Some(why) = repo.unlocked() {
        errln!("warning: reading without a lock: {why}");
    }
    Ok(repo)
}

/// As [`open_keys`], with the index cache caught up (one line on stderr when it had to be).
pub fn open(g: &Global, mode: LockMode, command: &str) -> Result<Repository> {
    open_cached(g, mode, command, &cache(g))
}

pub fn open_cached(g: &Global, mode: LockMode, command: &str, cache: &Cache) -> Result<Repository> {
    with_index(g, open_keys(g, mode, command)?, cache)
}

/// An opened repository with its index caught up through `cache`, saying what the catch-up did.
pub fn with_index(g: &Global, repo: Repository<Opened>, cache: &Cache) -> Result<Repository> {
    let (repo, caught_up) = repo.load_index(cache)?;
    if let Some(line) = caught_up.summary()
        && !g.quiet
    {
        errln!("{line}");
    }
    Ok(repo)
}

/// Which snapshots a command looks at; the same options for every command that chooses.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Only snapshots with these tags (comma-separated: all of them; repeat: any of the sets)
    #[arg(long = "tag", value_name = "TAGS")]
    tags: Vec<String>,
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only snapshots that include this path (repeatable: all must be included)
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
}

impl From<FilterArgs> for snapfs::select::Filter {
    fn from(a: FilterArgs) -> Self {
        snapfs::select::Filter { tags: a.tags, hosts: a.hosts, paths: a.paths }
    }
}

/// Every readable snapshot, oldest first, with a warning for each damaged one.
pub fn snapshot_list<S>(repo: &Repository<S>) -> Result<Vec<(Id, Snapshot)>> {
    let (snaps, bad) = repo.snapshots()?;
    for (n, e) in &bad {
        errln!("warning: snapshot {n} is damaged and was left out: {e}");
    }
    Ok(snaps)
}

/// The snapshot a `SNAPSHOT[:PATH]` argument names among `snaps`, and the path.
pub fn pick_spec<'a>(
    snaps: &'a [(Id, Snapshot)],
    spec: &str,
    filter: &select::Filter,
) -> Result<(&'a (Id, Snapshot), Option<PathBuf>)> {
    let (sel, path) = select::parse_spec(spec)?;
    Ok((select::pick(snaps, &sel, filter)?, path))
}

/// The path inside a snapshot given after `:` or as its own argument (restic's form), not both.
pub fn one_path(after_colon: Option<PathBuf>, argument: Option<PathBuf>) -> Result<Option<PathBuf>> {
    match (after_colon, argument) {
        (Some(_), Some(_)) => bail!("give the path either after `:` or as an argument, not both"),
        (None, Some(p)) if !p.is_absolute() => {
            bail!("{}: the path must be absolute, as the snapshot stores it", p.display())
        }
        (p, q) => Ok(p.or(q)),
    }
}

/// Patterns given one per line in files (`#` starts a comment), after those given one by one.
pub fn read_patterns(given: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut patterns = given.to_vec();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read pattern file {}", f.display()))?;
        patterns.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    Ok(patterns)
}

/// Sizes as people read them: 1.5 GiB.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A count with its noun in the right number: `1 file`, `2 files`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `90s`, `10m`, `1h30m`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => bail!("bad duration {s:?}: use e.g. 90s, 10m, 1h30m"),
        };
        let n: u64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() || total == 0 {
        bail!("bad duration {s:?}: use e.g. 90s, 10m, 1h30m");
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap checks names, groups and conflicts only when a command is built: build them all.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
