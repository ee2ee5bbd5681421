//! `snapfs repair`.

use anyhow::{Context, Result};

use super::{Global, count, exit};
use snapfs::repo::{LockMode, catchup};

#[derive(clap::Subcommand)]
pub enum Args {
    /// Rebuild the index from the pack headers (after it was lost or damaged)
    Index,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    match a {
        Args::Index => index(g),
    }
}

fn index(g: &Global) -> Result<u8> {
    let repo = super::open_keys(g, LockMode::Reader, "repair index")?;
    let cache = super::cache(g);
    let (index, out) =
        catchup::rebuild(repo.backend().as_ref(), repo.keys(), repo.repo_id(), &cache).context("rebuild the index")?;
    let blobs = index.blob_count()?;
    if !g.quiet {
        let (packs, blobs) = (count(out.packs_added, "pack", "packs"), count(blobs, "blob", "blobs"));
        outln!("rebuilt the index: {packs}, {blobs} ({:.2} s)", out.seconds);
    }
    for (pack, e) in &out.unreadable {
        errln!("warning: pack {pack}: header unreadable ({e})");
    }
    if out.unreadable.is_empty() {
        return Ok(0);
    }
    errln!(
        "{} unreadable headers and were left out; run `snapfs check --read-data` to see what is lost",
        count(out.unreadable.len() as u64, "pack has", "packs have")
    );
    Ok(exit::INCOMPLETE)
}
