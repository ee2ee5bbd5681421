//! `cargo xtask bench --server`: a first backup and a full restore of the bench data through
//! `snapfs serve` on loopback against the same to a local repository, and against the peers'
//! remote modes on the same machine: restic's sftp backend and borg over ssh with `borg serve
//! --append-only` (forced by the key's `command=` in `authorized_keys`), both against Debian's
//! openssh-server on 127.0.0.1. Sets up what it needs as root: a key pair for each tool
//! (`target/bench-server/ssh/`), root's `authorized_keys` entries, and a running sshd. Writes
//! `benches/results/server.md` (`server-quick.md` with `--quick`).
//!
//! Restores go to tmpfs (`/dev/shm`) unless `--restore-on-disk`: this machine's ext4 has no
//! journal, and without one its inode allocator skips every inode freed in the last 1–5
//! minutes (`recently_deleted`), so a restore to disk after any large deletion spent 65% of its
//! time there and the medians measured the filesystem's history, not the transports.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::bench::{Sample, cache_dir, exec, machine, median, prepare_data, sources, tree_size};

const CASES: [&str; 4] = ["snapfs local", "snapfs serve", "restic sftp", "borg ssh"];

/// The server child; killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(script: &str) -> Result<String> {
    let out = Command::new("sh").args(["-c", script]).output()?;
    if !out.status.success() {
        bail!("`{script}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Keys for restic (plain) and borg (forced `borg serve --append-only`), and sshd running.
fn setup_ssh(dir: &Path) -> Result<(String, String)> {
    fs::create_dir_all(dir)?;
    let d = dir.display();
    for k in ["restic", "borg"] {
        if !dir.join(k).exists() {
            sh(&format!("ssh-keygen -q -t ed25519 -N '' -C snapfs-bench-{k} -f {d}/{k}"))?;
        }
    }
    if sh("command -v sshd || ls /usr/sbin/sshd").is_err() {
        bail!("sshd is missing: apt-get install openssh-server");
    }
    sh("mkdir -p /root/.ssh && chmod 700 /root/.ssh && touch /root/.ssh/authorized_keys")?;
    let auth = fs::read_to_string("/root/.ssh/authorized_keys")?;
    let restic_key = fs::read_to_string(dir.join("restic.pub"))?;
    let borg_key = fs::read_to_string(dir.join("borg.pub"))?;
    let mut add = String::new();
    if !auth.contains(restic_key.trim()) {
        add.push_str(&restic_key);
    }
    if !auth.contains(borg_key.trim()) {
        add.push_str(&format!("command=\"borg serve --append-only\",restrict {borg_key}"));
    }
    if !add.is_empty() {
        fs::write("/root/.ssh/authorized_keys", auth + &add)?;
    }
    if sh("ssh-keyscan -T 2 127.0.0.1 2>/dev/null").map_or(true, |s| s.is_empty()) {
        sh("mkdir -p /run/sshd && /usr/sbin/sshd -o ListenAddress=127.0.0.1")?;
    }
    let opts = format!("-o StrictHostKeyChecking=no -o UserKnownHostsFile={d}/known_hosts -o BatchMode=yes");
    Ok((format!("ssh {opts} -i {d}/restic"), format!("ssh {opts} -i {d}/borg")))
}

fn start_server(snapfs: &str, repo: &Path, config: &Path) -> Result<(Serve, String)> {
    let mut child = Command::new(snapfs)
        .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo)
        .arg("--config")
        .arg(config)
        .arg("--access-log")
        .arg(repo.with_extension("log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start snapfs serve")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line.trim().rsplit(" on ").next().unwrap_or("").to_string();
    if !url.starts_with("http") {
        bail!("snapfs serve did not start: {line:?}");
    }
    Ok((Serve(child), url))
}

pub fn run(args: &[String]) -> Result<()> {
    crate::bench::check_flags(args, &["--server", "--quick", "--restore-on-disk"], &["--rounds", "--snapfs"])?;
    let (quick, rounds, snapfs) = crate::bench::quick_rounds_binary(args)?;
    let target = crate::target_dir()?;
    for tool in ["restic", "borg", "ssh-keygen", "/usr/bin/time"] {
        if sh(&format!("command -v {tool}")).is_err() {
            bail!("{tool} is missing: apt-get install restic borgbackup openssh-client openssh-server time");
        }
    }
    let work = target.join("bench-server");
    let (restores, on_disk) = crate::bench::restore_root(args, &work, "snapfs-bench-server");
    let (restic_ssh, borg_ssh) = setup_ssh(&work.join("ssh"))?;
    let data = target.join("bench/data");
    prepare_data(&data, quick)?;
    let (files, bytes) = tree_size(&data)?;
    let d = data.display().to_string();
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let config = work.join("serve.json");
    let _ = fs::remove_file(&config);
    let token = sh(&format!("{snapfs} serve token add bench --role append --config {}", config.display()))?;

    let mut results: BTreeMap<(&str, &str), Vec<Sample>> = BTreeMap::new();
    let mut order = CASES.to_vec();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for case in &order {
            // Nothing is deleted until the end: ext4 makes creating files slow for minutes after
            // many were deleted (its inode allocator skips recently freed inodes), so deleting
            // the last case's restore made every case but a round's first pay for it.
            let slot = format!("{round}-{}", case.replace(' ', "-"));
            let repo = work.join(format!("repo-{slot}"));
            let restore = restores.join(format!("restore-{slot}"));
            for p in [&repo, &restore] {
                let _ = fs::remove_dir_all(p);
            }
            let _ = fs::remove_dir_all(cache_dir());
            fs::create_dir_all(&restore)?;
            let r = repo.display().to_string();
            let t = restore.display().to_string();
            let mut server = None;
            let (backup, restore_cmd) = match *case {
                "snapfs local" | "snapfs serve" => {
                    exec(&argv(&[&snapfs, "-q", "-r", &r, "init"]), &work)?;
                    let location = if *case == "snapfs serve" {
                        let (s, url) = start_server(&snapfs, &repo, &config)?;
                        server = Some(s);
                        url
                    } else {
                        r.clone()
                    };
                    let env = format!("SNAPFS_SERVER_TOKEN={token}");
                    (
                        argv(&["env", &env, &snapfs, "-q", "-r", &location, "backup", &d]),
                        argv(&["env", &env, &snapfs, "-q", "-r", &location, "restore", "latest", "--target", &t]),
                    )
                }
                "restic sftp" => {
                    let loc = format!("sftp:root@127.0.0.1:{r}");
                    let o = format!("sftp.command={restic_ssh} root@127.0.0.1 -s sftp");
                    exec(&argv(&["restic", "-q", "-o", &o, "-r", &loc, "init"]), &work)?;
                    (
                        argv(&["restic", "-q", "-o", &o, "-r", &loc, "backup", &d]),
                        argv(&["restic", "-q", "-o", &o, "-r", &loc, "restore", "latest", "--target", &t]),
                    )
                }
                _ => {
                    let loc = format!("ssh://root@127.0.0.1{r}");
                    let rsh = format!("BORG_RSH={borg_ssh}");
                    exec(&argv(&["env", &rsh, "borg", "init", "-e", "repokey-blake2", &loc]), &work)?;
                    (
                        argv(&["env", &rsh, "borg", "create", &format!("{loc}::one"), &d]),
                        argv(&["sh", "-c", &format!("cd {t} && env '{rsh}' borg extract {loc}::one")]),
                    )
                }
            };
            for (step, cmd) in [("backup", &backup), ("restore", &restore_cmd)] {
                if step == "restore" {
                    let _ = fs::remove_dir_all(cache_dir());
                }
                let s = exec(cmd, &work)?;
                println!("  {step:<8} {case:<13} {:>8.2} s  cpu {:>7.2} s  rss {:>6.0} MB", s.wall, s.cpu, s.rss_mb);
                results.entry((step, case)).or_default().push(s);
            }
            drop(server);
            if !on_disk {
                // tmpfs frees at once and has no allocator history to pay for.
                fs::remove_dir_all(&restore)?;
            }
        }
        order.rotate_left(1);
    }
    for e in fs::read_dir(&work)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("repo-") || name.starts_with("restore-") {
            let _ = if e.path().is_dir() { fs::remove_dir_all(e.path()) } else { fs::remove_file(e.path()) };
        }
    }
    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: {files} files, {:.2} GB ({}, and the generated tree); a first backup into an empty repository, then \
         a full restore with a cold client cache, {where_to}. snapfs serve on 127.0.0.1 (plain HTTP, an append token); restic \
         sftp and `borg serve --append-only` over ssh to Debian's sshd on 127.0.0.1; snapfs binary {snapfs}.\n\n\
         | step | {} |\n|{}\n",
        bytes as f64 / 1e9,
        sources(quick).join(", "),
        CASES.join(" | "),
        " --- |".repeat(CASES.len() + 1),
        where_to = if on_disk { "to local disk" } else { "to tmpfs (/dev/shm)" },
    ));
    for step in ["backup", "restore"] {
        let wall = |c: &str| median(&mut results[&(step, c)].iter().map(|s| s.wall).collect::<Vec<_>>());
        let served = wall("snapfs serve");
        out.push_str(&format!("| {step} |"));
        for c in CASES {
            let cpu = median(&mut results[&(step, c)].iter().map(|s| s.cpu).collect::<Vec<_>>());
            let ratio = match c {
                "snapfs serve" => format!(", **{:.2}x local**", served / wall("snapfs local")),
                "snapfs local" => String::new(),
                _ => format!(", **{:.1}x**", wall(c) / served),
            };
            out.push_str(&format!(" {:.2} s (cpu {cpu:.1} s{ratio}) |", wall(c)));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\nMedians of {rounds} rounds. `x local` = time through the server / time to local disk (target ≤ 1.3); \
         the peers' ratio = their time / snapfs serve's (target ≥ 2). cpu is the client's only (the server's and \
         sshd's are not counted for anyone).\n"
    ));
    println!("\n{out}");
    let name = if quick { "server-quick.md" } else { "server.md" };
    fs::write(crate::workspace_root().join("benches/results").join(name), &out)?;
    println!("written to benches/results/{name}");
    Ok(())
}
