//! `cargo xtask bench --s3`: snapfs against restic 0.14's s3 backend on one 3-node Garage
//! cluster (replication factor 3, loopback), the same data, alternating tool by tool each
//! round: initial backup, unchanged re-backup, restore, `check --read-data`, forget + prune.
//! Requests are counted on the server (Garage's `api_s3_request_counter`, summed over the
//! three nodes), so both tools are counted the same way. Also: the same snapfs backup and
//! restore on local disk in the same rotation, and the requests a client with an empty cache
//! makes to catch up on the repository. Writes `benches/results/s3.md`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{PASSWORD, Sample, exec, machine, median, prepare_data, sources, tree_size};

/// The prune step first backs up only `generated/` (not timed), then forgets all but that
/// snapshot and prunes: most packs go whole and the mixed ones are repacked.
const STEPS: [&str; 5] = ["initial backup", "unchanged re-backup", "restore", "check --read-data", "forget + prune"];
/// `local` is snapfs on local disk, alternating with the others, for the Garage/local ratio.
const TOOLS: [&str; 3] = ["snapfs", "restic", "local"];
const REGION: &str = "garage";

/// Three `garage server`s, killed when this is dropped.
struct Cluster {
    dir: PathBuf,
    configs: Vec<PathBuf>,
    s3_port: u16,
    admin_ports: Vec<u16>,
    children: Vec<Child>,
    key_id: String,
    secret: String,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn garage_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_bin = Path::new(&home).join(".cargo/bin/garage");
    if cargo_bin.is_file() { cargo_bin } else { "garage".into() }
}

