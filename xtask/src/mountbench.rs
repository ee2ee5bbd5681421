//! `cargo xtask bench --mount`: `snapfs mount` against `restic mount` on the same data, in one
//! run.
//!
//! The data of `cargo xtask bench` is backed up once with each tool. Each round then gives each
//! tool (in alternating order, so both see the same machine load) a fresh mount process, which
//! is what makes the first pass cold for the FUSE layer, and measures: a `find -printf` walk of
//! the whole snapshot (cold, with the kernel's caches dropped, then warm), `cat` of the largest
//! file, `tar c | cat` of a directory of many small files, and the mount process's peak RSS after
//! the walk and after the reads. For the read throughput target, snapfs also restores the same
//! file alone. Medians over the rounds go to stdout and `benches/results/mount.md`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{PASSWORD, check_flags, collect_files, exec, machine, median, prepare_data, sources, tree_size};

/// What is measured, in table order; `Time` rows get ratios, the others are shown as they are.
const ROWS: [(&str, Kind); 9] = [
    ("find -printf, cold", Kind::Time),
    ("find -printf, warm", Kind::Time),
    ("cat largest file", Kind::Time),
    ("tar of the small files", Kind::Time),
    ("RSS after walk", Kind::Mb),
    ("RSS after reads", Kind::Mb),
    ("peak RSS (VmHWM, includes the KDF)", Kind::Mb),
    ("restore of the largest file", Kind::Time),
    ("open the repository (`snapshots`)", Kind::Time),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Time,
    Mb,
}

struct Tool {
    name: &'static str,
    repo: PathBuf,
    /// The command line that mounts the repository on the mount point (appended).
    mount: Vec<String>,
}

