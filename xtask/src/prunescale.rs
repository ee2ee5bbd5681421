//! `cargo xtask bench --prune-scale`: prune's peak memory as the number of blobs grows. For
//! each size, a tree of that many small files (one blob each) is backed up, half of the files
//! are deleted and the tree backed up again, then the first snapshot is forgotten and pruned;
//! snapfs against restic on the same trees, the tools alternating, medians. Writes
//! `benches/results/prune-scale.md`.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, anyhow};

use crate::bench::{Sample, cache_dir, exec, machine, median};

const PER_DIR: usize = 500;

fn make_tree(data: &Path, files: usize) -> Result<()> {
    for i in 0..files {
        let dir = data.join(format!("d{:05}", i / PER_DIR));
        if i % PER_DIR == 0 {
            fs::create_dir_all(&dir)?;
        }
        // Unique content, so every file is a blob of its own.
        fs::write(dir.join(format!("f{i:07}")), format!("file {i} of the prune scale bench\n").repeat(1 + i % 4))?;
    }
    Ok(())
}

fn halve(data: &Path, files: usize) -> Result<()> {
    for i in (0..files).step_by(2) {
        fs::remove_file(data.join(format!("d{:05}/f{i:07}", i / PER_DIR)))?;
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    crate::bench::check_flags(args, &["--prune-scale"], &["--rounds", "--files"])?;
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args.get(i + 1));
    let rounds: usize = match value("--rounds") {
        Some(v) => v.ok_or_else(|| anyhow!("--rounds needs a number"))?.parse()?,
        None => 3,
    };
    let sizes: Vec<usize> = match value("--files") {
        Some(v) => {
            v.ok_or_else(|| anyhow!("--files needs a list"))?.split(',').map(str::parse).collect::<Result<_, _>>()?
        }
        None => vec![100_000, 200_000, 400_000],
    };
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let snapfs = target.join("release/snapfs").display().to_string();
    let work = target.join("bench-prune-scale");
    let tools = ["snapfs", "restic"];
    let cmd = |t: &str, repo: &Path, args: &[&str]| -> Vec<String> {
        let (bin, flag) = if t == "snapfs" { (snapfs.as_str(), "--repo") } else { ("restic", "-r") };
        let mut v = vec![bin.to_string(), "-q".into(), flag.into(), repo.display().to_string()];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    let mut rows = String::new();
    for &n in &sizes {
        let _ = fs::remove_dir_all(&work);
        let data = work.join("data");
        fs::create_dir_all(&data)?;
        println!("{n} files");
        make_tree(&data, n)?;
        let _ = fs::remove_dir_all(cache_dir());
        let d = data.display().to_string();
        for t in tools {
            let repo = work.join(format!("repo-{t}"));
            exec(&cmd(t, &repo, &["init"]), &work)?;
            exec(&cmd(t, &repo, &["backup", &d]), &work)?;
        }
        halve(&data, n)?;
        for t in tools {
            exec(&cmd(t, &work.join(format!("repo-{t}")), &["backup", &d]), &work)?;
        }
        let cache_saved = work.join("cache-saved");
        crate::run(Command::new("cp").arg("-a").arg(cache_dir()).arg(&cache_saved))?;
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); tools.len()];
        for round in 0..rounds {
            for i in (0..tools.len()).map(|i| (i + round) % tools.len()) {
                let t = tools[i];
                let copy = work.join(format!("copy-{t}"));
                let _ = fs::remove_dir_all(&copy);
                crate::run(Command::new("cp").arg("-a").arg(work.join(format!("repo-{t}"))).arg(&copy))?;
                if t == "snapfs" {
                    let _ = fs::remove_dir_all(cache_dir());
                    crate::run(Command::new("cp").arg("-a").arg(&cache_saved).arg(cache_dir()))?;
                }
                crate::run(&mut Command::new("sync"))?;
                let s = exec(&cmd(t, &copy, &["forget", "--keep-last", "1", "--prune"]), &work)?;
                println!("  forget + prune {t:<7} {:>7.2} s  cpu {:>6.2} s  rss {:>5.0} MB", s.wall, s.cpu, s.rss_mb);
                samples[i].push(s);
                fs::remove_dir_all(&copy)?;
            }
        }
        let med = |i: usize, f: fn(&Sample) -> f64| median(&mut samples[i].iter().map(f).collect::<Vec<_>>());
        rows.push_str(&format!(
            "| {n} | {:.0} MB | {:.2} s | {:.0} MB | {:.2} s (**{:.1}x**) |\n",
            med(0, |s| s.rss_mb),
            med(0, |s| s.wall),
            med(1, |s| s.rss_mb),
            med(1, |s| s.wall),
            med(1, |s| s.wall) / med(0, |s| s.wall)
        ));
    }
    let mut out = machine()?;
    out.push_str(&format!(
        "\nFor each size: N files of 33–132 bytes (one blob each) in directories of {PER_DIR}, backed up, \
         every other file deleted and backed up again, then `forget --keep-last 1 --prune`: half of \
         the blobs go. Medians of {rounds} rounds, the tools alternating; ratio = restic time / snapfs time.\n\n\
         | files (blobs) | snapfs peak RSS | snapfs time | restic peak RSS | restic time |\n\
         | --- | --- | --- | --- | --- |\n{rows}"
    ));
    println!("\n{out}");
    fs::write(crate::workspace_root().join("benches/results/prune-scale.md"), &out)?;
    println!("written to benches/results/prune-scale.md");
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir_all(cache_dir());
    Ok(())
}