impl Cluster {
    fn start(dir: &Path) -> Result<Cluster> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir)?;
        let secret: String =
            (0..32).map(|i| format!("{:02x}", (std::process::id() as usize * 31 + i * 7) % 256)).collect();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            configs: Vec::new(),
            s3_port: 0,
            admin_ports: Vec::new(),
            children: Vec::new(),
            key_id: String::new(),
            secret: String::new(),
        };
        let mut rpc_ports = Vec::new();
        for i in 1..=3 {
            let (rpc, s3, admin) = (free_port()?, free_port()?, free_port()?);
            let node = dir.join(format!("node{i}"));
            let conf = format!(
                "metadata_dir = \"{n}/meta\"\ndata_dir = \"{n}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\napi_bind_addr = \"127.0.0.1:{s3}\"\ns3_region = \"{REGION}\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                n = node.display()
            );
            let path = dir.join(format!("node{i}.toml"));
            fs::write(&path, conf)?;
            let log = fs::File::create(dir.join(format!("node{i}.log")))?;
            let child = Command::new(garage_bin())
                .arg("-c")
                .arg(&path)
                .arg("server")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting garage (cargo install garage --locked)")?;
            c.children.push(child);
            c.configs.push(path);
            c.admin_ports.push(admin);
            rpc_ports.push(rpc);
            if i == 1 {
                c.s3_port = s3;
            }
        }
        let ids: Vec<String> = (0..3)
            .map(|i| Ok(c.admin(i, &["node", "id", "-q"])?.trim().split('@').next().unwrap_or("").to_string()))
            .collect::<Result<_>>()?;
        for i in 1..3 {
            c.admin(0, &["node", "connect", &format!("{}@127.0.0.1:{}", ids[i], rpc_ports[i])])?;
        }
        for id in &ids {
            c.admin(0, &["layout", "assign", "-z", "dc1", "-c", "10G", id])?;
        }
        c.admin(0, &["layout", "apply", "--version", "1"])?;
        let key = c.admin(0, &["key", "create", "bench"])?;
        let field = |name: &str| key.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
        c.key_id = field("Key ID:").context("no key id from garage key create")?;
        c.secret = field("Secret key:").context("no secret from garage key create")?;
        Ok(c)
    }

    /// `garage -c nodeN.toml ARGS`, retried while the servers come up.
    fn admin(&self, node: usize, args: &[&str]) -> Result<String> {
        let start = Instant::now();
        loop {
            let out = Command::new(garage_bin()).arg("-c").arg(&self.configs[node]).args(args).output()?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn bucket(&self, name: &str) -> Result<()> {
        self.admin(0, &["bucket", "create", name])?;
        self.admin(0, &["bucket", "allow", "--read", "--write", "--owner", name, "--key", "bench"])?;
        Ok(())
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// `env AWS_…=… ` before a command line.
    fn env(&self) -> Vec<String> {
        vec![
            "env".into(),
            format!("AWS_ACCESS_KEY_ID={}", self.key_id),
            format!("AWS_SECRET_ACCESS_KEY={}", self.secret),
            format!("AWS_DEFAULT_REGION={REGION}"),
        ]
    }

    /// S3 requests served so far by the whole cluster, by API call.
    fn requests(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for port in &self.admin_ports {
            let mut s = TcpStream::connect(("127.0.0.1", *port))?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            for line in text.lines().filter(|l| l.starts_with("api_s3_request_counter{")) {
                let call = line.split("api_endpoint=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
                let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                *out.entry(call.to_string()).or_default() += n as u64;
            }
        }
        Ok(out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

pub fn run(args: &[String]) -> Result<()> {
    crate::bench::check_flags(args, &["--s3", "--quick", "--restore-on-disk"], &["--rounds", "--snapfs"])?;
    let (quick, rounds, snapfs) = crate::bench::quick_rounds_binary(args)?;
    let target = crate::target_dir()?;
    let work = target.join("bench-s3");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let data = target.join("bench/data");
    prepare_data(&data, quick)?;
    let (files, bytes) = tree_size(&data)?;
    let gb = bytes as f64 / 1e9;
    println!("data: {files} files, {gb:.2} GB");
    let g = Cluster::start(&work.join("garage"))?;
    let d = data.display().to_string();
    let (restores, on_disk) = crate::bench::restore_root(args, &work, "snapfs-bench-s3");
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let with_env = |mut v: Vec<String>| {
        let mut e = g.env();
        e.append(&mut v);
        e
    };
    let mut results: BTreeMap<(&str, usize), Vec<(Sample, u64)>> = BTreeMap::new();
    let mut calls: BTreeMap<(&str, usize), BTreeMap<String, u64>> = BTreeMap::new();
    let mut catch_up = String::new();
    let mut order = TOOLS.to_vec();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        let mut repos = BTreeMap::new();
        for tool in &order {
            let repo = if *tool == "local" {
                work.join(format!("local-{round}")).display().to_string()
            } else {
                let bucket = format!("{}-{round}", tool);
                g.bucket(&bucket)?;
                format!("s3:{}/{bucket}", g.endpoint())
            };
            let init = match *tool {
                "restic" => argv(&["restic", "-q", "-r", &repo, "init"]),
                _ => argv(&[&snapfs, "-q", "-r", &repo, "init"]),
            };
            exec(&with_env(init), &work)?;
            repos.insert(*tool, repo);
        }
        let _ = fs::remove_dir_all(crate::bench::cache_dir());
        for (step, name) in STEPS.iter().enumerate() {
            // The local repository is only the yardstick for the first backup and the restore.
            for tool in order.iter().filter(|t| **t != "local" || step == 0 || step == 2) {
                let repo = &repos[tool];
                let restore_to = restores.join(format!("{round}-{tool}"));
                let r = restore_to.display().to_string();
                // restic and snapfs take the same arguments for every step.
                let bin = if *tool == "restic" { "restic" } else { snapfs.as_str() };
                let args: &[&str] = match step {
                    0 | 1 => &["backup", &d],
                    2 => &["restore", "latest", "--target", &r],
                    3 => &["check", "--read-data"],
                    _ => &["forget", "--keep-last", "1", "--group-by", "host", "--prune"],
                };
                let cmd = argv(&[&[bin, "-q", "-r", repo.as_str()][..], args].concat());
                if step == 4 {
                    let part = data.join("generated").display().to_string();
                    exec(&with_env(argv(&[bin, "-q", "-r", repo, "backup", &part])), &data)?;
                }
                crate::run(&mut Command::new("sync"))?;
                let before = g.requests()?;
                let s = exec(&with_env(cmd), &data)?;
                let used = diff(&g.requests()?, &before);
                let n = total(&used);
                println!(
                    "  {name:<22} {tool:<7} {:>8.2} s  cpu {:>7.2} s  rss {:>5.0} MB  {n:>7} requests",
                    s.wall, s.cpu, s.rss_mb
                );
                results.entry((tool, step)).or_default().push((s, n));
                calls.insert((tool, step), used);
                if step == 2 && !on_disk {
                    // tmpfs frees at once; on disk every restore stays until the end (see restore_root).
                    fs::remove_dir_all(&restore_to)?;
                }
            }
        }
        if round == 0 {
            catch_up = cold_client(&g, &snapfs, &repos["snapfs"], &work)?;
            println!("{catch_up}");
        }
        order.rotate_left(1);
    }
    let _ = fs::remove_dir_all(&restores);

    let mut out = machine()?;
    out.push_str(&format!(
        "\nData: {files} files, {gb:.2} GB ({}, and the generated tree). Garage {} as 3 nodes on loopback, \
         replication factor 3, sqlite metadata; each tool gets a new bucket each round; snapfs binary {snapfs}.\n\n\
         | step | snapfs | restic 0.14 | restic / snapfs | snapfs requests/GB | restic requests/GB |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        sources(quick).join(", "),
        garage_version()
    ));
    for (step, name) in STEPS.iter().enumerate() {
        let cell = |tool: &str| {
            let v = &results[&(tool, step)];
            let wall = median(&mut v.iter().map(|(s, _)| s.wall).collect::<Vec<_>>());
            let cpu = median(&mut v.iter().map(|(s, _)| s.cpu).collect::<Vec<_>>());
            let rss = v.iter().map(|(s, _)| s.rss_mb).fold(0.0, f64::max);
            let req = median(&mut v.iter().map(|(_, n)| *n as f64).collect::<Vec<_>>());
            (wall, format!("{wall:.2} s (cpu {cpu:.1} s, {rss:.0} MB)"), req / gb)
        };
        let (sw, s, sr) = cell("snapfs");
        let (rw, r, rr) = cell("restic");
        out.push_str(&format!("| {name} | {s} | {r} | **{:.1}x** | {sr:.0} | {rr:.0} |\n", rw / sw));
    }
    let wall =
        |tool: &str, step: usize| median(&mut results[&(tool, step)].iter().map(|(s, _)| s.wall).collect::<Vec<_>>());
    let (lb, lr) = (wall("local", 0), wall("local", 2));
    out.push_str(&format!(
        "\nsnapfs on local disk, same data, alternating with the others, a new repository each round: first backup \
         {lb:.2} s (Garage/local **{:.2}x**), restore {lr:.2} s (Garage/local **{:.2}x**).\n\nMedians of {rounds} \
         rounds; restores go {where_to}; RSS is the largest of the rounds; requests are counted on the Garage side, all \
         nodes, median of the rounds.\n",
        wall("snapfs", 0) / lb,
        wall("snapfs", 2) / lr,
        where_to = if on_disk { "to local disk" } else { "to tmpfs (/dev/shm)" },
    ));
    out.push_str("\nRequests by call in the last round:\n\n| step | snapfs | restic |\n| --- | --- | --- |\n");
    for (step, name) in STEPS.iter().enumerate() {
        let show = |t: &str| calls[&(t, step)].iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("| {name} | {} | {} |\n", show("snapfs"), show("restic")));
    }
    out.push_str(&format!("\n{catch_up}\n"));
    println!("\n{out}");
    fs::write(crate::workspace_root().join("benches/results/s3.md"), &out)?;
    println!("written to benches/results/s3.md");
    drop(g);
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// A second client with an empty cache lists the snapshots of a repository it has never seen:
/// the requests that costs, against the repository's pack count.
fn cold_client(g: &Cluster, snapfs: &str, repo: &str, work: &Path) -> Result<String> {
    let cache = work.join("cold-cache");
    let _ = fs::remove_dir_all(&cache);
    let bucket = repo.rsplit('/').next().unwrap_or_default();
    let info = g.admin(0, &["bucket", "info", bucket])?;
    let objects = info
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Objects:"))
        .map_or_else(|| "?".to_string(), |n| n.trim().to_string());
    let before = g.requests()?;
    let mut v = g.env();
    v.push(format!("SNAPFS_CACHE_DIR={}", cache.display()));
    v.extend([snapfs, "-q", "-r", repo, "ls", "latest", "/"].map(String::from));
    let s = Command::new(&v[0]).args(&v[1..]).env("SNAPFS_PASSWORD", PASSWORD).output()?;
    if !s.status.success() {
        bail!("snapshots with a cold cache failed: {}", String::from_utf8_lossy(&s.stderr));
    }
    let used = diff(&g.requests()?, &before);
    let _ = fs::remove_dir_all(&cache);
    Ok(format!(
        "Cold client (empty cache) catching up, `snapfs ls latest /`: {} requests ({}), for a bucket of {} objects.",
        total(&used),
        used.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        objects
    ))
}

fn garage_version() -> String {
    Command::new(garage_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "garage".into())
}
