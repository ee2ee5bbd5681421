//! `cargo xtask bench --cold`: backups from a cold disk. Before every timed step the page cache
//! (and the dentry and inode caches) are dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`,
//! root only), for the peers too, and the tools alternate, the order turning each round, since
//! whoever runs second after a drop otherwise inherits warm metadata. Rows: what the disk
//! allows (one reader, eight readers, a serial and a parallel stat walk), then snapfs, restic
//! and borg: initial backup into a new repository and unchanged re-backup, both cold, plus
//! snapfs's warm initial backup (one of the issue 21 targets). Medians over the rounds are
//! written to `benches/results/cold.md`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::bench::{Sample, cache_dir, check_flags, exec, machine, median, prepare_data, tree_size};

const READ1: &str = "cold read, one reader (`tar cf - DIR | cat`)";
const READ8: &str = "cold read, eight readers (`find | xargs -P 8 -n 200 cat`)";
const FIND: &str = "cold stat walk, serial (`find -printf '%s'`)";
const PSTAT: &str = "cold stat walk, parallel (8 threads, fstatat by directory)";
const INITIAL: &str = "initial backup, cold";
const AGAIN: &str = "unchanged re-backup, cold";
const WARM: &str = "initial backup, warm";

pub fn run(args: &[String]) -> Result<()> {
    check_flags(args, &["--cold", "--no-borg"], &["--rounds", "--data"])?;
    let rounds: usize = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args.get(i + 1).context("--rounds needs a number")?.parse()?,
        None => 3,
    };
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let work = target.join("bench-cold");
    fs::create_dir_all(&work)?;
    let snapfs = target.join("release").join("snapfs").display().to_string();
    let data = match args.iter().position(|a| a == "--data") {
        Some(i) => fs::canonicalize(args.get(i + 1).context("--data needs a directory")?)?,
        None => {
            let d = target.join("bench").join("data");
            prepare_data(&d, false)?;
            fs::canonicalize(d)?
        }
    };
    drop_caches().context("--cold drops the page cache, which needs root")?;
    let (files, bytes) = tree_size(&data)?;
    println!("data: {files} files, {:.2} GB in {}", bytes as f64 / 1e9, data.display());
    let mut tools = vec!["snapfs", "restic"];
    if !args.iter().any(|a| a == "--no-borg") {
        tools.push("borg");
    }
    let d = data.display().to_string();
    let sh = |c: String| vec!["sh".to_string(), "-c".to_string(), c];
    let limits: Vec<(&str, Vec<String>)> = vec![
        (READ1, sh(format!("tar cf - '{d}' 2>/dev/null | cat > /dev/null"))),
        (READ8, sh(format!("find '{d}' -type f -print0 | xargs -0 -P 8 -n 200 cat > /dev/null"))),
        (FIND, sh(format!("find '{d}' -printf '%s\\n' > /dev/null"))),
    ];
    let mut results: BTreeMap<(&str, &str), Vec<Sample>> = BTreeMap::new();
    let mut record = |row: &'static str, tool: &'static str, s: Sample| {
        println!("  {row:<60} {tool:<8} {:>8.2} s  cpu {:>7.2} s  rss {:>6.0} MB", s.wall, s.cpu, s.rss_mb);
        results.entry((row, tool)).or_default().push(s);
    };
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        let mut order = tools.clone();
        order.rotate_left(round % tools.len());
        let mut lim: Vec<usize> = (0..=limits.len()).collect();
        let n = lim.len();
        lim.rotate_left(round % n);
        for i in lim {
            drop_caches()?;
            match limits.get(i) {
                Some((row, argv)) => record(row, "", exec(argv, &work)?),
                None => record(PSTAT, "", parallel_stat(&data, 8)),
            }
        }
        let _ = fs::remove_dir_all(cache_dir());
        for t in &order {
            let repo = repo_of(&work, t);
            let _ = fs::remove_dir_all(&repo);
            exec(&init(t, &snapfs, &repo), &work)?;
        }
        for t in &order {
            drop_caches()?;
            record(INITIAL, t, exec(&backup(t, &snapfs, &repo_of(&work, t), &d, 0), &work)?);
        }
        for t in &order {
            drop_caches()?;
            record(AGAIN, t, exec(&backup(t, &snapfs, &repo_of(&work, t), &d, 1), &work)?);
        }
        // The warm target: the same backup with the data read just before (into a new repository).
        let repo = work.join("repo-warm");
        let _ = fs::remove_dir_all(&repo);
        exec(&init("snapfs", &snapfs, &repo), &work)?;
        exec(&sh(format!("tar cf - '{d}' 2>/dev/null | cat > /dev/null")), &work)?;
        crate::run(&mut Command::new("sync"))?;
        record(WARM, "snapfs", exec(&backup("snapfs", &snapfs, &repo, &d, 0), &work)?);
    }
    let _ = fs::remove_dir_all(cache_dir());
    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: {files} files, {:.2} GB ({}). Caches dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before \
         every timed step; {rounds} rounds, the tools alternating, the order turning each round.\n",
        bytes as f64 / 1e9,
        data.display()
    ));
    out.push_str(&table(&tools, &results));
    println!("\n{out}");
    let dest = crate::workspace_root().join("benches/results");
    fs::create_dir_all(&dest)?;
    fs::write(dest.join("cold.md"), &out)?;
    println!("written to benches/results/cold.md");
    Ok(())
}

fn repo_of(work: &Path, tool: &str) -> PathBuf {
    work.join(format!("repo-{tool}"))
}

fn init(tool: &str, snapfs: &str, repo: &Path) -> Vec<String> {
    let r = repo.display().to_string();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    match tool {
        "snapfs" => v(&[snapfs, "--repo", &r, "-q", "init"]),
        "restic" => v(&["restic", "-r", &r, "-q", "init"]),
        _ => v(&["borg", "init", "--encryption", "repokey-blake2", &r]),
    }
}

