//! `snapfs completion SHELL` and the man pages: both made from the command-line definition
//! itself (clap_complete, clap_mangen), so they cannot drift from it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

/// Writes the completion script for `shell` to standard output.
pub fn run(shell: clap_complete::Shell) -> Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "snapfs", &mut out);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("write the completion script"),
        _ => Ok(0),
    }
}

/// Writes `snapfs.1` and one `snapfs-COMMAND.1` per command into `dir` (`cargo xtask man`).
pub fn man_pages(dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let cmd = super::Cli::command();
    let mut pages = vec![("snapfs".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("snapfs-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf).with_context(|| format!("render the man page of {name}"))?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(0)
}
