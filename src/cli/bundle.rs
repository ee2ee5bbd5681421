//! `snapfs export` and `snapfs import`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Global, PasswordSource, read_password};
use snapfs::crypto::keyfile::KdfParams;
use snapfs::repo::LockMode;
use snapfs::transfer::bundle;

/// The bundle's own password: it protects the bundle's key, not any repository's.
#[derive(clap::Args)]
pub struct BundlePassword {
    /// Read the bundle password from the first line of this file
    #[arg(long, env = "SNAPFS_BUNDLE_PASSWORD_FILE", value_name = "FILE")]
    bundle_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the bundle password
    #[arg(long, env = "SNAPFS_BUNDLE_PASSWORD_COMMAND", value_name = "CMD", conflicts_with = "bundle_password_file")]
    bundle_password_command: Option<String>,
}

impl BundlePassword {
    fn read(&self, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
        let source = PasswordSource {
            command: self.bundle_password_command.as_deref(),
            file: self.bundle_password_file.as_deref(),
            env: "SNAPFS_BUNDLE_PASSWORD",
            prompt: "bundle password: ",
            options: "SNAPFS_BUNDLE_PASSWORD, --bundle-password-file or --bundle-password-command",
        };
        read_password(&source, confirm).context("bundle password")
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Snapshots to export (id prefix or `latest`)
    #[arg(value_name = "SNAPSHOT", required = true)]
    snapshots: Vec<String>,
    /// The bundle file to create
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Write one snapshot as a tar archive instead, as `dump SNAPSHOT --archive tar` does
    #[arg(long)]
    tar: bool,
    #[command(flatten)]
    password: BundlePassword,
    #[command(flatten)]
    filter: super::FilterArgs,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The bundle file `snapfs export` wrote (with --tar: a tar archive, `-` for standard input)
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Make a snapshot from a tar archive instead (borg's import-tar)
    #[arg(long)]
    tar: bool,
    /// With --tar: the absolute path the archive's root becomes in the snapshot
    #[arg(long, value_name = "PATH", default_value = "/", requires = "tar")]
    path: String,
    /// With --tar: the snapshot's time instead of now (e.g. 2026-11-30T12:00:00Z)
    #[arg(long, value_name = "TIME", requires = "tar")]
    time: Option<String>,
    /// With --tar: tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG", requires = "tar")]
    tags: Vec<String>,
    /// With --tar: the snapshot's host name instead of this one's
    #[arg(long, value_name = "HOST", requires = "tar")]
    host: Option<String>,
    #[command(flatten)]
    password: BundlePassword,
    /// Print a JSON object: what was imported, what was there already, and the blobs moved
    #[arg(long)]
    json: bool,
}

pub fn export(g: &Global, a: ExportArgs) -> Result<u8> {
    if a.output.exists() {
        bail!("{} exists; refusing to overwrite it", a.output.display());
    }
    if a.tar {
        let [spec] =
            <[String; 1]>::try_from(a.snapshots).map_err(|_| anyhow::anyhow!("export --tar takes one snapshot"))?;
        return super::dump::tar_of(g, spec, a.output, a.filter);
    }
    let pw = a.password.read(true)?;
    let repo = super::open(g, LockMode::Reader, "export")?;
    let snaps = super::snapshot_list(&repo)?;
    let filter: snapfs::select::Filter = a.filter.into();
    let mut chosen: Vec<(snapfs::Id, snapfs::format::snapshot::Snapshot)> = Vec::new();
    for spec in &a.snapshots {
        let (pick, path) = super::pick_spec(&snaps, spec, &filter)?;
        if path.is_some() {
            bail!("export takes whole snapshots, not a path in one");
        }
        if !chosen.iter().any(|(id, _)| id == &pick.0) {
            chosen.push(pick.clone());
        }
    }
    let done = bundle::export(&repo, &chosen, &a.output, pw.as_bytes(), KdfParams::DEFAULT)?;
    if !g.quiet {
        outln!(
            "exported {} ({}, {}) to {}",
            super::count(done.snapshots.len() as u64, "snapshot", "snapshots"),
            super::count(done.blobs, "blob", "blobs"),
            super::human(done.bytes),
            a.output.display()
        );
    }
    Ok(0)
}

pub fn import(g: &Global, a: ImportArgs) -> Result<u8> {
    if a.tar {
        return import_tar(g, a);
    }
    let pw = a.password.read(false)?;
    // The whole bundle is checked for its layout before the repository is touched.
    let b = bundle::Bundle::open(&a.file, pw.as_bytes())?;
    let repo = super::open(g, LockMode::Shared, "import")?;
    let out = bundle::import(&repo, &b)?;
    let m = &out.moved;
    if a.json {
        let pairs = |v: &[(snapfs::Id, snapfs::Id)]| -> Vec<serde_json::Value> {
            v.iter().map(|(s, d)| json!({"source": s.hex(), "id": d.hex()})).collect()
        };
        outln!(
            "{}",
            json!({
                "imported": pairs(&out.copied),
                "already_present": pairs(&out.present),
                "blobs_read": m.blobs_read,
                "trees_rewritten": m.trees_rewritten,
                "blobs_added": m.added.blobs,
                "bytes_added": m.added.bytes,
            })
        );
    } else if !g.quiet {
        outln!(
            "{} imported, {} already present; {} added ({})",
            super::count(out.copied.len() as u64, "snapshot", "snapshots"),
            out.present.len(),
            super::count(m.added.blobs, "blob", "blobs"),
            super::human(m.added.bytes)
        );
    }
    Ok(0)
}

fn import_tar(g: &Global, a: ImportArgs) -> Result<u8> {
    let time_ns = match &a.time {
        Some(t) => Some(snapfs::timespec::parse_at(t)?.as_nanosecond() as i64),
        None => None,
    };
    let opts = snapfs::tarimport::TarOptions {
        path: a.path,
        time_ns,
        hostname: a.host.unwrap_or_else(snapfs::sys::hostname),
        tags: a.tags.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(String::from).collect(),
    };
    let repo = super::open(g, LockMode::Shared, "import")?;
    let done = if a.file.as_os_str() == "-" {
        snapfs::tarimport::import_tar(&repo, std::io::stdin().lock(), &opts)
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file.display()))?;
        snapfs::tarimport::import_tar(&repo, std::io::BufReader::new(f), &opts)
    }
    .with_context(|| format!("import {}", a.file.display()))?;
    if !g.quiet {
        outln!(
            "snapshot {} saved: {} ({}) from {}",
            done.snapshot.short(),
            super::count(done.summary.total_files, "file", "files"),
            super::human(done.summary.total_bytes),
            a.file.display()
        );
    }
    Ok(0)
}
