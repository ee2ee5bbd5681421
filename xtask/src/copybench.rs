//! `cargo xtask bench --copy`: copying one snapshot between two local repositories, snapfs
//! against `restic copy`, on the bench data. snapfs is timed twice: into an unrelated repository
//! (every blob re-hashed, every tree rewritten) and into one made with `init
//! --copy-chunker-params` (blobs move under their ids); restic into one made with its own
//! `--copy-chunker-params`, as its manual recommends. Init is not timed. Writes
//! `benches/results/copy.md`.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use anyhow::{Result, bail};

use crate::bench::{PASSWORD, Sample, cache_dir, exec, machine, median, prepare_data, sources, tree_size};

const CASES: [&str; 3] = ["snapfs", "snapfs related", "restic"];

pub fn run(args: &[String]) -> Result<()> {
    crate::bench::check_flags(args, &["--copy", "--quick"], &["--rounds", "--snapfs"])?;
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let rounds: usize = value("--rounds").map_or(Ok(if quick { 1 } else { 3 }), |v| v.parse())?;
    let target = crate::target_dir()?;
    let snapfs = snapfs_binary(value("--snapfs"), &target)?;
    for tool in ["restic", "/usr/bin/time"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map_or(true, |o| o.stdout.is_empty())
        {
            bail!("{tool} is missing: apt-get install restic time");
        }
    }
    let work = target.join("bench-copy");
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir_all(cache_dir());
    fs::create_dir_all(&work)?;
    let data = target.join("bench/data");
    prepare_data(&data, quick)?;
    let (files, bytes) = tree_size(&data)?;
    let (src_s, src_r) = (work.join("src-snapfs").display().to_string(), work.join("src-restic").display().to_string());
    let d = data.display().to_string();
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    exec(&argv(&[&snapfs, "-q", "-r", &src_s, "init"]), &work)?;
    exec(&argv(&[&snapfs, "-q", "-r", &src_s, "backup", &d]), &work)?;
    exec(&argv(&["restic", "-q", "-r", &src_r, "init"]), &work)?;
    exec(&argv(&["restic", "-q", "-r", &src_r, "backup", &d]), &work)?;

    let from_s = format!("SNAPFS_FROM_PASSWORD={PASSWORD}");
    let from_r = format!("RESTIC_FROM_PASSWORD={PASSWORD}");
    let mut results: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut order = CASES.to_vec();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for case in &order {
            let dst = work.join("dst").display().to_string();
            let _ = fs::remove_dir_all(&dst);
            let related = |from: &str, bin: &str, src: &str| {
                argv(&["env", from, bin, "-q", "-r", &dst, "init", "--copy-chunker-params", "--from-repo", src])
            };
            let (init, copy) = match *case {
                "snapfs" => (argv(&[&snapfs, "-q", "-r", &dst, "init"]), argv(&[&snapfs, "-q", "-r", &dst, "copy"])),
                "snapfs related" => (related(&from_s, &snapfs, &src_s), argv(&[&snapfs, "-q", "-r", &dst, "copy"])),
                _ => (related(&from_r, "restic", &src_r), argv(&["restic", "-q", "-r", &dst, "copy"])),
            };
            exec(&init, &work)?;
            let (from, src) = if case.starts_with("snapfs") { (&from_s, &src_s) } else { (&from_r, &src_r) };
            let mut timed = argv(&["env", from]);
            timed.extend(copy);
            timed.extend(argv(&["--from-repo", src]));
            crate::run(Command::new("sh").args(["-c", &format!("cat $(find {src} -type f) > /dev/null; sync")]))?;
            let s = exec(&timed, &work)?;
            println!("  copy  {case:<15} {:>8.2} s  cpu {:>7.2} s  rss {:>6.0} MB", s.wall, s.cpu, s.rss_mb);
            results.entry(case).or_default().push(s);
        }
        order.rotate_left(1);
    }
    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: one snapshot of {files} files, {:.2} GB ({}, and the generated tree), copied between two local \
         repositories; snapfs binary {snapfs}.\n\n| copy | {} |\n|{}\n|",
        bytes as f64 / 1e9,
        sources(quick).join(", "),
        CASES.join(" | "),
        " --- |".repeat(CASES.len() + 1)
    ));
    let wall = |c: &str| median(&mut results[c].iter().map(|s| s.wall).collect::<Vec<_>>());
    let ours = wall("snapfs related");
    out.push_str(" one snapshot |");
    for c in CASES {
        let cpu = median(&mut results[c].iter().map(|s| s.cpu).collect::<Vec<_>>());
        let rss = results[c].iter().map(|s| s.rss_mb).fold(0.0, f64::max);
        let ratio = if c == "restic" { format!(", **{:.1}x**", wall(c) / ours) } else { String::new() };
        out.push_str(&format!(" {:.2} s (cpu {cpu:.1} s, {rss:.0} MB{ratio}) |", wall(c)));
    }
    out.push_str(&format!(
        "\n\nMedians of {rounds} rounds; ratio = restic time / snapfs time into a related repository (the like-for-like \
         case: restic's ids are plain hashes, so its copies never re-hash).\n"
    ));
    println!("\n{out}");
    let name = if quick { "copy-quick.md" } else { "copy.md" };
    fs::write(crate::workspace_root().join("benches/results").join(name), &out)?;
    println!("written to benches/results/{name}");
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// `--snapfs PATH` when given (a binary built elsewhere; the figures then say which), else this
/// workspace's release build.
pub(crate) fn snapfs_binary(given: Option<String>, target: &std::path::Path) -> Result<String> {
    match given {
        Some(p) => Ok(p),
        None => {
            crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
            Ok(target.join("release/snapfs").display().to_string())
        }
    }
}
