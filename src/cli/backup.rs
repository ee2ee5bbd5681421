//! `snapfs backup`.

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::interrupt::Interrupt;
use super::{Global, count, exit, human, progress, read_patterns};
use snapfs::archiver::progress::Progress;
use snapfs::archiver::select::{CACHEDIR_TAG, ListFormat, Selection, files_from, parse_size};
use snapfs::archiver::{BackupOptions, Stream, backup, backup_stream};
use snapfs::patterns::Patterns;
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up (with --stdin-from-command: the command and its arguments)
    #[arg(
        required_unless_present_any = ["stdin", "files_from", "files_from_verbatim", "files_from_raw"],
        value_name = "PATH"
    )]
    paths: Vec<PathBuf>,
    /// Read paths to back up from a file, one a line (# starts a comment, globs are expanded;
    /// repeatable)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["stdin", "stdin_from_command"])]
    files_from: Vec<PathBuf>,
    /// Read paths to back up from a file, one a line, exactly as written (repeatable)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["stdin", "stdin_from_command"])]
    files_from_verbatim: Vec<PathBuf>,
    /// Read paths to back up from a file, separated by NUL bytes, as `find -print0` writes
    /// them (repeatable)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["stdin", "stdin_from_command"])]
    files_from_raw: Vec<PathBuf>,
    /// Back up standard input as one file, /NAME in the snapshot (see --stdin-filename)
    #[arg(long, conflicts_with_all = ["paths", "stdin_from_command"])]
    stdin: bool,
    /// Back up the standard output of the command given after `--` as one file; if the command
    /// fails (exits non-zero), no snapshot is saved
    #[arg(long)]
    stdin_from_command: bool,
    /// The file name for --stdin and --stdin-from-command
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    stdin_filename: String,
    /// Tag the snapshot (repeat, or separate with commas)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Record this host name instead of this machine's
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// A free-form description stored with the snapshot
    #[arg(long)]
    description: Option<String>,
    /// Leave out entries that match this pattern (repeatable; `/x` from the root, `a/b` at any
    /// depth, `*.log` by name, `!` re-includes)
    #[arg(short, long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// As --exclude, ignoring case
    #[arg(long = "iexclude", value_name = "PATTERN")]
    iexcludes: Vec<String>,
    /// Read exclude patterns from a file, one per line (# starts a comment)
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Read patterns for --iexclude from a file
    #[arg(long = "iexclude-file", value_name = "FILE")]
    iexclude_files: Vec<PathBuf>,
    /// Leave out directories holding a CACHEDIR.TAG with the standard signature
    #[arg(long)]
    exclude_caches: bool,
    /// Leave out directories holding a file of this name (that starts with HEADER, if given;
    /// repeatable)
    #[arg(long, value_name = "NAME[:HEADER]")]
    exclude_if_present: Vec<String>,
    /// Leave out what the .gitignore files inside the backed-up directories ignore (git's rules;
    /// the .gitignore files themselves are kept)
    #[arg(long)]
    git_ignore: bool,
    /// Leave out files larger than this (e.g. 500k, 20M, 2G)
    #[arg(long, value_name = "SIZE")]
    exclude_larger_than: Option<String>,
    /// Do not cross into other filesystems
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Read and count everything, but write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Read every file, even those the previous snapshot shows unchanged
    #[arg(short, long, conflicts_with = "parent")]
    force: bool,
    /// Compare with this snapshot (id prefix or `latest`) instead of the newest one of this host
    /// and these paths
    #[arg(long, value_name = "SNAPSHOT")]
    parent: Option<String>,
    /// Detect changed files without the inode number and ctime (for filesystems where they
    /// change by themselves, like some network mounts)
    #[arg(long)]
    ignore_inode: bool,
    /// Detect changed files without ctime
    #[arg(long)]
    ignore_ctime: bool,
    /// Also store access times (off by default: they change on every read)
    #[arg(long)]
    with_atime: bool,
    /// Record this time instead of now (RFC 3339, or local YYYY-MM-DD[ HH:MM[:SS]])
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Print JSON lines: status every second, then a summary (`message_type` tells them apart)
    #[arg(long)]
    json: bool,
    /// Skip the quick pre-scan that gives the progress display its totals and ETA
    #[arg(long)]
    no_scan: bool,
    /// How hard to compress new data: auto (the repository's level), off, max, or a zstd
    /// level 1-22
    #[arg(long, value_name = "auto|off|max|LEVEL", value_parser = parse_compression)]
    compression: Option<Compression>,
}

