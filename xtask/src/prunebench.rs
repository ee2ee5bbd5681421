//! `cargo xtask bench --prune`: forget half of a 20-snapshot history and prune, snapfs against
//! restic (`forget --prune`) and borg (`prune` + `compact`) on the same data in one run.
//!
//! The history is built once per tool on a copy of the bench data: before each of the N
//! snapshots about 2% of the files change (appends, inserts in the middle, deletions, new
//! files), the same for every tool. Each round then copies every repository afresh, warms it,
//! syncs, and times forgetting all but the newest N/2 snapshots and pruning, the tools in an
//! order that turns each round. Writes `benches/results/prune.md`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::bench::{
    Sample, cache_dir, collect_files, dir_bytes, exec, machine, median, prepare_data, sources, tree_size,
};

/// One step of history: ~2% of the files, a different 2% each time.
fn mutate(data: &Path, step: usize) -> Result<()> {
    let mut files = Vec::new();
    collect_files(data, &mut files)?;
    files.sort();
    for (i, f) in files.iter().enumerate().filter(|(i, _)| i % 50 == step % 50) {
        let mut content = fs::read(f)?;
        match (i / 50 + step) % 4 {
            0 => content.extend_from_slice(format!("appended in step {step}\n").as_bytes()),
            1 => {
                let mid = content.len() / 2;
                content.splice(mid..mid, format!("inserted in step {step}").bytes());
            }
            2 => {
                fs::remove_file(f)?;
                continue;
            }
            _ => content = format!("rewritten in step {step} {i}\n").repeat(200).into_bytes(),
        }
        fs::write(f, content)?;
    }
    fs::write(data.join(format!("prune-bench-new-{step}")), format!("new file of step {step}\n").repeat(5000))?;
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    crate::bench::check_flags(args, &["--prune", "--quick", "--reuse", "--no-borg"], &["--rounds", "--snapshots"])?;
    let quick = args.iter().any(|a| a == "--quick");
    // `--reuse`: the histories an earlier run left under target/bench-prune (it keeps them when
    // it fails), so only the timed rounds run again.
    let reuse = args.iter().any(|a| a == "--reuse");
    let value = |flag: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(args.get(i + 1).ok_or_else(|| anyhow::anyhow!("{flag} needs a number"))?.parse()?),
            None => Ok(default),
        }
    };
    let rounds = value("--rounds", if quick { 1 } else { 3 })?;
    let snapshots = value("--snapshots", 20)?;
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    for tool in ["restic", "borg", "/usr/bin/time"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map_or(true, |o| o.stdout.is_empty())
        {
            bail!("{tool} is missing: apt-get install restic borgbackup time");
        }
    }
    let target = crate::target_dir()?;
    let snapfs = target.join("release/snapfs").display().to_string();
    let work = target.join("bench-prune");
    let data = work.join("data");
    if !reuse {
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)?;
        let pristine = target.join("bench/data");
        prepare_data(&pristine, quick)?;
        crate::run(Command::new("cp").arg("-a").arg(&pristine).arg(&data))?;
    }
    let (files, bytes) = tree_size(&data)?;
    let keep = (snapshots / 2).max(1).to_string();

    let tools: Vec<&str> =
        if args.iter().any(|a| a == "--no-borg") { vec!["snapfs", "restic"] } else { vec!["snapfs", "restic", "borg"] };
    let borg_base = work.join("borg-base");
    let repo = |t: &str| work.join(format!("repo-{t}"));
    let init = |t: &str| -> Vec<String> {
        let r = repo(t).display().to_string();
        match t {
            "snapfs" => vec![snapfs.clone(), "-q".into(), "--repo".into(), r, "init".into()],
            "restic" => vec!["restic".into(), "-q".into(), "-r".into(), r, "init".into()],
            _ => [
                "env",
                &format!("BORG_BASE_DIR={}", borg_base.display()),
                "borg",
                "init",
                "--encryption",
                "repokey-blake2",
                &r,
            ]
            .map(String::from)
            .to_vec(),
        }
    };
    let backup = |t: &str, k: usize| -> Vec<String> {
        let (r, d) = (repo(t).display().to_string(), data.display().to_string());
        match t {
            "snapfs" => vec![snapfs.clone(), "-q".into(), "--repo".into(), r, "backup".into(), d],
            "restic" => vec!["restic".into(), "-q".into(), "-r".into(), r, "backup".into(), d],
            _ => {
                let base = format!("BORG_BASE_DIR={}", borg_base.display());
                ["env", &base, "borg", "create", "--compression", "zstd,3", &format!("{r}::s{k}"), &d]
                    .map(String::from)
                    .to_vec()
            }
        }
    };
    let prune_cmd = |t: &str, r: &Path| -> Vec<String> {
        let r = r.display().to_string();
        match t {
            "snapfs" => ["--repo", &r, "-q", "forget", "--keep-last", &keep, "--prune"].iter().fold(
                vec![snapfs.clone()],
                |mut v, a| {
                    v.push(a.to_string());
                    v
                },
            ),
            "restic" => {
                ["restic", "-r", &r, "-q", "forget", "--keep-last", &keep, "--prune"].map(String::from).to_vec()
            }
            // Its own copy of borg's cache and security records for each copy of the repository:
            // borg refuses a repository older than what it remembers of it.
            _ => vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "export BORG_BASE_DIR={}; borg prune --keep-last {keep} {r} && borg compact {r}",
                    work.join("borg-base-copy").display()
                ),
            ],
        }
    };
    let cache_saved = work.join("cache-saved");
    if !reuse {
        println!("building a history of {snapshots} snapshots per tool on {files} files, {:.2} GB", bytes as f64 / 1e9);
        let _ = fs::remove_dir_all(cache_dir());
        for t in &tools {
            exec(&init(t), &work)?;
        }
        for k in 0..snapshots {
            if k > 0 {
                mutate(&data, k)?;
            }
            for t in &tools {
                exec(&backup(t, k), &data)?;
            }
        }
        // snapfs's cache as the history left it, given back before every timed prune.
        crate::run(Command::new("cp").arg("-a").arg(cache_dir()).arg(&cache_saved))?;
    }

    let mut results: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut order = tools.clone();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for t in &order {
            let copy = work.join(format!("copy-{t}"));
            let _ = fs::remove_dir_all(&copy);
            crate::run(Command::new("cp").arg("-a").arg(repo(t)).arg(&copy))?;
            if *t == "snapfs" {
                let _ = fs::remove_dir_all(cache_dir());
                crate::run(Command::new("cp").arg("-a").arg(&cache_saved).arg(cache_dir()))?;
            }
            if *t == "borg" {
                let copy_base = work.join("borg-base-copy");
                let _ = fs::remove_dir_all(&copy_base);
                crate::run(Command::new("cp").arg("-a").arg(&borg_base).arg(&copy_base))?;
            }
            crate::run(
                Command::new("sh").args(["-c", &format!("cat $(find {} -type f) > /dev/null", copy.display())]),
            )?;
            crate::run(&mut Command::new("sync"))?;
            let before = dir_bytes(&copy)?;
            let s = exec(&prune_cmd(t, &copy), &work)?;
            let after = dir_bytes(&copy)?;
            println!("  forget half + prune  {t:<8} {:>8.2} s  cpu {:>7.2} s  rss {:>6.0} MB", s.wall, s.cpu, s.rss_mb);
            results.entry(t).or_default().push(s);
            sizes.insert(t, (before, after));
            if *t == "snapfs" {
                // What the kept snapshots need, as prune counts it: the repository after pruning
                // against a fresh backup of just those.
                let json = exec_out(&[&snapfs, "--repo", &copy.display().to_string(), "prune", "--dry-run", "--json"])?;
                let v: serde_json_lite::Summary = serde_json_lite::parse(&json)?;
                println!("  snapfs after prune: {} bytes in packs, {} needed by the kept snapshots", v.bytes, v.used);
                sizes.insert("snapfs needed", (v.used, v.bytes));
            }
            fs::remove_dir_all(&copy)?;
        }
        order.rotate_left(1);
    }
    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: {files} files, {:.2} GB ({}, and the generated tree), {snapshots} snapshots, ~2% of the files \
         changed before each; then all but the newest {keep} forgotten and the data pruned.\n\n",
        bytes as f64 / 1e9,
        sources(quick).join(", ")
    ));
    let header: Vec<&str> = tools.iter().map(|t| if *t == "borg" { "borg zstd,3" } else { t }).collect();
    out.push_str(&format!("| step | {} |\n|{}\n", header.join(" | "), " --- |".repeat(tools.len() + 1)));
    let ours = median(&mut results["snapfs"].iter().map(|s| s.wall).collect::<Vec<_>>());
    out.push_str("| forget half + prune |");
    for t in tools.iter().copied() {
        let v = &results[t];
        let wall = median(&mut v.iter().map(|s| s.wall).collect::<Vec<_>>());
        let cpu = median(&mut v.iter().map(|s| s.cpu).collect::<Vec<_>>());
        let rss = v.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
        let ratio = if t == "snapfs" { String::new() } else { format!(", **{:.1}x**", wall / ours) };
        out.push_str(&format!(" {wall:.2} s (cpu {cpu:.1} s, {rss:.0} MB{ratio}) |"));
    }
    out.push_str("\n| repository before → after |");
    for t in tools.iter().copied() {
        let (b, a) = sizes[t];
        out.push_str(&format!(" {:.0} → {:.0} MB |", b as f64 / 1e6, a as f64 / 1e6));
    }
    let (used, after) = sizes["snapfs needed"];
    out.push_str(&format!(
        "\n\nAfter pruning, snapfs's packs hold {:.0} MB where the kept snapshots need {:.0} MB of blobs \
         ({:.1}% over, the bound on what a fresh backup of them would store). Medians of {rounds} rounds; \
         ratio = peer time / snapfs time.\n",
        after as f64 / 1e6,
        used as f64 / 1e6,
        (after as f64 / used.max(1) as f64 - 1.0) * 100.0
    ));
    println!("\n{out}");
    let name = if quick { "prune-quick.md" } else { "prune.md" };
    fs::write(crate::workspace_root().join("benches/results").join(name), &out)?;
    println!("written to benches/results/{name}");
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir_all(cache_dir());
    Ok(())
}

fn exec_out(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("SNAPFS_PASSWORD", crate::bench::PASSWORD)
        .env("SNAPFS_CACHE_DIR", cache_dir())
        .output()?;
    if !out.status.success() {
        bail!("`{}` failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The two numbers wanted from `prune --json`, without a JSON dependency in xtask.
mod serde_json_lite {
    pub struct Summary {
        pub bytes: u64,
        pub used: u64,
    }

    fn field(json: &str, key: &str) -> anyhow::Result<u64> {
        let at = json.find(&format!("\"{key}\":")).ok_or_else(|| anyhow::anyhow!("no {key} in {json}"))?;
        let rest = &json[at + key.len() + 3..];
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        Ok(rest[..end].parse()?)
    }

    pub fn parse(json: &str) -> anyhow::Result<Summary> {
        Ok(Summary { bytes: field(json, "bytes")?, used: field(json, "used_bytes")? })
    }
}
