//! `cargo xtask bench`: snapfs against restic, borg and (when installed) rustic on the same
//! data, in one run.
//!
//! Each round gives every tool a fresh repository and runs, tool after tool so they alternate
//! under the same machine load (the order turns by one tool each round): initial backup,
//! unchanged re-backup, then (after one change to ~2% of the files, the same for all) an
//! incremental backup, a full restore and a verification of every byte. Before each step the
//! files it reads (the data, or the tool's repository) are read once, so every tool starts from
//! a warm cache, and `sync` runs. The change is undone before the next round. Medians over the
//! rounds are printed as a markdown table with ratios against snapfs, after the limits of the
//! machine on the same data (read, BLAKE3, zstd -3 with one and two threads), and written to
//! `benches/results/latest.md`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub(crate) const PASSWORD: &str = "bench-password";
const STEPS: [&str; 6] = [
    "initial backup",
    "unchanged re-backup",
    "incremental (~2% of files)",
    "restore",
    "check --read-data",
    "dump as tar to /dev/null",
];

#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) wall: f64,
    pub(crate) cpu: f64,
    pub(crate) rss_mb: f64,
}

struct Tool {
    name: &'static str,
    repo: PathBuf,
    bin: PathBuf,
}

impl Tool {
    /// The command line of one step, run with the data directory as the current directory.
    fn step(&self, step: usize, data: &Path, restore_to: &Path) -> Vec<String> {
        let repo = self.repo.display().to_string();
        let data = data.display().to_string();
        let bin = self.bin.display().to_string();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // A baseline snapfs (another build) runs the same commands.
        let name = if self.name.starts_with("snapfs") { "snapfs" } else { self.name };
        if step == 5 {
            return dump_step(name, &bin, &repo);
        }
        match (name, step) {
            ("snapfs", 0..=2) => v(&[&bin, "--repo", &repo, "-q", "backup", &data]),
            ("snapfs", 3) => {
                v(&[&bin, "--repo", &repo, "-q", "restore", "latest", "--target", &restore_to.display().to_string()])
            }
            ("snapfs", _) => v(&[&bin, "--repo", &repo, "-q", "check", "--read-data"]),
            ("restic", 0..=2) => v(&["restic", "-r", &repo, "-q", "backup", &data]),
            ("restic", 3) => {
                v(&["restic", "-r", &repo, "-q", "restore", "latest", "--target", &restore_to.display().to_string()])
            }
            ("restic", _) => v(&["restic", "-r", &repo, "-q", "check", "--read-data"]),
            ("rustic", 0..=2) => v(&["rustic", "-r", &repo, "--no-progress", "backup", &data]),
            ("rustic", 3) => {
                v(&["rustic", "-r", &repo, "--no-progress", "restore", "latest", &restore_to.display().to_string()])
            }
            ("rustic", _) => v(&["rustic", "-r", &repo, "--no-progress", "check", "--read-data"]),
            (borg, 0..=2) => {
                let comp = if borg == "borg zstd,3" { "zstd,3" } else { "lz4" };
                let archive = format!("{repo}::a{step}");
                v(&["borg", "create", "--compression", comp, &archive, &data])
            }
            (_, 3) => v(&["sh", "-c", &format!("cd {} && borg extract {repo}::a2", restore_to.display())]),
            (_, _) => v(&["borg", "check", "--verify-data", &repo]),
        }
    }

    fn init(&self) -> Vec<String> {
        let repo = self.repo.display().to_string();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self.name {
            n if n.starts_with("snapfs") => v(&[&self.bin.display().to_string(), "--repo", &repo, "-q", "init"]),
            "restic" => v(&["restic", "-r", &repo, "-q", "init"]),
            "rustic" => v(&["rustic", "-r", &repo, "--no-progress", "init"]),
            _ => v(&["borg", "init", "--encryption", "repokey-blake2", &repo]),
        }
    }
}

/// A new ext4 filesystem on a loop device for one restore. On the shared disk, ext4's inode
/// allocator scans past every inode deleted in the last minutes (`recently_deleted`), so a
/// restore right after another tool's restore was deleted spent 70% of its CPU there, and
/// the order of the tools decided the result. A fresh filesystem is also what restoring to a
/// new disk looks like. Falls back to the shared disk (with a note) where loop mounts fail.
struct FreshFs {
    image: PathBuf,
    mount_point: PathBuf,
}

