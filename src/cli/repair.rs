//! `snapfs repair`.

use anyhow::{Context, Result};

use super::{Global, exit};
use snapfs::repo::Repository;
use snapfs::repo::packs::rebuild_index;

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
    let (repo, _lock) = super::open_with(g, true, "repair index", Repository::open_without_index)?;
    let out = rebuild_index(&repo).context("rebuild the index")?;
    if let Some(e) = &out.old_index
        && !g.quiet
    {
        println!("old index not usable ({e}); rebuilding from the packs alone");
    }
    if !g.quiet {
        println!("rebuilt the index: {} packs, {} blobs", out.packs, out.blobs);
    }
    for (pack, e) in &out.bad_headers {
        eprintln!("warning: pack {pack}: header unreadable ({e})");
    }
    if out.bad_headers.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "{} packs have unreadable headers; {} of their blobs were kept from the old index after reading \
         back intact. Run `snapfs check --read-data` to see what is lost.",
        out.bad_headers.len(),
        out.kept_from_old
    );
    Ok(exit::INCOMPLETE)
}
