//! `cargo xtask fuzz`: the cargo-fuzz targets in `xtask/fuzz/`, one after the other, each for a
//! bounded time with one job (the machine is shared), on nightly. A crash stops the run with
//! libFuzzer's report; its input is left in `xtask/fuzz/artifacts/<target>/` to become a
//! regression test.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Every decoder of on-disk data, as named in `xtask/fuzz/Cargo.toml`.
pub const TARGETS: [&str; 11] = [
    "envelope",
    "pack_header",
    "tree",
    "snapshot",
    "config",
    "key_slot",
    "lock",
    "index_values",
    "bundle",
    "condemned",
    "cache_index",
];

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 30u64;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().context("--seconds needs a value")?.parse().context("--seconds")?,
            "--target" => only.push(it.next().context("--target needs a name")?.clone()),
            other => bail!("unexpected argument {other:?} (fuzz takes --seconds S and --target T)"),
        }
    }
    for t in &only {
        if !TARGETS.contains(&t.as_str()) {
            bail!("no fuzz target {t:?}; the targets: {}", TARGETS.join(", "));
        }
    }
    let targets: Vec<&str> = if only.is_empty() { TARGETS.to_vec() } else { only.iter().map(String::as_str).collect() };
    let dir = super::workspace_root().join("xtask/fuzz");
    let target_dir = super::target_dir()?.join("fuzz");
    let mut summary = Vec::new();
    for t in targets {
        let corpus = dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
        let started = Instant::now();
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&dir)
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", "--debug-assertions", "--target-dir"])
            .arg(&target_dir)
            .arg(t)
            .arg(&corpus)
            .args(["--", "-workers=1", "-rss_limit_mb=2048", "-timeout=10"])
            .arg(format!("-max_total_time={seconds}"));
        eprintln!("==> fuzz {t} for {seconds} s");
        super::run(&mut cmd)
            .with_context(|| format!("fuzz target {t} failed; see {}", artifacts(&dir, t).display()))?;
        let inputs = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        summary.push(format!("{t}: {} s, 0 crashes, corpus {inputs} inputs", started.elapsed().as_secs()));
    }
    for line in summary {
        eprintln!("{line}");
    }
    Ok(())
}

fn artifacts(dir: &Path, t: &str) -> std::path::PathBuf {
    dir.join("artifacts").join(t)
}