impl FreshFs {
    fn mount(image: &Path, mount_point: &Path, bytes: u64) -> Result<Option<FreshFs>> {
        // Left over from an interrupted run, if any.
        let _ = Command::new("umount").arg(mount_point).stderr(std::process::Stdio::null()).status();
        let _ = fs::remove_file(image);
        fs::File::create(image)?.set_len(bytes + (1 << 30))?;
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        if ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))
            && ok(Command::new("mount").args(["-o", "loop"]).arg(image).arg(mount_point))
        {
            return Ok(Some(FreshFs { image: image.to_path_buf(), mount_point: mount_point.to_path_buf() }));
        }
        println!("  (no loop mount: restoring to the shared disk, where ext4's inode allocator adds noise)");
        let _ = fs::remove_file(image);
        Ok(None)
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
        let _ = fs::remove_file(&self.image);
    }
}

/// Refuses flags a task does not know, so a typo never starts a long run.
pub(crate) fn check_flags(args: &[String], known: &[&str], with_value: &[&str]) -> Result<()> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if with_value.contains(&a.as_str()) {
            it.next();
        } else if !known.contains(&a.as_str()) {
            bail!("unknown bench option {a:?}; see `cargo xtask help`");
        }
    }
    Ok(())
}

/// `--quick`, `--rounds N` (default 1 quick, else 3) and `--snapfs PATH` (a binary built
/// elsewhere; without it, a release build of this tree).
pub(crate) fn quick_rounds_binary(args: &[String]) -> Result<(bool, usize, String)> {
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let rounds: usize = value("--rounds").map_or(Ok(if quick { 1 } else { 3 }), |v| v.parse())?;
    let snapfs = match value("--snapfs") {
        Some(p) => p,
        None => {
            crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
            crate::target_dir()?.join("release/snapfs").display().to_string()
        }
    };
    Ok((quick, rounds, snapfs))
}

