//! `cargo xtask bench --rotate`: what `key rotate --rewrite` costs against what it must do at
//! least: read and verify every blob (`check --read-data`) and write the same bytes (a copy of
//! the packs, synced). No peer rotates the keys of existing data, so the table compares snapfs
//! with those two bounds, on one backup of the bench data. Rounds alternate the three steps;
//! medians. Writes `benches/results/rotate.md`.

use std::fs;
use std::process::Command;

use anyhow::Result;

use crate::bench::{Sample, cache_dir, exec, machine, median, prepare_data, tree_size};

pub fn run(args: &[String]) -> Result<()> {
    crate::bench::check_flags(args, &["--rotate", "--quick"], &["--rounds", "--snapfs"])?;
    let (quick, rounds, snapfs) = crate::bench::quick_rounds_binary(args)?;
    let target = crate::target_dir()?;
    let work = target.join("bench-rotate");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let data = target.join("bench/data");
    prepare_data(&data, quick)?;
    let (files, bytes) = tree_size(&data)?;
    let repo = work.join("repo").display().to_string();
    let cmd = |args: &[&str]| -> Vec<String> {
        let mut v = vec![snapfs.clone(), "-q".into(), "--repo".into(), repo.clone()];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    let _ = fs::remove_dir_all(cache_dir());
    exec(&cmd(&["init"]), &work)?;
    exec(&cmd(&["backup", &data.display().to_string()]), &work)?;
    let packs = work.join("repo/packs");
    let copy = work.join("packs-copy");
    let copy_cmd = vec!["sh".to_string(), "-c".into(), format!("cp -r {} {} && sync", packs.display(), copy.display())];
    let steps: [(&str, Vec<String>); 3] = [
        ("check --read-data", cmd(&["check", "--read-data"])),
        ("key rotate --rewrite", cmd(&["key", "rotate", "--rewrite"])),
        ("cp -r packs + sync", copy_cmd),
    ];
    // Twice what a rotation writes, so every step starts with as much freshly freed memory.
    let recycle = 2 * crate::bench::dir_bytes(&packs)?;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); steps.len()];
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for i in (0..steps.len()).map(|i| (i + round) % steps.len()) {
            let _ = fs::remove_dir_all(&copy);
            crate::run(&mut Command::new("sync"))?;
            crate::bench::recycle_memory(&work, recycle)?;
            let s = exec(&steps[i].1, &work)?;
            println!("  {:<22} {:>7.2} s  cpu {:>6.2} s  rss {:>5.0} MB", steps[i].0, s.wall, s.cpu, s.rss_mb);
            samples[i].push(s);
        }
    }
    let wall = |i: usize| median(&mut samples[i].iter().map(|s| s.wall).collect::<Vec<_>>());
    let repo_bytes: u64 = crate::bench::dir_bytes(&packs)?;
    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: one backup of {files} files, {:.2} GB; packs {:.2} GB. Medians of {rounds} rounds, \
         the steps alternating.\n\n| step | wall | cpu | peak RSS |\n| --- | --- | --- | --- |\n",
        bytes as f64 / 1e9,
        repo_bytes as f64 / 1e9
    ));
    for (i, (name, _)) in steps.iter().enumerate() {
        let cpu = median(&mut samples[i].iter().map(|s| s.cpu).collect::<Vec<_>>());
        let rss = samples[i].iter().map(|s| s.rss_mb).fold(0.0, f64::max);
        out.push_str(&format!("| {name} | {:.2} s | {cpu:.2} s | {rss:.0} MB |\n", wall(i)));
    }
    out.push_str(&format!(
        "\n`key rotate --rewrite` / (`check --read-data` + copy): **{:.2}** (1.00 would be the sum of \
         the two bounds; it also re-encrypts every blob, which neither does).\n",
        wall(1) / (wall(0) + wall(2))
    ));
    println!("\n{out}");
    let name = if quick { "rotate-quick.md" } else { "rotate.md" };
    fs::write(crate::workspace_root().join("benches/results").join(name), &out)?;
    println!("written to benches/results/{name}");
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir_all(cache_dir());
    Ok(())
}
