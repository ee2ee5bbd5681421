//! `cargo xtask bench --browse`: snapfs's browsing commands against restic's on the same
//! history: 50 backups of a slowly changing tree of small files (1% of them changed before
//! each, one file changed every 10th time), then `ls` of the newest snapshot, `find` of one name
//! across every snapshot, `diff` of the first and the last snapshot, and every version of the one
//! file (`history`; restic has none, so its peer is `find` of that path). Each query runs
//! `--rounds` times (default 3), the tools taking turns; medians are written with ratios and
//! peak RSS to `benches/results/browse.md`.

use std::fs;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{PASSWORD, Sample, cache_dir, check_flags, collect_files, exec, machine, median, small_files};

/// The snapshot ids a tool lists, oldest first.
fn ids(argv: &[String], key: &str) -> Result<Vec<String>> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env("SNAPFS_PASSWORD", PASSWORD)
        .env("SNAPFS_CACHE_DIR", cache_dir())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    // Both print a JSON array of objects with the id under `key`; no JSON parser in xtask.
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("\"{key}\":\"");
    Ok(text.match_indices(&needle).map(|(i, _)| text[i + needle.len()..i + needle.len() + 64].to_string()).collect())
}

pub fn run(args: &[String]) -> Result<()> {
    check_flags(args, &["--browse"], &["--rounds", "--files"])?;
    let number = |flag: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(args.get(i + 1).with_context(|| format!("{flag} needs a number"))?.parse()?),
            None => Ok(default),
        }
    };
    let (rounds, n_files) = (number("--rounds", 3)?, number("--files", 10_000)?);
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let bin = target.join("release/snapfs").display().to_string();
    let work = target.join("bench-browse");
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir_all(cache_dir());
    fs::create_dir_all(&work)?;
    let data = work.join("data");
    small_files(&data, n_files)?;
    let mut files = Vec::new();
    collect_files(&data, &mut files)?;
    files.sort();
    let tracked = files[0].clone();
    let (s_repo, r_repo) = (work.join("snapfs").display().to_string(), work.join("restic").display().to_string());
    let snapfs = |rest: &[&str]| {
        let mut v = vec![bin.clone(), "--repo".into(), s_repo.clone(), "-q".into()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let restic = |rest: &[&str]| {
        let mut v = vec!["restic".to_string(), "-r".into(), r_repo.clone(), "-q".into()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    exec(&snapfs(&["init"]), &work)?;
    exec(&restic(&["init"]), &work)?;
    let d = data.display().to_string();
    for round in 1..=50 {
        for f in files.iter().skip(round).step_by(100) {
            fs::write(f, format!("changed in round {round}\n"))?;
        }
        if round % 10 == 0 {
            fs::write(&tracked, format!("version {}\n", round / 10))?;
        }
        exec(&snapfs(&["backup", &d]), &work)?;
        exec(&restic(&["backup", &d]), &work)?;
        if round % 10 == 0 {
            println!("{round} backups each");
        }
    }
    let s_ids = ids(&snapfs(&["snapshots", "--json"]), "id")?;
    let r_ids = ids(&restic(&["snapshots", "--json"]), "id")?;
    let (Some(s_first), Some(s_last), Some(r_first), Some(r_last)) =
        (s_ids.first(), s_ids.last(), r_ids.first(), r_ids.last())
    else {
        bail!("no snapshots listed");
    };
    let name = files[n_files / 2].file_name().and_then(|n| n.to_str()).context("a file name")?.to_string();
    let path = tracked.display().to_string();
    let queries: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        ("ls latest", snapfs(&["ls", "latest"]), restic(&["ls", "latest"])),
        ("find a name in 50 snapshots", snapfs(&["find", &name]), restic(&["find", &name])),
        ("diff first and last snapshot", snapfs(&["diff", s_first, s_last]), restic(&["diff", r_first, r_last])),
        ("history of one file (restic: find its path)", snapfs(&["history", &path]), restic(&["find", &path])),
    ];
    let mut out = machine()?;
    out.push_str(&format!(
        "\n## Browsing 50 snapshots of {n_files} small files (1% changed before each backup)\n\n\
         Medians of {rounds} runs, wall time and peak RSS (of which the password's key derivation\n\
         takes about 64 MB in snapfs: Argon2id at 64 MiB).\n\n\
         | query | snapfs | restic | restic / snapfs | snapfs RSS | restic RSS |\n| --- | --- | --- | --- | --- | --- |\n"
    ));
    for (what, s_cmd, r_cmd) in &queries {
        let (mut s, mut r): (Vec<Sample>, Vec<Sample>) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            // Taking turns, so that neither tool always runs on a cache the other warmed.
            if i % 2 == 0 {
                s.push(exec(s_cmd, &work)?);
                r.push(exec(r_cmd, &work)?);
            } else {
                r.push(exec(r_cmd, &work)?);
                s.push(exec(s_cmd, &work)?);
            }
        }
        let m = |v: &[Sample], f: fn(&Sample) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
        let (sw, rw) = (m(&s, |x| x.wall), m(&r, |x| x.wall));
        let line = format!(
            "| {what} | {sw:.3} s | {rw:.3} s | {:.1}x | {:.0} MB | {:.0} MB |\n",
            rw / sw,
            m(&s, |x| x.rss_mb),
            m(&r, |x| x.rss_mb)
        );
        print!("{line}");
        out.push_str(&line);
    }
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir_all(cache_dir());
    let dest = crate::workspace_root().join("benches/results");
    fs::create_dir_all(&dest)?;
    fs::write(dest.join("browse.md"), &out)?;
    println!("written to benches/results/browse.md");
    Ok(())
}
