//! `snapfs key …`: key slots (passwords) and key epochs; and the KDF options of `init`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Global, PasswordSource, human, open_keys, read_password};
use snapfs::crypto::keyfile::KdfParams;
use snapfs::prune::{CopyProgress, PruneOptions};
use snapfs::repo::LockMode;
use snapfs::repo::keys::SlotOwner;

/// Argon2id cost of a new key slot.
#[derive(clap::Args, Clone)]
pub struct Kdf {
    /// Memory per password check (e.g. 64M, 256M, 1G; at least 64M)
    #[arg(long, value_name = "SIZE")]
    kdf_memory: Option<String>,
    /// Passes over that memory (at least 3)
    #[arg(long, value_name = "N")]
    kdf_time: Option<u32>,
    /// Lanes
    #[arg(long, value_name = "N")]
    kdf_parallelism: Option<u32>,
}

impl Kdf {
    /// The parameters asked for; the library refuses those below the floor.
    pub fn params(&self) -> Result<KdfParams> {
        let d = KdfParams::DEFAULT;
        let m_kib = match &self.kdf_memory {
            Some(s) => {
                let kib = super::prune::size(s)? / 1024;
                u32::try_from(kib).ok().with_context(|| format!("--kdf-memory {s}: too large"))?
            }
            None => d.m_kib,
        };
        Ok(KdfParams { m_kib, t: self.kdf_time.unwrap_or(d.t), p: self.kdf_parallelism.unwrap_or(d.p) })
    }
}

/// Where a new password comes from.
#[derive(clap::Args)]
pub struct NewPassword {
    /// Read the new password from the first line of this file
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the new password
    #[arg(long, value_name = "CMD", conflicts_with = "new_password_file")]
    new_password_command: Option<String>,
    #[command(flatten)]
    kdf: Kdf,
}

impl NewPassword {
    fn read(&self) -> Result<zeroize::Zeroizing<String>> {
        let source = PasswordSource {
            command: self.new_password_command.as_deref(),
            file: self.new_password_file.as_deref(),
            env: "SNAPFS_NEW_PASSWORD",
            prompt: "new password: ",
            options: "SNAPFS_NEW_PASSWORD, --new-password-file or --new-password-command, or run on a terminal",
        };
        read_password(&source, true)
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the key slots (each opens the repository with its own password) and key epochs
    List {
        /// Print a JSON array of slots
        #[arg(long)]
        json: bool,
    },
    /// Add a password
    Add {
        #[command(flatten)]
        new: NewPassword,
        /// The host the slot says it belongs to [default: this one]
        #[arg(long)]
        host: Option<String>,
        /// The user the slot says it belongs to [default: this one]
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove a password's key slot
    Remove {
        /// The slot's id, or a unique prefix of it
        id: String,
        /// Also remove the slot the given password opened
        #[arg(long)]
        force: bool,
    },
    /// Change the password: a new slot replaces the one in use
    Passwd {
        #[command(flatten)]
        new: NewPassword,
    },
    /// Start a new data-key epoch: everything written from now on is sealed under new keys
    Rotate {
        /// Then re-seal every existing object under it and destroy the old epochs' keys
        #[arg(long)]
        rewrite: bool,
        /// Print a JSON summary
        #[arg(long)]
        json: bool,
    },
}

fn time(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "?".into())
}

pub fn run(g: &Global, cmd: Command) -> Result<u8> {
    match cmd {
        Command::List { json } => list(g, json),
        Command::Add { new, host, user } => {
            let repo = open_keys(g, LockMode::Shared, "key add")?;
            let pw = new.read()?;
            let here = SlotOwner::here();
            let owner = SlotOwner { hostname: host.unwrap_or(here.hostname), username: user.unwrap_or(here.username) };
            let id = repo.add_key(pw.as_bytes(), new.kdf.params()?, &owner).context("add key slot")?;
            if !g.quiet {
                outln!("added key slot {id}");
            }
            Ok(0)
        }
        Command::Remove { id, force } => {
            let repo = open_keys(g, LockMode::Shared, "key remove")?;
            let removed = repo.remove_key(&id, force)?;
            if !g.quiet {
                outln!("removed key slot {removed}");
            }
            Ok(0)
        }
        Command::Passwd { new } => {
            let repo = open_keys(g, LockMode::Shared, "key passwd")?;
            let pw = new.read()?;
            let (added, removed) = repo
                .change_password(pw.as_bytes(), new.kdf.params()?, &SlotOwner::here())
                .context("change password")?;
            if !g.quiet {
                outln!("password changed: key slot {added} replaces {removed}");
            }
            Ok(0)
        }
        Command::Rotate { rewrite, json } => rotate(g, rewrite, json),
    }
}

fn list(g: &Global, as_json: bool) -> Result<u8> {
    let repo = open_keys(g, LockMode::Reader, "key list")?;
    let slots = repo.key_slots()?;
    if as_json {
        let v: Vec<_> = slots
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "current": s.current,
                    "created": jiff::Timestamp::from_nanosecond(i128::from(s.created_ns)).ok().map(|t| t.to_string()),
                    "host": s.hostname,
                    "username": s.username,
                    "kdf": s.kdf.map(|k| json!({"algorithm": "argon2id", "memory_kib": k.m_kib, "time": k.t, "parallelism": k.p})),
                    "damaged": s.damaged,
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(v));
        return Ok(0);
    }
    outln!(" {:<16}  {:<23}  {:<16}  {:<12}  KDF", "ID", "CREATED", "HOST", "USER");
    for s in &slots {
        let mark = if s.current { '*' } else { ' ' };
        match (&s.damaged, s.kdf) {
            (Some(why), _) => outln!("{mark}{:<16}  damaged: {why}", s.id),
            (None, Some(k)) => outln!(
                "{mark}{:<16}  {:<23}  {:<16}  {:<12}  argon2id m={} t={} p={}",
                s.id,
                time(s.created_ns),
                s.hostname,
                s.username,
                human(u64::from(k.m_kib) * 1024),
                k.t,
                k.p
            ),
            (None, None) => {}
        }
    }
    let epochs = repo.key_epochs()?;
    let list: Vec<String> = epochs
        .iter()
        .map(|e| {
            let created = e.created_ns.map(time).unwrap_or_else(|| "?".into());
            format!("{}{} ({created})", e.number, if e.current { " current" } else { "" })
        })
        .collect();
    outln!("key epochs: {}", list.join(", "));
    Ok(0)
}