pub fn run(args: &[String]) -> Result<()> {
    check_flags(args, &["--mount", "--quick"], &["--rounds"])?;
    let quick = args.iter().any(|a| a == "--quick");
    let rounds: usize = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args.get(i + 1).context("--rounds needs a number")?.parse()?,
        None => 3,
    };
    for tool in ["restic", "fusermount3", "bash", "find", "tar", "/usr/bin/time"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output()?.stdout.is_empty() {
            bail!("{tool} is missing: apt-get install restic fuse3 findutils tar time");
        }
    }
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let snapfs = target.join("release/snapfs").display().to_string();
    let work = target.join("bench-mount");
    let data = target.join("bench/data");
    prepare_data(&data, quick)?;
    let (files, bytes) = tree_size(&data)?;
    let big = largest_file(&data)?;
    let small = small_files_dir(&data, if quick { 5_000 } else { 30_000 })?;
    let big_size = fs::metadata(&big)?.len();
    println!(
        "data: {files} files, {:.2} GB; largest file {} ({:.0} MB)",
        bytes as f64 / 1e9,
        big.display(),
        mb(big_size)
    );
    println!("small files: {} ({} files, {:.0} MB)", small.0.display(), small.1, mb(small.2));

    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let mp = work.join("mnt");
    fs::create_dir_all(&mp)?;
    let tools = [
        Tool { name: "snapfs", repo: work.join("repo-snapfs"), mount: vec![snapfs.clone(), "-q".into()] },
        Tool { name: "restic", repo: work.join("repo-restic"), mount: vec!["restic".into(), "-q".into()] },
    ];
    for t in &tools {
        let repo = t.repo.display().to_string();
        let d = data.display().to_string();
        let (bin, repo_flag) = if t.name == "snapfs" { (snapfs.as_str(), "--repo") } else { ("restic", "-r") };
        for cmd in [vec!["init"], vec!["backup", d.as_str()]] {
            let mut argv = vec![bin.to_string(), repo_flag.into(), repo.clone(), "-q".into()];
            argv.extend(cmd.iter().map(|s| s.to_string()));
            let s = exec(&argv, &work)?;
            println!("  {} {:<8} {:>7.2} s", t.name, cmd[0], s.wall);
        }
    }
    // The snapshot holds the data under its absolute path, in both tools' mounts.
    let inside = |p: &Path| mp.join("snapshots/latest").join(p.strip_prefix("/").expect("absolute"));

    let mut results: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        let order: Vec<&Tool> = if round % 2 == 0 { tools.iter().collect() } else { tools.iter().rev().collect() };
        for t in order {
            let mut argv = t.mount.clone();
            let repo_flag = if t.name == "snapfs" { "--repo" } else { "-r" };
            argv.extend([repo_flag.to_string(), t.repo.display().to_string(), "mount".into()]);
            argv.push(mp.display().to_string());
            let mut child = spawn_mount(&argv, &work.join(format!("{}.log", t.name)))?;
            let measured = (|| -> Result<Vec<(usize, f64)>> {
                wait_for(&inside(&data), &mut child)?;
                let pid = child.id();
                let mut m = Vec::new();
                let q = |p: &Path| shell_quote(&p.display().to_string());
                let find = format!("find {} -printf '%s %m %T@\\n' > /dev/null", q(&inside(&data)));
                m.push((0, timed(&find, true)?));
                m.push((1, timed(&find, false)?));
                m.push((4, rss(pid, "VmRSS:")?));
                m.push((2, timed(&format!("cat {} > /dev/null", q(&inside(&big))), true)?));
                let (dir, name) = (inside(small.0.parent().expect("below data")), small.0.file_name().expect("named"));
                let tar = format!("tar -C {} -c {} | cat > /dev/null", q(&dir), q(Path::new(name)));
                m.push((3, timed(&tar, true)?));
                m.push((5, rss(pid, "VmRSS:")?));
                m.push((6, rss(pid, "VmHWM:")?));
                Ok(m)
            })();
            unmount(&mp, &mut child)?;
            for (row, v) in measured? {
                results.entry((t.name, row)).or_default().push(v);
                println!("  {:<30} {:<8} {}", ROWS[row].0, t.name, show(ROWS[row].1, v));
            }
            if t.name == "snapfs" {
                let to = work.join("restored");
                let _ = fs::remove_dir_all(&to);
                let spec = format!("latest:{}", big.display());
                let argv =
                    [snapfs.as_str(), "--repo", &t.repo.display().to_string(), "-q", "restore", &spec, "--target"];
                let cmd = format!("{} {}", argv.map(shell_quote).join(" "), shell_quote(&to.display().to_string()));
                let s = timed(&cmd, true)?;
                results.entry((t.name, 7)).or_default().push(s);
                println!("  {:<30} {:<8} {}", ROWS[7].0, t.name, show(Kind::Time, s));
                if fs::metadata(to.join(big.file_name().expect("named")))?.len() != big_size {
                    bail!("the restored file has the wrong size");
                }
                fs::remove_dir_all(&to)?;
                // What restore pays before reading anything (mostly the password's KDF).
                let open = format!("{} --repo {} -q snapshots > /dev/null", shell_quote(&snapfs), shell_quote(argv[2]));
                let s = timed(&open, false)?;
                results.entry((t.name, 8)).or_default().push(s);
                println!("  {:<30} {:<8} {}", ROWS[8].0, t.name, show(Kind::Time, s));
            }
        }
    }
    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: {files} files, {:.2} GB ({}). Largest file: {} ({:.0} MB). Small files: `{}` ({} files, {:.0} MB).\n",
        bytes as f64 / 1e9,
        sources(quick).join(", "),
        big.strip_prefix(&data)?.display(),
        mb(big_size),
        small.0.strip_prefix(&data)?.display(),
        small.1,
        mb(small.2)
    ));
    out.push_str(&table(&results, rounds, big_size));
    println!("\n{out}");
    let dest = crate::workspace_root().join("benches/results");
    fs::create_dir_all(&dest)?;
    let name = if quick { "mount-quick.md" } else { "mount.md" };
    fs::write(dest.join(name), &out)?;
    println!("written to benches/results/{name}");
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn show(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Time => format!("{v:>7.2} s"),
        Kind::Mb => format!("{v:>7.0} MB"),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn largest_file(data: &Path) -> Result<PathBuf> {
    let mut files = Vec::new();
    collect_files(data, &mut files)?;
    files.into_iter().max_by_key(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0)).context("no files in the data")
}