#[derive(Clone, Copy)]
enum Compression {
    Auto,
    Level(u8),
}

fn parse_compression(s: &str) -> Result<Compression> {
    Ok(match s {
        "auto" => Compression::Auto,
        "off" => Compression::Level(0),
        // zstd's levels above 19 need far more memory to decompress, for little gain.
        "max" => Compression::Level(19),
        n => match n.parse::<u8>() {
            Ok(l @ 1..=22) => Compression::Level(l),
            _ => bail!("use auto, off, max or a level from 1 to 22"),
        },
    })
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let excludes = Patterns::new(
        &read_patterns(&a.excludes, &a.exclude_files)?,
        &read_patterns(&a.iexcludes, &a.iexclude_files)?,
    )?;
    let time_ns = match &a.time {
        Some(t) => Some(timespec::parse_at(t)?.as_nanosecond() as i64),
        None => None,
    };
    let mut select = Selection {
        if_present: a.exclude_if_present.iter().map(|s| Selection::if_present_arg(s)).collect::<Result<_, _>>()?,
        larger_than: a.exclude_larger_than.as_deref().map(parse_size).transpose()?,
        git_ignore: a.git_ignore,
    };
    if a.exclude_caches {
        select.if_present.push((CACHEDIR_TAG.0.into(), Some(CACHEDIR_TAG.1.to_vec())));
    }
    let mut paths = a.paths.clone();
    for (files, format) in [
        (&a.files_from, ListFormat::Patterns),
        (&a.files_from_verbatim, ListFormat::Verbatim),
        (&a.files_from_raw, ListFormat::Raw),
    ] {
        for f in files {
            let text = std::fs::read(f).with_context(|| format!("read the list of paths {}", f.display()))?;
            paths.extend(files_from(&text, format).with_context(|| format!("in {}", f.display()))?);
        }
    }
    if paths.is_empty() && !a.stdin {
        bail!("no paths to back up: the lists given are empty");
    }
    let opts = BackupOptions {
        paths,
        tags: a.tags.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(String::from).collect(),
        host: a.host.clone(),
        description: a.description.clone().unwrap_or_default(),
        excludes,
        select,
        one_file_system: a.one_file_system,
        dry_run: a.dry_run,
        force: a.force,
        parent: None,
        ignore_inode: a.ignore_inode,
        ignore_ctime: a.ignore_ctime,
        with_atime: a.with_atime,
        time_ns,
        progress: Default::default(),
        interrupt: Default::default(),
    };
    let stream = if a.stdin {
        Some(Stream::Stdin)
    } else if a.stdin_from_command {
        Some(Stream::Command(a.paths.iter().map(|p| p.clone().into_os_string()).collect()))
    } else {
        // Fail on a missing path before asking for the password.
        snapfs::archiver::normalize_paths(&opts.paths)?;
        None
    };
    let interrupt = Interrupt::catch()?;
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "backup")?;
    let repo = match a.compression {
        Some(Compression::Level(l)) => repo.with_zstd_level(l),
        Some(Compression::Auto) | None => repo,
    };
    interrupt.arm();
    let opts = BackupOptions {
        parent: match &a.parent {
            Some(name) => {
                let (snaps, _) = repo.snapshots()?;
                let sel = snapfs::select::parse_spec(name)?.0;
                Some(snapfs::select::pick(&snaps, &sel, &Default::default())?.0)
            }
            None => None,
        },
        interrupt: interrupt.flag(),
        ..opts
    };
    let mode = progress::Mode::choose(g.quiet, a.json);
    let bars = std::sync::Arc::new(progress::Bars::new(mode != progress::Mode::Terminal));
    let counters = Progress { each: progress::backup_listing(g.verbose, a.json, &bars), ..Default::default() };
    let opts = BackupOptions { progress: counters.into(), ..opts };
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        if mode != progress::Mode::Off && !a.no_scan && stream.is_none() {
            let (paths, _) = snapfs::archiver::normalize_paths(&opts.paths)?;
            let (excludes, select, counters) = (&opts.excludes, &opts.select, &opts.progress);
            s.spawn(move || snapfs::archiver::progress::prescan(&paths, excludes, select, counters));
        }
        s.spawn(|| progress::report(&opts.progress, mode, &bars, &done));
        let out = match stream {
            Some(stream) => backup_stream(&repo, &opts, &a.stdin_filename, stream),
            None => backup(&repo, &opts),
        };
        done.store(true, Ordering::Relaxed);
        opts.progress.stop.store(true, Ordering::Relaxed);
        out
    });
    let out = match out {
        Err(snapfs::Error::Interrupted) => {
            errln!("snapfs: interrupted: no snapshot was saved; the data stored so far is reused by the next backup");
            return Ok(exit::INTERRUPTED);
        }
        out => out?,
    };
    for p in &out.dropped_paths {
        errln!("warning: {} is given twice or inside another given path; backed up once", p.display());
    }
    for w in &out.warnings {
        errln!("warning: {w}");
    }
    let s = &out.summary;
    if a.json {
        let mut obj = serde_json::Map::new();
        obj.insert("message_type".into(), json!("summary"));
        obj.insert("snapshot_id".into(), json!(out.snapshot.map(|id| id.hex())));
        obj.insert("parent".into(), json!(out.parent.map(|id| id.hex())));
        obj.insert("dry_run".into(), json!(a.dry_run));
        for (k, v) in s.named() {
            obj.insert(k.into(), json!(v));
        }
        outln!("{}", serde_json::Value::Object(obj));
    } else if !g.quiet {
        if let Some(p) = out.parent {
            outln!("using parent snapshot {}", p.short());
        }
        outln!("files: {} new, {} changed, {} unchanged", s.files_new, s.files_changed, s.files_unchanged);
        outln!("dirs:  {} new, {} changed, {} unchanged", s.dirs_new, s.dirs_changed, s.dirs_unchanged);
        let verb = if a.dry_run { "would add" } else { "added" };
        outln!(
            "read {}, {verb} {} to the repository ({}), {} / {} in the snapshot, {:.2} s",
            human(s.bytes_read),
            human(s.bytes_added),
            count(s.data_blobs_added, "new data blob", "new data blobs"),
            count(s.total_files, "file", "files"),
            human(s.total_bytes),
            s.duration_ns as f64 / 1e9
        );
        match out.snapshot {
            Some(id) => outln!("snapshot {id} saved"),
            None => outln!("dry run: {} would be added to the repository; nothing was written", human(s.bytes_added)),
        }
    }
    let left_out = out.warnings.iter().filter(|w| !w.in_snapshot).count() as u64;
    let incomplete = out.warnings.len() as u64 - left_out;
    let saved = if a.dry_run { "the snapshot would be saved" } else { "the snapshot was saved" };
    if left_out > 0 {
        let n = count(left_out, "entry", "entries");
        errln!("snapfs: {n} could not be read; {saved} without {}", if left_out == 1 { "it" } else { "them" });
    }
    if incomplete > 0 {
        let n = count(incomplete, "entry is", "entries are");
        errln!("snapfs: {n} in the snapshot as far as they could be read (see the warnings above)");
    }
    Ok(if out.warnings.is_empty() { 0 } else { exit::INCOMPLETE })
}
