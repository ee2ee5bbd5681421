//! `snapfs copy` and `snapfs init --copy-chunker-params`: the source repository's options.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Global, PasswordSource, read_password};
use snapfs::repo::{LockMode, Opened, Repository};
use snapfs::transfer::copy;

/// The repository snapshots or identity come from.
#[derive(clap::Args)]
pub struct FromRepo {
    /// The source repository
    #[arg(long, env = "SNAPFS_FROM_REPOSITORY", value_name = "DIR")]
    from_repo: Option<String>,
    /// Read the source repository's password from the first line of this file
    #[arg(long, env = "SNAPFS_FROM_PASSWORD_FILE", value_name = "FILE")]
    from_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the source repository's password
    #[arg(long, env = "SNAPFS_FROM_PASSWORD_COMMAND", value_name = "CMD", conflicts_with = "from_password_file")]
    from_password_command: Option<String>,
}

impl FromRepo {
    /// Unlocks the source, shared when it can (it may be on read-only media), no index yet.
    fn open(&self) -> Result<Repository<Opened>> {
        let Some(location) = self.from_repo.as_deref() else {
            bail!("no source repository given: use --from-repo DIR")
        };
        let source = PasswordSource {
            command: self.from_password_command.as_deref(),
            file: self.from_password_file.as_deref(),
            env: "SNAPFS_FROM_PASSWORD",
            prompt: "source repository password: ",
            options: "SNAPFS_FROM_PASSWORD, --from-password-file or --from-password-command",
        };
        let pw = read_password(&source, false).context("source repository")?;
        let backend = snapfs::backend::from_location(location)?;
        let repo = Repository::open(backend, pw.as_bytes(), LockMode::Reader, "copy")
            .with_context(|| format!("source repository {location}"))?;
        if let Some(why) = repo.unlocked() {
            errln!("warning: reading the source without a lock: {why}");
        }
        Ok(repo)
    }
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Share the --from-repo repository's chunker and id keys (not its password or data keys),
    /// so that `copy` between the two moves blobs as they are and deduplicates
    #[arg(long, requires = "from_repo")]
    copy_chunker_params: bool,
    #[command(flatten)]
    from: FromRepo,
    #[command(flatten)]
    kdf: super::key::Kdf,
}

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to copy (id prefix or `latest`); all that match the filters when none is given
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[command(flatten)]
    from: FromRepo,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Print a JSON object: what was copied, what was there already, and the blobs moved
    #[arg(long)]
    json: bool,
}

/// `init`, with `--copy-chunker-params` taking the content identity of the source.
pub fn init(g: &Global, a: InitArgs) -> Result<u8> {
    if !a.copy_chunker_params {
        if a.from.from_repo.is_some() {
            bail!("--from-repo with init needs --copy-chunker-params");
        }
        return super::init(g, a.kdf.params()?, |backend, pw, kdf| Ok(Repository::init(backend, pw, kdf)?));
    }
    // Unlocked first, so that a wrong source password leaves nothing behind.
    let source = a.from.open()?;
    super::init(g, a.kdf.params()?, |backend, pw, kdf| Ok(copy::init_sharing(backend, pw, kdf, &source)?))
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // The source first: a wrong password for it must leave the destination untouched.
    let cache = super::cache(g);
    let (src, caught_up) = a.from.open()?.load_index(&cache).context("source repository")?;
    if let Some(line) = caught_up.summary()
        && !g.quiet
    {
        errln!("source {line}");
    }
    let dst = super::open(g, LockMode::Shared, "copy")?;
    let snaps = super::snapshot_list(&src)?;
    let filter: snapfs::select::Filter = a.filter.into();
    let chosen: Vec<_> = if a.snapshots.is_empty() {
        snaps.iter().filter(|(_, s)| filter.matches(s)).cloned().collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            let (pick, path) = super::pick_spec(&snaps, spec, &filter)?;
            if path.is_some() {
                bail!("copy copies whole snapshots, not a path in one");
            }
            v.push(pick.clone());
        }
        v
    };
    let out = copy::copy(&dst, &src, &chosen)?;
    let m = &out.moved;
    if a.json {
        let pairs = |v: &[(snapfs::Id, snapfs::Id)]| -> Vec<serde_json::Value> {
            v.iter().map(|(s, d)| json!({"source": s.hex(), "id": d.hex()})).collect()
        };
        let v = json!({
            "copied": pairs(&out.copied),
            "already_present": pairs(&out.present),
            "same_identity": out.same_identity,
            "blobs_read": m.blobs_read,
            "bytes_read": m.bytes_read,
            "trees_rewritten": m.trees_rewritten,
            "blobs_added": m.added.blobs,
            "bytes_added": m.added.bytes,
        });
        outln!("{v}");
    } else if !g.quiet {
        for (s, d) in &out.present {
            outln!("snapshot {} is already in {} as {}", s.short(), dst.location(), d.short());
        }
        for (s, d) in &out.copied {
            outln!("snapshot {} copied as {}", s.short(), d.short());
        }
        outln!(
            "{} copied, {} already present; {} read, {} added ({})",
            super::count(out.copied.len() as u64, "snapshot", "snapshots"),
            out.present.len(),
            super::count(m.blobs_read, "blob", "blobs"),
            super::count(m.added.blobs, "blob", "blobs"),
            super::human(m.added.bytes)
        );
        if !out.same_identity && m.trees_rewritten > 0 {
            outln!(
                "ids differ between the repositories, so {} were rewritten (init --copy-chunker-params avoids this)",
                super::count(m.trees_rewritten, "tree", "trees")
            );
        }
    }
    Ok(0)
}