/// Writes `bytes` of zeros under `dir`, syncs and deletes them, so that a step that writes
/// about that much finds its page-cache memory freshly freed. On this VM, memory the guest has
/// left free for a while was handed back to the host (virtio-balloon free page reporting), and
/// touching it again costs the kernel a host fault per page: 1 GiB written into the page cache
/// takes 2.6-6 s of system time then, 0.3 s right after 1 GiB was deleted. Without this, a step
/// that follows a deletion (`cp` after the last copy's `rm`) and one that does not (a rotation,
/// whose old packs go only at its end) measure the host, not the tools: rotate took 8.2 s cold
/// and 4.5 s after freeing 1.5 GB.
pub(crate) fn recycle_memory(dir: &Path, bytes: u64) -> Result<()> {
    use std::io::Write;
    let path = dir.join("recycle-memory.tmp");
    let mut f = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = vec![0u8; 4 << 20];
    for _ in 0..bytes.div_ceil(block.len() as u64) {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    drop(f);
    fs::remove_file(&path)?;
    Ok(())
}

/// Where a bench's restores go: tmpfs (`/dev/shm/NAME`) unless `--restore-on-disk` or no
/// tmpfs, and whether that is disk. This machine's journal-less ext4 skips every inode freed
/// in the last minutes (`recently_deleted`), so a restore to disk after a large deletion
/// measures the filesystem's history rather than the tools.
pub(crate) fn restore_root(args: &[String], disk: &Path, name: &str) -> (PathBuf, bool) {
    let shm = Path::new("/dev/shm");
    if args.iter().any(|a| a == "--restore-on-disk") || !shm.is_dir() {
        (disk.to_path_buf(), true)
    } else {
        (shm.join(name), false)
    }
}

pub fn run(args: &[String]) -> Result<()> {
    check_flags(args, &["--quick", "--limits", "--no-borg"], &["--rounds", "--baseline"])?;
    // `--baseline BIN`: another snapfs build beside this one, same data, same run (to show a
    // change costs nothing); `--no-borg` leaves borg out of a run that only needs that.
    let baseline = match args.iter().position(|a| a == "--baseline") {
        Some(i) => Some(PathBuf::from(args.get(i + 1).context("--baseline needs a snapfs binary")?)),
        None => None,
    };
    let quick = args.iter().any(|a| a == "--quick");
    let rounds: usize = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args.get(i + 1).context("--rounds needs a number")?.parse()?,
        None if quick => 1,
        None => 3,
    };
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let work = target.join("bench");
    let data = work.join("data");
    let snapfs = target.join("release").join("snapfs");
    for tool in ["restic", "borg", "/usr/bin/time"] {
        if !installed(tool) {
            bail!("{tool} is missing: apt-get install restic borgbackup time");
        }
    }
    prepare_data(&data, quick)?;
    let (files, bytes) = tree_size(&data)?;
    println!("data: {files} files, {:.2} GB in {}", bytes as f64 / 1e9, data.display());

    let mut out = String::new();
    out.push_str(&machine()?);
    out.push_str(&format!(
        "\nData: {files} files, {:.2} GB ({}, and a generated tree of random, text-like and repeated files).\n\n",
        bytes as f64 / 1e9,
        sources(quick).join(", ")
    ));
    // The limits are for a warm cache too; the first read of a run can come from the disk.
    warm(&data)?;
    out.push_str(&limits(&data)?);
    if args.iter().any(|a| a == "--limits") {
        println!("{out}");
        return Ok(());
    }

    let mut tools = vec!["snapfs", "restic"];
    if baseline.is_some() {
        tools.insert(1, "snapfs baseline");
    }
    if !args.iter().any(|a| a == "--no-borg") {
        tools.extend(["borg zstd,3", "borg lz4"]);
    }
    if installed("rustic") {
        tools.push("rustic");
    } else {
        println!("rustic is not installed: left out (cargo install --locked rustic-rs adds it)");
    }
    let mut results: BTreeMap<(&str, usize), Vec<Sample>> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        let mut tools: Vec<Tool> = tools
            .iter()
            .map(|name| Tool {
                name,
                repo: work.join(format!("repo-{}", name.replace([' ', ','], "-"))),
                bin: if *name == "snapfs baseline" { baseline.clone().unwrap_or_default() } else { snapfs.clone() },
            })
            .collect();
        // Each tool inherits the page cache and writeback its predecessor left, so the order
        // turns every round rather than favouring whoever comes last.
        let turn = round % tools.len();
        tools.rotate_left(turn);
        let _ = fs::remove_dir_all(cache_dir());
        for t in &tools {
            let _ = fs::remove_dir_all(&t.repo);
            exec(&t.init(), &data)?;
        }
        let restore_to = work.join("restore");
        for (step, step_name) in STEPS.iter().enumerate() {
            if step == 2 {
                change(&data, &work.join("saved"), true)?;
            }
            for t in &tools {
                if step == 4 && t.name.starts_with("snapfs") && !has_check(&t.bin) {
                    continue;
                }
                if step == 5 && (t.name == "rustic" || t.name.starts_with("snapfs") && !has_dump(&t.bin)) {
                    continue;
                }
                let _ = fs::remove_dir_all(&restore_to);
                fs::create_dir_all(&restore_to)?;
                let _fresh =
                    if step == 3 { FreshFs::mount(&work.join("restore.img"), &restore_to, 2 * bytes)? } else { None };
                // The targets are for a warm cache, and this VM's page cache does not hold the
                // data, four repositories and a restore at once: read what the step reads first,
                // the same for every tool.
                warm(if step <= 2 { &data } else { &t.repo })?;
                // The previous tool's writes (and mkfs's) are flushed now, not during this step.
                crate::run(&mut Command::new("sync"))?;
                let s = exec(&t.step(step, &data, &restore_to), &data)?;
                println!(
                    "  {:<28} {:<12} {:>8.2} s  cpu {:>7.2} s  rss {:>6.0} MB",
                    step_name, t.name, s.wall, s.cpu, s.rss_mb
                );
                results.entry((t.name, step)).or_default().push(s);
                if step == 3 && t.name.starts_with("snapfs") {
                    verify_restore(&data, &restore_to)?;
                }
            }
            if step == 2 {
                for t in &tools {
                    sizes.entry(t.name).or_default().push(dir_size(&t.repo)?);
                }
            }
        }
        let _ = fs::remove_dir_all(&restore_to);
        change(&data, &work.join("saved"), false)?;
    }
    out.push_str(&table(&tools, &results, &sizes));
    if let Some(b) = &baseline {
        out.push_str(&format!("\n`snapfs baseline` is {}; `snapfs` is this build.\n", b.display()));
    }
    let _ = fs::remove_dir_all(cache_dir());
    println!("\n{out}");
    let dest = crate::workspace_root().join("benches/results");
    fs::create_dir_all(&dest)?;
    let name = if baseline.is_some() {
        "baseline.md"
    } else if quick {
        "quick.md"
    } else {
        "latest.md"
    };
    fs::write(dest.join(name), &out)?;
    println!("written to benches/results/{name}");
    Ok(())
}