/// borg with its default compression (lz4), the faster of the two the warm bench runs.
fn backup(tool: &str, snapfs: &str, repo: &Path, data: &str, n: usize) -> Vec<String> {
    let r = repo.display().to_string();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    match tool {
        "snapfs" => v(&[snapfs, "--repo", &r, "-q", "backup", data]),
        "restic" => v(&["restic", "-r", &r, "-q", "backup", data]),
        _ => v(&["borg", "create", &format!("{r}::a{n}"), data]),
    }
}

fn drop_caches() -> Result<()> {
    crate::run(&mut Command::new("sync"))?;
    fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")?;
    Ok(())
}

/// The least a metadata walk costs on a cold cache: every directory listed and every entry
/// stat'ed, by `threads` threads taking directories from one queue.
fn parallel_stat(root: &Path, threads: usize) -> Sample {
    let started = Instant::now();
    let queue = Mutex::new((vec![root.to_path_buf()], 0usize));
    let cv = std::sync::Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let dir = {
                        let mut q = queue.lock().unwrap();
                        loop {
                            if let Some(d) = q.0.pop() {
                                q.1 += 1;
                                break Some(d);
                            }
                            if q.1 == 0 {
                                break None;
                            }
                            q = cv.wait(q).unwrap();
                        }
                    };
                    let Some(dir) = dir else {
                        cv.notify_all();
                        return;
                    };
                    let mut subdirs = Vec::new();
                    if let Ok(rd) = fs::read_dir(&dir) {
                        for e in rd.flatten() {
                            // DirEntry::metadata is fstatat relative to the directory's descriptor.
                            if e.metadata().is_ok_and(|m| m.is_dir()) {
                                subdirs.push(e.path());
                            }
                        }
                    }
                    let mut q = queue.lock().unwrap();
                    q.0.extend(subdirs);
                    q.1 -= 1;
                    cv.notify_all();
                }
            });
        }
    });
    Sample { wall: started.elapsed().as_secs_f64(), cpu: 0.0, rss_mb: 0.0 }
}

fn table(tools: &[&str], r: &BTreeMap<(&str, &str), Vec<Sample>>) -> String {
    let med = |row: &str, tool: &str| -> Option<Sample> {
        let v = r.get(&(row, tool))?;
        let m = |f: fn(&Sample) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
        Some(Sample { wall: m(|s| s.wall), cpu: m(|s| s.cpu), rss_mb: m(|s| s.rss_mb) })
    };
    let all = |row: &str, tool: &str| -> String {
        r.get(&(row, tool))
            .map_or(String::new(), |v| v.iter().map(|s| format!("{:.2}", s.wall)).collect::<Vec<_>>().join(" / "))
    };
    let mut s = String::from(
        "\n## The disk's limits (medians; every round's figure after it)\n\n| what | wall |\n| --- | --- |\n",
    );
    for row in [READ1, READ8, FIND, PSTAT] {
        if let Some(m) = med(row, "") {
            s.push_str(&format!("| {row} | {:.2} s ({}) |\n", m.wall, all(row, "")));
        }
    }
    s.push_str("\n## Backups (medians; ratio = peer time / snapfs time)\n\n| step |");
    for t in tools {
        s.push_str(&format!(" {t} |"));
    }
    s.push_str("\n| --- |");
    s.push_str(&" --- |".repeat(tools.len()));
    s.push('\n');
    for row in [INITIAL, AGAIN, WARM] {
        let ours = med(row, "snapfs").map(|m| m.wall);
        s.push_str(&format!("| {row} |"));
        for t in tools {
            match med(row, t) {
                Some(m) => {
                    let ratio = match ours {
                        Some(o) if *t != "snapfs" && o > 0.0 => format!(", **{:.1}x**", m.wall / o),
                        _ => String::new(),
                    };
                    s.push_str(&format!(
                        " {:.2} s (cpu {:.1} s, {:.0} MB{ratio}; {}) |",
                        m.wall,
                        m.cpu,
                        m.rss_mb,
                        all(row, t)
                    ));
                }
                None => s.push_str(" n/a |"),
            }
        }
        s.push('\n');
    }
    let w = |row: &str, tool: &str| med(row, tool).map(|m| m.wall);
    if let (Some(ci), Some(ca), Some(r8), Some(ps), Some(wb)) =
        (w(INITIAL, "snapfs"), w(AGAIN, "snapfs"), w(READ8, ""), w(PSTAT, ""), w(WARM, "snapfs"))
    {
        s.push_str("\n## Against the issue 21 targets\n\n| target | measured |\n| --- | --- |\n");
        if let Some(ri) = w(INITIAL, "restic") {
            s.push_str(&format!("| cold initial backup ≥ 3x restic | {:.2}x |\n", ri / ci));
        }
        s.push_str(&format!(
            "| cold initial backup ≤ 1.3x max(eight-reader cold read, warm backup) = {:.2} s | {:.2}x |\n",
            r8.max(wb),
            ci / r8.max(wb)
        ));
        if let Some(ra) = w(AGAIN, "restic") {
            s.push_str(&format!("| cold unchanged re-backup ≥ 4x restic | {:.2}x |\n", ra / ca));
        }
        s.push_str(&format!("| cold unchanged re-backup ≤ 1.5x the parallel stat walk | {:.2}x |\n", ca / ps));
        let rss =
            [INITIAL, AGAIN, WARM].iter().filter_map(|row| med(row, "snapfs")).map(|m| m.rss_mb).fold(0.0, f64::max);
        s.push_str(&format!("| peak RSS < 200 MB | {rss:.0} MB |\n"));
    }
    s
}
