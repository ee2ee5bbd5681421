//! `snapfs repair`.

use anyhow::{Context, Result};

use super::{Global, exit};
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
        println!("rebuilt the index: {} packs, {blobs} blobs ({:.2} s)", out.packs_added, out.seconds);
    }
    for (pack, e) in &out.unreadable {
        eprintln!("warning: pack {pack}: header unreadable ({e})");
    }
    if out.unreadable.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "{} pack{} have unreadable headers and were left out; run `snapfs check --read-data` to see what is lost",
        out.unreadable.len(),
        if out.unreadable.len() == 1 { "" } else { "s" }
    );
    Ok(exit::INCOMPLETE)
}