fn installed(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| !o.stdout.is_empty())
}

pub(crate) fn sources(quick: bool) -> Vec<String> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut v = vec![format!("{home}/.cargo/registry/src")];
    if !quick {
        v.push(format!("{home}/.rustup/toolchains"));
    }
    v
}

/// Copies the real data (it will be changed) and adds a generated part with known properties.
pub(crate) fn prepare_data(data: &Path, quick: bool) -> Result<()> {
    let stamp = data.join(".complete");
    if stamp.exists() && fs::read_to_string(&stamp)? == format!("{quick}") {
        return Ok(());
    }
    let _ = fs::remove_dir_all(data);
    fs::create_dir_all(data)?;
    for (i, src) in sources(quick).iter().enumerate() {
        if Path::new(src).exists() {
            let dest = data.join(format!("real{i}"));
            exec(&["cp".into(), "-a".into(), src.clone(), dest.display().to_string()], data)?;
        }
    }
    let gen_dir = data.join("generated");
    let mut rng = 0x5eed_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let total: u64 = if quick { 64 << 20 } else { 256 << 20 };
    let mut written = 0u64;
    let mut n = 0;
    while written < total {
        let dir = gen_dir.join(format!("d{}", n / 100));
        fs::create_dir_all(&dir)?;
        let size = (next() % (4 << 20)) as usize;
        let mut buf = Vec::with_capacity(size);
        // Alternate random and text-like files, and repeat every tenth file: compressible,
        // partly duplicate data, like a real home directory.
        if n % 10 == 9 {
            fs::copy(gen_dir.join("d0").join("f0"), dir.join(format!("f{n}")))?;
        } else {
            while buf.len() < size {
                if n % 2 == 0 {
                    buf.extend_from_slice(&next().to_le_bytes());
                } else {
                    buf.extend_from_slice(
                        format!("line {} of some log text, value={}\n", buf.len(), next() % 1000).as_bytes(),
                    );
                }
            }
            fs::write(dir.join(format!("f{n}")), &buf)?;
        }
        written += size as u64;
        n += 1;
    }
    fs::write(stamp, format!("{quick}"))?;
    Ok(())
}

/// Applies (or undoes) the same change for every tool: about 2% of the files get an append,
/// an insert in the middle, or are deleted, and new files appear.
fn change(data: &Path, saved: &Path, apply: bool) -> Result<()> {
    let mut files = Vec::new();
    collect_files(data, &mut files)?;
    files.sort();
    if !apply {
        if saved.exists() {
            for f in &files {
                if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("bench-new-")) {
                    fs::remove_file(f)?;
                }
            }
            let status = Command::new("cp").arg("-a").arg(format!("{}/.", saved.display())).arg(data).status()?;
            if !status.success() {
                bail!("restoring changed files failed");
            }
            fs::remove_dir_all(saved)?;
        }
        return Ok(());
    }
    let _ = fs::remove_dir_all(saved);
    for (i, f) in files.iter().enumerate().filter(|(i, _)| i % 50 == 7) {
        let rel = f.strip_prefix(data)?;
        let keep = saved.join(rel);
        fs::create_dir_all(keep.parent().expect("has a parent"))?;
        Command::new("cp").arg("-a").arg(f).arg(&keep).status()?;
        let mut content = fs::read(f)?;
        match i % 3 {
            0 => content.extend_from_slice(b"appended by the benchmark\n"),
            1 => {
                let mid = content.len() / 2;
                content.splice(mid..mid, b"inserted by the benchmark".iter().copied());
            }
            _ => {
                fs::remove_file(f)?;
                continue;
            }
        }
        fs::write(f, content)?;
        fs::write(f.with_file_name(format!("bench-new-{i}")), format!("new file {i}\n").repeat(100))?;
    }
    Ok(())
}