/// The directory with the most files (counted recursively) up to `max`, with its file count and
/// bytes: the kind of tree (a crate's or the standard library's sources) where per-file costs
/// dominate.
fn small_files_dir(data: &Path, max: u64) -> Result<(PathBuf, u64, u64)> {
    fn walk(dir: &Path, max: u64, best: &mut Option<(PathBuf, u64, u64)>) -> Result<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for e in fs::read_dir(dir)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                let (cn, cb) = walk(&e.path(), max, best)?;
                n += cn;
                bytes += cb;
            } else if ft.is_file() {
                n += 1;
                bytes += e.metadata()?.len();
            }
        }
        if n <= max && best.as_ref().is_none_or(|b| n > b.1) {
            *best = Some((dir.to_path_buf(), n, bytes));
        }
        Ok((n, bytes))
    }
    let mut best = None;
    walk(data, max, &mut best)?;
    best.filter(|b| b.0 != data).context("no directory of small files in the data")
}

fn spawn_mount(argv: &[String], log: &Path) -> Result<Child> {
    let log = fs::File::create(log)?;
    Command::new(&argv[0])
        .args(&argv[1..])
        .env("SNAPFS_PASSWORD", PASSWORD)
        .env("SNAPFS_CACHE_DIR", crate::bench::cache_dir())
        .env("RESTIC_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", argv.join(" ")))
}

/// Waits until the mount shows `path` (the mount process is up and has read the snapshots).
fn wait_for(path: &Path, child: &mut Child) -> Result<()> {
    let started = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("the mount process exited ({status}) before {} appeared", path.display());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{} did not appear within two minutes", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn unmount(mp: &Path, child: &mut Child) -> Result<()> {
    for _ in 0..100 {
        if Command::new("fusermount3").arg("-u").arg(mp).stderr(Stdio::null()).status()?.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait()?;
    if !status.success() {
        // restic ends with a non-zero status when unmounted from outside; only a crash matters.
        eprintln!("  (mount process ended with {status})");
    }
    Ok(())
}

/// Wall seconds of a shell command, after dropping the kernel's caches when `cold`.
fn timed(cmd: &str, cold: bool) -> Result<f64> {
    if cold {
        // Best effort: only root may, and the fresh mount process is what makes FUSE cold anyway.
        let _ = fs::write("/proc/sys/vm/drop_caches", "3");
    }
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {cmd}")])
        .env("SNAPFS_PASSWORD", PASSWORD)
        .env("SNAPFS_CACHE_DIR", crate::bench::cache_dir())
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(wall)
}

/// A process's resident set now (`VmRSS:`) or at its peak so far (`VmHWM:`), in MB.
fn rss(pid: u32, field: &str) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kb * 1024.0 / 1e6)
}

fn table(results: &BTreeMap<(&str, usize), Vec<f64>>, rounds: usize, big: u64) -> String {
    let med = |tool: &str, row: usize| results.get(&(tool, row)).map(|v| median(&mut v.clone()));
    let mut s = format!(
        "\n## Results (medians of {rounds}; ratio = restic / snapfs)\n\n| step | snapfs | restic | ratio |\n| --- | --- | --- | --- |\n"
    );
    for (row, (name, kind)) in ROWS.iter().enumerate() {
        let (ours, theirs) = (med("snapfs", row), med("restic", row));
        let cell = |v: Option<f64>| v.map_or("n/a".into(), |v| show(*kind, v).trim().to_string());
        let ratio = match (ours, theirs, kind) {
            (Some(o), Some(t), Kind::Time) if o > 0.0 => format!("**{:.1}x**", t / o),
            _ => String::new(),
        };
        s.push_str(&format!("| {name} | {} | {} | {ratio} |\n", cell(ours), cell(theirs)));
    }
    if let (Some(cat), Some(restore), Some(open)) = (med("snapfs", 2), med("snapfs", 7), med("snapfs", 8)) {
        s.push_str(&format!(
            "\nLargest file through the mount: {:.0} MB/s (restic mount {}); `snapfs restore` of it: {:.0} MB/s \
             ({:.0} MB/s without opening the repository); mount / restore throughput = {:.0}% ({:.0}%).\n",
            mb(big) / cat,
            med("restic", 2).map_or("n/a".into(), |t| format!("{:.0} MB/s", mb(big) / t)),
            mb(big) / restore,
            mb(big) / (restore - open),
            100.0 * restore / cat,
            100.0 * (restore - open) / cat
        ));
    }
    s
}
