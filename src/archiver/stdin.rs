//! Backup of a stream, standard input or a command's output, as one file in a snapshot at
//! `/NAME` (restic's layout). The stream goes through the chunker as it comes: it is never
//! held whole in memory or in a file. A command that cannot start, or that exits with anything
//! but success, fails the backup, and no snapshot is written (as restic 0.17 does): a dump that
//! broke halfway must not pass for a backup.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::walk::{FileError, Plain};
use super::{BackupOptions, BackupOutcome, Done, commit, walker};
use crate::error::{Error, Result};
use crate::format::tree::{self, Kind, Node, Time};
use crate::repo::Repository;
use crate::repo::packer;
use crate::sys;

/// Where the stream comes from.
pub enum Stream {
    Stdin,
    /// A program and its arguments, run without a shell; its standard output is the stream.
    Command(Vec<OsString>),
}

/// Backs up `stream` as the file `/name` of a new snapshot; `opts.paths` is not used.
pub fn backup_stream(repo: &Repository, opts: &BackupOptions, name: &str, stream: Stream) -> Result<BackupOutcome> {
    let started = Instant::now();
    if !tree::valid_name(name.as_bytes()) {
        return Err(Error::Invalid(format!("{name:?} cannot be a file name (it must be one path component)")));
    }
    let (mut child, shown) = match &stream {
        Stream::Stdin => (None, "standard input".to_string()),
        Stream::Command(argv) => {
            let shown = argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
            let Some((prog, args)) = argv.split_first() else {
                return Err(Error::Invalid("--stdin-from-command needs a command".into()));
            };
            let child = Command::new(prog)
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| Error::io(format!("run {shown:?}"), e))?;
            (Some(child), shown)
        }
    };
    let now = jiff::Timestamp::now();
    let t = Time { sec: now.as_second(), nsec: now.subsec_nanosecond() as u32 };
    let (uid, gid) = (sys::uid(), sys::gid());
    let mut node = Node {
        uid,
        gid,
        user: sys::user_name(uid),
        group: sys::group_name(gid),
        ..Node::made_up(name.as_bytes(), Kind::File, 0o644, t)
    };
    let walked = packer::with_packer(repo, opts.dry_run, |packer| {
        let w = walker(repo, packer, opts);
        let read = match child.as_mut().and_then(|c| c.stdout.take()) {
            Some(out) => w.content(&mut Plain(out), &mut node),
            None => w.content(&mut Plain(std::io::stdin().lock()), &mut node),
        };
        let read = match read {
            Ok(n) => n,
            Err(e) => {
                if let Some(c) = child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(match e {
                    FileError::Source(e) => Error::io(format!("read {shown}"), e),
                    FileError::Repo(e) => e,
                });
            }
        };
        // Whether the stream is whole is known only once it ends: before the snapshot.
        if let Some(c) = child.as_mut() {
            let status = c.wait().map_err(|e| Error::io(format!("wait for {shown:?}"), e))?;
            if !status.success() {
                return Err(Error::StreamFailed { command: shown.clone(), status: status.to_string() });
            }
        }
        node.size = read;
        let c = &opts.progress;
        c.files_new.fetch_add(1, Relaxed);
        c.total_files.fetch_add(1, Relaxed);
        c.total_bytes.fetch_add(read, Relaxed);
        w.store_tree(vec![node])
    });
    let (root_tree, added) = walked?;
    let hostname = opts.host.clone().unwrap_or_else(sys::hostname);
    let paths = vec![format!("/{name}")];
    let dropped_paths = Vec::new();
    commit(
        repo,
        opts,
        Done { started, hostname, paths, parent: None, root_tree, warnings: Vec::new(), added, dropped_paths },
    )
}