/// Reads every file under `dir` into the page cache.
fn warm(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    let mut buf = Vec::new();
    for f in files {
        buf.clear();
        // A file that cannot be read (a lock file that went away) only stays cold.
        let _ = fs::File::open(f).and_then(|mut h| h.read_to_end(&mut buf));
    }
    Ok(())
}

pub(crate) fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            collect_files(&e.path(), out)?;
        } else if ft.is_file() && e.file_name() != ".complete" {
            out.push(e.path());
        }
    }
    Ok(())
}

pub(crate) fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    let bytes = files.iter().map(|f| fs::symlink_metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    Ok((files.len() as u64, bytes))
}

fn dir_size(dir: &Path) -> Result<u64> {
    let out = Command::new("du").arg("-sb").arg(dir).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("0").parse()?)
}

/// The whole latest snapshot as a tar, thrown away: the archive path of each tool (rustic's
/// dump writes no archive of a directory, so it has no row).
fn dump_step(tool: &str, bin: &str, repo: &str) -> Vec<String> {
    let cmd = match tool {
        "snapfs" => format!("'{bin}' --repo '{repo}' -q dump latest --archive tar > /dev/null"),
        "restic" => format!("restic -r '{repo}' -q dump latest / --archive tar > /dev/null"),
        _ => format!("borg export-tar '{repo}::a2' - > /dev/null"),
    };
    vec!["sh".into(), "-c".into(), cmd]
}

fn has_dump(snapfs: &Path) -> bool {
    Command::new(snapfs).args(["dump", "--help"]).output().is_ok_and(|o| o.status.success())
}

fn has_check(snapfs: &Path) -> bool {
    Command::new(snapfs).args(["check", "--help"]).output().is_ok_and(|o| o.status.success())
}

fn verify_restore(data: &Path, restored: &Path) -> Result<()> {
    let inner = restored.join(data.strip_prefix("/")?);
    let status = Command::new("diff").arg("-r").arg("-q").arg(data).arg(&inner).status()?;
    if !status.success() {
        bail!("snapfs restore differs from the data");
    }
    Ok(())
}

/// snapfs's index cache during a bench run: out of the user's cache, and easy to measure.
pub(crate) fn cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("snapfs-bench-cache-{}", std::process::id()))
}