fn rotate(g: &Global, rewrite: bool, as_json: bool) -> Result<u8> {
    // A prune lock: backups and mounts go on; another prune or rotation waits.
    let repo = super::open_cached(g, LockMode::Prune, "key rotate", &super::cache(g).streaming())?;
    let (epoch, resume) = if rewrite { snapfs::rekey::target_epoch(&repo)? } else { (repo.rotate_epoch()?, false) };
    if !rewrite {
        if as_json {
            outln!("{}", json!({"epoch": epoch, "rewritten": false}));
        } else if !g.quiet {
            outln!("key epoch {epoch} created: new data is sealed under it; old data stays under the old keys");
            outln!("run `snapfs key rotate --rewrite` to re-seal it all and destroy the old keys");
        }
        return Ok(0);
    }
    if resume && !g.quiet && !as_json {
        errln!("carrying on the rotation to key epoch {epoch}");
    }
    let progress = Arc::new(CopyProgress::default());
    let opts = PruneOptions { progress: Some(progress.clone()), ..PruneOptions::default() };
    let done = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        if !g.quiet && !as_json {
            s.spawn(|| super::progress::report_copy("re-sealed", &progress, &done));
        }
        let r = snapfs::rekey::rewrite(&repo, &opts);
        done.store(true, Relaxed);
        r
    })?;
    if as_json {
        let v = json!({
            "epoch": out.epoch,
            "rewritten": true,
            "finished": out.finished(),
            "retired_epochs": out.retired,
            "old_packs": out.old_packs,
            "blobs_resealed": out.prune.copied_blobs,
            "bytes_written": out.prune.copied_bytes,
            "packs_deleted": out.prune.deleted_packs,
            "snapshots_resealed": out.snapshots_resealed,
            "waiting": out.waiting,
        });
        outln!("{v}");
    } else if !g.quiet {
        outln!(
            "re-sealed {} blobs ({}) out of {} packs and {} snapshots under key epoch {}",
            out.prune.copied_blobs,
            human(out.prune.copied_bytes),
            out.old_packs,
            out.snapshots_resealed,
            out.epoch
        );
        if out.finished() {
            let retired: Vec<String> = out.retired.iter().map(u32::to_string).collect();
            outln!(
                "destroyed the keys of epoch(s) {}",
                if retired.is_empty() { "-".into() } else { retired.join(", ") }
            );
        }
    }
    if !out.finished() {
        for w in &out.waiting {
            errln!("old keys kept: {w}");
        }
        errln!("run `snapfs key rotate --rewrite` again once they are done");
        return Ok(super::exit::INCOMPLETE);
    }
    Ok(0)
}
