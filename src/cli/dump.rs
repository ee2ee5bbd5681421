//! `snapfs dump`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Global;
use snapfs::dump::{Archive, dump};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id prefix or `latest`, followed by `:/path/inside` (the whole snapshot without it)
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    snapshot: String,
    /// The path inside the snapshot (instead of `:PATH`)
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// Write an archive of this format; the default for anything but a regular file is tar
    #[arg(short, long, value_enum, value_name = "FORMAT")]
    archive: Option<ArchiveArg>,
    /// Write to this file instead of standard output
    #[arg(short, long, visible_alias = "target", value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ArchiveArg {
    Tar,
    Zip,
}

/// `export --tar`: the whole snapshot as a tar into a file.
pub fn tar_of(g: &Global, snapshot: String, output: PathBuf, filter: super::FilterArgs) -> Result<u8> {
    run(g, Args { snapshot, path: None, archive: Some(ArchiveArg::Tar), output: Some(output), filter })
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let repo = super::open(g, snapfs::repo::LockMode::Reader, "dump")?;
    let snaps = super::snapshot_list(&repo)?;
    let ((_, snap), spec_path) = super::pick_spec(&snaps, &a.snapshot, &a.filter.into())?;
    let path = super::one_path(spec_path, a.path)?.unwrap_or_else(|| PathBuf::from("/"));
    let archive = a.archive.map(|f| match f {
        ArchiveArg::Tar => Archive::Tar,
        ArchiveArg::Zip => Archive::Zip,
    });
    let outcome = match &a.output {
        Some(file) => {
            let f = std::fs::File::create(file).with_context(|| format!("create {}", file.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let done = dump(&repo, snap.tree, &path, archive, &mut w)
                .and_then(|o| w.flush().map(|_| o).map_err(|e| snapfs::Error::io(file.display().to_string(), e)));
            if done.is_err() {
                // A partial archive must not pass for a whole one.
                let _ = std::fs::remove_file(file);
            }
            done?
        }
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            match dump(&repo, snap.tree, &path, archive, &mut w)
                .and_then(|o| w.flush().map(|_| o).map_err(|e| snapfs::Error::io("standard output", e)))
            {
                // The reader has what it wanted (`| head -c 10`).
                Err(snapfs::Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                r => r?,
            }
        }
    };
    for l in &outcome.left_out {
        errln!("warning: {l}; left out of the archive");
    }
    Ok(if outcome.left_out.is_empty() { 0 } else { super::exit::INCOMPLETE })
}