/// Runs a command under GNU time, with every tool's password in its environment.
pub(crate) fn exec(argv: &[String], cwd: &Path) -> Result<Sample> {
    let stats = std::env::temp_dir().join(format!("snapfs-bench-time-{}", std::process::id()));
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "-o"])
        .arg(&stats)
        .args(argv)
        .current_dir(cwd)
        .env("SNAPFS_PASSWORD", PASSWORD)
        .env("SNAPFS_CACHE_DIR", cache_dir())
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RUSTIC_PASSWORD", PASSWORD)
        .env("BORG_PASSPHRASE", PASSWORD)
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("`{}` failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    let text = fs::read_to_string(&stats)?;
    let f: Vec<f64> = text.lines().last().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let _ = fs::remove_file(&stats);
    match f.as_slice() {
        [u, s, m] => Ok(Sample { wall, cpu: u + s, rss_mb: m / 1024.0 }),
        _ => bail!("cannot read GNU time's output {text:?}"),
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn table(tools: &[&str], results: &BTreeMap<(&str, usize), Vec<Sample>>, sizes: &BTreeMap<&str, Vec<u64>>) -> String {
    let mut s = String::from("\n## Results (medians; ratio = peer time / snapfs time)\n\n| step |");
    for t in tools {
        s.push_str(&format!(" {t} |"));
    }
    s.push_str("\n| --- |");
    s.push_str(&" --- |".repeat(tools.len()));
    s.push('\n');
    for (i, step) in STEPS.iter().enumerate() {
        let ours = results.get(&("snapfs", i)).map(|v| median(&mut v.iter().map(|x| x.wall).collect::<Vec<_>>()));
        s.push_str(&format!("| {step} |"));
        for t in tools {
            match results.get(&(*t, i)) {
                Some(v) => {
                    let wall = median(&mut v.iter().map(|x| x.wall).collect::<Vec<_>>());
                    let cpu = median(&mut v.iter().map(|x| x.cpu).collect::<Vec<_>>());
                    let rss = median(&mut v.iter().map(|x| x.rss_mb).collect::<Vec<_>>());
                    let ratio = match ours {
                        Some(o) if *t != "snapfs" && o > 0.0 => format!(", **{:.1}x**", wall / o),
                        _ => String::new(),
                    };
                    s.push_str(&format!(" {wall:.2} s (cpu {cpu:.1} s, {rss:.0} MB{ratio}) |"));
                }
                None => s.push_str(" n/a |"),
            }
        }
        s.push('\n');
    }
    s.push_str("| repository size |");
    for t in tools {
        let mb = sizes.get(t).map(|v| median(&mut v.iter().map(|&b| b as f64 / 1e6).collect::<Vec<_>>()));
        s.push_str(&mb.map_or(" n/a |".into(), |m| format!(" {m:.0} MB |")));
    }
    s.push('\n');
    s
}

pub(crate) fn machine() -> Result<String> {
    let cpu = fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let version = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
            .unwrap_or_else(|_| format!("{} missing", argv[0]))
    };
    Ok(format!(
        "# snapfs benchmark\n\nMachine: {cpu}, {cores} cores. {}; {}; {}; {}.\n",
        version(&["restic", "version"]),
        version(&["borg", "--version"]),
        version(&["rustic", "--version"]),
        version(&[crate::target_dir()?.join("release/snapfs").to_str().unwrap_or("snapfs"), "--version"])
    ))
}

/// What the hardware allows on this data: reading it, hashing it, compressing it.
fn limits(data: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(data, &mut files)?;
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = Vec::new();
    for f in &files {
        buf.clear();
        total += fs::File::open(f)?.read_to_end(&mut buf)? as u64;
    }
    let read = started.elapsed().as_secs_f64();
    let per_thread = |threads: usize, work: fn(&[u8])| -> Result<f64> {
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let files = &files;
                s.spawn(move || {
                    let mut buf = Vec::new();
                    for f in files.iter().skip(t).step_by(threads) {
                        buf.clear();
                        if fs::File::open(f).and_then(|mut h| h.read_to_end(&mut buf)).is_ok() {
                            work(&buf);
                        }
                    }
                });
            }
        });
        Ok(started.elapsed().as_secs_f64())
    };
    let hash: fn(&[u8]) = |b| {
        std::hint::black_box(blake3::hash(b));
    };
    let zstd3: fn(&[u8]) = |b| {
        std::hint::black_box(zstd::bulk::compress(b, 3).map(|v| v.len()).unwrap_or(0));
    };
    let gb = total as f64 / 1e9;
    let (unpack1, unpack2) = unpack_floor(&files);
    Ok(format!(
        "\n## Limits on the same data (warm cache, in-process)\n\n| stage | 1 thread | 2 threads |\n| --- | --- | --- |\n\
         | read all files | {read:.2} s ({:.0} MB/s) | |\n| BLAKE3 (read + hash) | {:.2} s | {:.2} s |\n| zstd -3 (read + compress) | {:.2} s | {:.2} s |\n\
         | zstd -d + BLAKE3 of every file's frame, from memory | {unpack1:.2} s | {unpack2:.2} s |\n",
        gb * 1e3 / read,
        per_thread(1, hash)?,
        per_thread(2, hash)?,
        per_thread(1, zstd3)?,
        per_thread(2, zstd3)?,
    ))
}

/// The least work restore and `check --read-data` do per byte, whatever the tool: decompress
/// and re-hash. Frames are made first (untimed) and held in memory (about a third of the data).
fn unpack_floor(files: &[PathBuf]) -> (f64, f64) {
    let frames: Vec<Vec<u8>> = files
        .iter()
        .filter_map(|f| fs::read(f).ok())
        .filter_map(|b| zstd::bulk::compress(&b, 3).ok().map(|z| (z, b.len())))
        .map(|(mut z, n)| {
            z.extend_from_slice(&(n as u64).to_le_bytes());
            z
        })
        .collect();
    let run = |threads: usize| {
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let frames = &frames;
                s.spawn(move || {
                    for z in frames.iter().skip(t).step_by(threads) {
                        let (frame, len) = z.split_at(z.len() - 8);
                        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
                        if let Ok(plain) = zstd::bulk::decompress(frame, len) {
                            std::hint::black_box(blake3::hash(&plain));
                        }
                    }
                });
            }
        });
        started.elapsed().as_secs_f64()
    };
    (run(1), run(2))
}

/// `cargo xtask bench --scale [--max N]`: how backup time and memory grow with the number of
/// files (10k, 100k, 1M small files) and with the number of snapshots (50 backups of a slowly
/// changing tree). Written to `benches/results/scale.md`.
pub fn scale(args: &[String]) -> Result<()> {
    check_flags(args, &["--scale"], &["--max"])?;
    let max: usize = match args.iter().position(|a| a == "--max") {
        Some(i) => args.get(i + 1).context("--max needs a number")?.parse()?,
        None => 1_000_000,
    };
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let snapfs = target.join("release").join("snapfs");
    let work = target.join("bench-scale");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let bin = snapfs.display().to_string();
    let cmd = |repo: &Path, rest: &[&str]| {
        let mut v = vec![bin.clone(), "--repo".into(), repo.display().to_string(), "-q".into()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let mut out = machine()?;
    out.push_str("\n## Backup cost by number of files (small files of 1–4 KiB, 1,000 per directory)\n\n");
    out.push_str("| files | initial backup | peak RSS | unchanged re-backup | peak RSS | µs per file (re-backup) |\n| --- | --- | --- | --- | --- | --- |\n");
    let mut n = 10_000;
    while n <= max {
        let data = work.join(format!("files-{n}"));
        small_files(&data, n)?;
        // Otherwise the backup competes with the writeback of the files just made (1M files
        // took 36 s instead of 30 s).
        crate::run(&mut Command::new("sync"))?;
        let repo = work.join(format!("repo-{n}"));
        exec(&cmd(&repo, &["init"]), &work)?;
        let first = exec(&cmd(&repo, &["backup", &data.display().to_string()]), &work)?;
        let again = exec(&cmd(&repo, &["backup", &data.display().to_string()]), &work)?;
        let line = format!(
            "| {n} | {:.2} s | {:.0} MB | {:.2} s | {:.0} MB | {:.1} |\n",
            first.wall,
            first.rss_mb,
            again.wall,
            again.rss_mb,
            again.wall * 1e6 / n as f64
        );
        print!("{line}");
        out.push_str(&line);
        fs::remove_dir_all(&data)?;
        fs::remove_dir_all(&repo)?;
        n *= 10;
    }

    out.push_str("\n## Backup cost by number of snapshots (10,000 files, 1% changed before each backup)\n\n");
    out.push_str("| backup # | wall | peak RSS | index size |\n| --- | --- | --- | --- |\n");
    let data = work.join("slow");
    small_files(&data, 10_000)?;
    let repo = work.join("repo-slow");
    // The index is a per-client cache now (format-spec §9): measure it where it lives.
    let _ = fs::remove_dir_all(cache_dir());
    exec(&cmd(&repo, &["init"]), &work)?;
    let mut files = Vec::new();
    collect_files(&data, &mut files)?;
    files.sort();
    for round in 1..=50 {
        for f in files.iter().skip(round).step_by(100) {
            fs::write(f, format!("changed in round {round}\n"))?;
        }
        let s = exec(&cmd(&repo, &["backup", &data.display().to_string()]), &work)?;
        if [1, 2, 10, 25, 50].contains(&round) {
            let index = dir_bytes(&cache_dir())? as f64 / 1e6;
            let line = format!("| {round} | {:.2} s | {:.0} MB | {index:.1} MB |\n", s.wall, s.rss_mb);
            print!("{line}");
            out.push_str(&line);
        }
    }
    fs::remove_dir_all(&work)?;
    let _ = fs::remove_dir_all(cache_dir());
    let dest = crate::workspace_root().join("benches/results");
    fs::create_dir_all(&dest)?;
    fs::write(dest.join("scale.md"), &out)?;
    println!("written to benches/results/scale.md");
    Ok(())
}

pub(crate) fn small_files(dir: &Path, n: usize) -> Result<()> {
    let mut s = n as u64 | 1;
    for i in 0..n {
        let d = dir.join(format!("d{}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&d)?;
        }
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let len = 1024 + (s % 3072) as usize;
        let body: Vec<u8> = (0..len).map(|j| (s >> (j % 56)) as u8).collect();
        fs::write(d.join(format!("f{i}")), body)?;
    }
    Ok(())
}

/// Bytes in the files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() { dir_bytes(&e.path())? } else { m.len() };
    }
    Ok(n)
}
