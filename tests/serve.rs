//! `snapfs serve` and the http(s):// client (format-spec §17), as real processes on loopback:
//! a server child process, clients through the CLI and through the library's `HttpBackend`,
//! and raw TCP for requests no honest client sends.

mod common;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use snapfs::backend::{Backend, HttpBackend, HttpOptions, Kind};
use zeroize::Zeroizing;

/// A running `snapfs serve`; killed and reaped on drop, also when the test fails.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
    stderr: PathBuf,
    ca: Option<PathBuf>,
}

impl Server {
    fn start(repo: &Path, config: &Path, tls: Option<&Tls>) -> Server {
        Server::start_with(repo, config, tls, &[])
    }

    /// With more arguments; `--unlock` gets the test password.
    fn start_with(repo: &Path, config: &Path, tls: Option<&Tls>, extra: &[&str]) -> Server {
        let dir = config.parent().unwrap();
        let log = dir.join(format!("access-{}.log", std::process::id()));
        let stderr = dir.join("serve.stderr");
        let mut c = Command::new(bin());
        c.args(["serve", "--listen", "127.0.0.1:0", "--repo"]).arg(repo).arg("--config").arg(config);
        c.arg("--access-log").arg(&log);
        if let Some(t) = tls {
            c.arg("--tls-cert").arg(&t.cert).arg("--tls-key").arg(&t.key);
        }
        c.args(extra).env_remove("SNAPFS_REPOSITORY").env("SNAPFS_PASSWORD", PASSWORD);
        c.stdin(Stdio::null()).stdout(Stdio::piped());
        c.stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = c.spawn().expect("spawn snapfs serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(url) = line.trim().rsplit(" on ").next().filter(|u| u.starts_with("http")) else {
            let _ = child.kill();
            panic!("snapfs serve did not say where it listens: {line:?} {}", std::fs::read_to_string(&stderr).unwrap());
        };
        Server { child, url: url.to_string(), log, stderr, ca: tls.map(|t| t.ca.clone()) }
    }

    /// A CLI client with `token`, its own cache, and the CA when the server speaks TLS.
    fn client(&self, token: &str, cache: &Path) -> Snapfs {
        let mut s = Snapfs::new(self.url.clone());
        s.env.push(("SNAPFS_CACHE_DIR".into(), cache.into()));
        s.env.push(("SNAPFS_SERVER_TOKEN".into(), token.into()));
        if let Some(ca) = &self.ca {
            s.env.push(("SNAPFS_TLS_CA".into(), ca.into()));
        }
        s
    }

    fn backend(&self, token: &str) -> HttpBackend {
        let opts = HttpOptions { token: Some(Zeroizing::new(token.to_string())), ca: self.ca.clone() };
        HttpBackend::open(&self.url, &opts).unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn addr(&self) -> String {
        self.url.split("://").nth(1).unwrap().trim_end_matches('/').to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- serve stderr ---\n{}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
            eprintln!("--- access log ---\n{}", self.log_text());
        }
    }
}

/// `snapfs serve token add NAME --role ROLE`: the secret it prints.
fn token(config: &Path, name: &str, role: &str) -> String {
    let out = sh(bin(), &["serve", "token", "add", name, "--role", role, "--config", config.to_str().unwrap()]);
    let secret = String::from_utf8(out).unwrap().trim().to_string();
    assert!(secret.starts_with("snapfs_") && secret.len() == 71, "{secret}");
    assert!(!std::fs::read_to_string(config).unwrap().contains(&secret), "the config stores the secret");
    secret
}

/// A repository initialised on local disk, and the token file beside it.
fn repo_and_config(base: &Path) -> (PathBuf, PathBuf) {
    let repo = base.join("repo");
    Snapfs::new(&repo).init();
    (repo, base.join("serve.json"))
}

/// Every object file of the repository and its BLAKE3 (locks and staging files aside).
fn objects_on_disk(repo: &Path) -> BTreeMap<PathBuf, String> {
    files_under(repo)
        .into_iter()
        .filter(|p| !p.starts_with(repo.join("locks")) && !p.starts_with(repo.join("tmp")))
        .map(|p| {
            let h = blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string();
            (p.strip_prefix(repo).unwrap().to_path_buf(), h)
        })
        .collect()
}

fn io_kind(e: &snapfs::Error) -> std::io::ErrorKind {
    match e {
        snapfs::Error::Io { cause, .. } => cause.kind(),
        e => panic!("not an I/O error: {e}"),
    }
}

fn refused(r: snapfs::Result<()>, what: &str) -> String {
    let e = r.expect_err(what);
    assert_eq!(io_kind(&e), std::io::ErrorKind::PermissionDenied, "{what}: {e}");
    e.to_string()
}

fn conflict(r: snapfs::Result<()>, what: &str) {
    let e = r.expect_err(what);
    assert_eq!(io_kind(&e), std::io::ErrorKind::AlreadyExists, "{what}: {e}");
}

/// Refused as write-once (409) or as not the pack its name says (422): nothing stored.
fn rejected(r: snapfs::Result<()>, what: &str) {
    let e = r.expect_err(what);
    let kind = io_kind(&e);
    assert!(kind == std::io::ErrorKind::AlreadyExists || e.to_string().contains("nothing stored"), "{what}: {e}");
}

fn lock_text(host: &str) -> String {
    let now = jiff::Timestamp::now();
    let later = now + jiff::SignedDuration::from_mins(30);
    format!(
        "host={host}\npid=1\ntime={now}\nexpires={later}\nstarted={now}\nexclusive=false\nprune=false\ncommand=test\n"
    )
}

/// The day's change to the source tree: a new file and one changed byte range.
fn change_tree(src: &Path, day: u64) {
    let mut rng = Rng::new(day + 1);
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_random(&src.join(format!("day{day}.bin")), 700 * KIB + day, &mut rng);
    std::fs::write(src.join("sub/diary.txt"), text_bytes(50_000 + day as usize * 100, &mut rng)).unwrap();
}

#[test]
fn an_append_token_cannot_destroy_backups() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let append = token(&config, "laptop", "append");
    let delete = token(&config, "ops", "delete");
    let srv = Server::start(&repo, &config, None);
    let c = srv.client(&append, &base.join("c-laptop"));
    let ops = srv.client(&delete, &base.join("c-ops"));

    // Daily backups with the append token, each day's tree kept aside to compare restores with.
    let src = base.join("src");
    let mut days = Vec::new();
    for day in 0..3 {
        change_tree(&src, day);
        let id = c.backup_json([&src])["snapshot_id"].as_str().unwrap().to_string();
        let copy = base.join(format!("expect{day}"));
        sh("cp", &["-a", src.to_str().unwrap(), copy.to_str().unwrap()]);
        days.push((id, copy));
    }
    // A fourth snapshot the delete token forgets, so that prune has something to delete.
    change_tree(&src, 3);
    let extra = c.backup_json([&src])["snapshot_id"].as_str().unwrap().to_string();
    ops.ok(["forget", &extra]);
    let before = objects_on_disk(&repo);

    // Every destructive request the protocol has, with the append token.
    let b = srv.backend(&append);
    assert_eq!(b.role, "append");
    let packs = b.list(Kind::Pack).unwrap();
    let snaps = b.list(Kind::Snapshot).unwrap();
    let keys = b.list(Kind::Key).unwrap();
    let epochs = b.list(Kind::Epoch).unwrap();
    assert!(packs.len() >= 3 && snaps.len() == 3, "{packs:?} {snaps:?}");
    let (pack, pack_size) = packs[0].clone();
    let snap = &snaps[0].0;
    let msg = refused(b.delete(Kind::Pack, &pack), "delete a pack");
    assert!(msg.contains("may not delete") && msg.contains("delete token"), "{msg}");
    refused(b.delete(Kind::Snapshot, snap), "delete a snapshot");
    refused(b.delete(Kind::Key, &keys[0].0), "delete a key slot");
    refused(b.delete(Kind::Epoch, &epochs[0].0), "delete an epoch");
    refused(b.delete(Kind::Config, "config"), "delete the config");
    rejected(b.write(Kind::Pack, &pack, b"garbage"), "garbage over a pack");
    conflict(b.write(Kind::Snapshot, snap, b"garbage"), "garbage over a snapshot");
    refused(b.replace(Kind::Snapshot, snap, b"garbage"), "replace a snapshot");
    refused(b.replace(Kind::Pack, &pack, b"garbage"), "replace a pack");
    refused(b.write(Kind::Config, "config", b"garbage"), "write the config");
    refused(b.write(Kind::Condemned, &"ab".repeat(16), b"garbage"), "write a condemned list");
    // A truncated pack, over its own name or under a fresh one whose hash it is not: refused.
    let full = b.read(Kind::Pack, &pack).unwrap();
    assert_eq!(full.len() as u64, pack_size);
    let half = &full[..full.len() / 2];
    rejected(b.write(Kind::Pack, &pack, half), "a truncated pack over its own name");
    let other = blake3::hash(b"another pack").to_hex().to_string();
    let e = b.write(Kind::Pack, &other, half).unwrap_err().to_string();
    assert!(e.contains("not the pack's name"), "{e}");
    assert!(b.list(Kind::Pack).unwrap().iter().all(|(n, _)| *n != other));
    // Locks: another token's is not ours to delete; our own is.
    let theirs = "0123456789abcdef0123456789abcdef";
    srv.backend(&delete).write(Kind::Lock, theirs, lock_text("ops-host").as_bytes()).unwrap();
    refused(b.delete(Kind::Lock, theirs), "delete another token's lock");
    srv.backend(&delete).delete(Kind::Lock, theirs).unwrap();
    let mine = "fedcba9876543210fedcba9876543210";
    b.write(Kind::Lock, mine, lock_text("laptop").as_bytes()).unwrap();
    b.delete(Kind::Lock, mine).unwrap();

    // The CLI's destructive commands with the append token: each fails with a clear line.
    for args in [vec!["forget", days[0].0.as_str()], vec!["forget", "--keep-last", "1"], vec!["prune"]] {
        let out = c.run(&args);
        assert!(!out.status.success(), "{}", describe(&format!("{args:?} with an append token"), &out));
        let line = assert_error_line(&out);
        assert!(
            line.contains("may not") && line.contains("delete token") && line.contains(&srv.url),
            "{args:?}: {line}"
        );
    }

    // Nothing changed on the server's disk (but what forget/prune's refused tries left: none),
    // every attempt is in the log, and the repository checks clean and restores exactly.
    assert_eq!(objects_on_disk(&repo), before, "an append token changed the repository");
    let log = srv.log_text();
    let denied: Vec<&str> = log.lines().filter(|l| l.contains(" laptop ") && l.contains(" 403 ")).collect();
    assert!(denied.len() >= 12, "refusals logged: {}\n{log}", denied.len());
    assert!(log.lines().filter(|l| l.contains(" laptop PUT ") && l.contains(" 409 ")).count() >= 1, "{log}");
    assert!(!log.contains(&append) && !log.contains(&delete), "the log holds a secret");
    let local = Snapfs::new(&repo);
    local.ok(["check", "--read-data"]);
    for (id, copy) in &days {
        let target = base.join(format!("restore-{id}"));
        c.restore(id, &target, &[]);
        assert_same_tree(copy, &restored(&target, &src));
    }

    // The delete token may prune what was forgotten.
    ops.ok(["prune"]);
    local.ok(["check", "--read-data"]);
    assert_eq!(c.snapshot_ids(Vec::<&str>::new()).len(), 3);
}

#[test]
fn many_clients_at_once_and_check_through_the_server_equals_check_on_disk() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let srv = Server::start(&repo, &config, None);
    let tokens: Vec<String> = (0..3).map(|i| token(&config, &format!("host{i}"), "append")).collect();
    let srcs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let src = base.join(format!("src{i}"));
            change_tree(&src, 10 + i);
            // Shared content too: the clients race to store the same blobs.
            write_random(&src.join("common.bin"), 2 * MIB, &mut Rng::new(99));
            src
        })
        .collect();
    std::thread::scope(|s| {
        for (i, (src, tok)) in srcs.iter().zip(&tokens).enumerate() {
            let c = srv.client(tok, &base.join(format!("cache{i}")));
            s.spawn(move || {
                for _ in 0..2 {
                    c.backup_json(["--force".as_ref(), src.as_os_str()]);
                }
            });
        }
    });
    let c = srv.client(&tokens[0], &base.join("cache-check"));
    assert_eq!(c.snapshot_ids(Vec::<&str>::new()).len(), 6);
    // Speeds and the location differ; every count must not.
    let summary = |out: String| -> Vec<String> {
        out.lines()
            .map(|l| l.split(" in ").next().unwrap().replace(&srv.url, "REPO").replace(repo.to_str().unwrap(), "REPO"))
            .collect()
    };
    let remote = summary(c.ok(["check", "--read-data"]));
    let on_disk = summary(Snapfs::new(&repo).ok(["check", "--read-data"]));
    assert_eq!(remote, on_disk);
    assert!(remote.iter().any(|l| l.contains("no damage found")), "{remote:?}");
    for (i, src) in srcs.iter().enumerate() {
        let target = base.join(format!("restore{i}"));
        let id = c.snapshots(["--path", src.to_str().unwrap()])[0]["id"].as_str().unwrap().to_string();
        c.restore(&id, &target, &[]);
        assert_same_tree(src, &restored(&target, src));
    }
}

#[test]
fn a_mount_reads_through_the_server() {
    if !support::fuse_available() {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let write = token(&config, "laptop", "append");
    let read = token(&config, "viewer", "read");
    let srv = Server::start(&repo, &config, None);
    let src = base.join("src");
    change_tree(&src, 5);
    srv.client(&write, &base.join("c1")).backup([&src]);
    let mp = base.join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mut cmd = srv.client(&read, &base.join("c2")).command();
    cmd.arg("mount").arg(&mp).stdout(Stdio::null()).stderr(std::fs::File::create(base.join("mount.log")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let view = mp.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let start = Instant::now();
    while !view.is_dir() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            std::fs::read_to_string(base.join("mount.log")).unwrap()
        );
        assert!(child.try_wait().unwrap().is_none(), "{}", std::fs::read_to_string(base.join("mount.log")).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let same = std::panic::catch_unwind(|| assert_same_contents(&src, &view));
    let _ = Command::new("fusermount3").arg("-u").arg(&mp).status();
    let _ = child.wait();
    same.unwrap();
}

/// One raw HTTP/1.1 request; the status line's code, or 0 when the server closed first.
/// One request on its own connection: the status and the body.
fn http(addr: &str, method: &str, path: &str, token: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n{headers}\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let code = String::from_utf8_lossy(&answer[..split]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer[split + 4..].to_vec())
}

fn api_json(addr: &str, method: &str, path: &str, token: &str) -> serde_json::Value {
    let (code, body) = http(addr, method, path, token, "");
    assert_eq!(code, 200, "{method} {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn the_management_api_lists_shows_validates_and_exports_when_unlocked() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let (viewer, boss) = (token(&config, "viewer", "read"), token(&config, "boss", "admin"));
    let local = Snapfs::new(&repo);
    let (a, b) = (base.join("a"), base.join("b"));
    change_tree(&a, 1);
    let packs = || files_under(&repo.join("packs"));
    local.backup(["--host", "alpha", "--tag", "daily", a.to_str().unwrap()]);
    let before = packs();
    change_tree(&b, 2);
    local.backup(["--host", "beta", b.to_str().unwrap()]);
    let srv = Server::start_with(&repo, &config, None, &["--unlock"]);
    let addr = srv.addr();

    let all = api_json(&addr, "GET", "/api/v1/snapshots", &viewer);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let alpha = api_json(&addr, "GET", "/api/v1/snapshots?host=alpha", &viewer);
    assert_eq!(alpha.as_array().unwrap().len(), 1);
    assert_eq!(alpha[0]["hostname"], "alpha");
    assert_eq!(api_json(&addr, "GET", "/api/v1/snapshots?tag=daily", &viewer), alpha);
    let path = format!("/api/v1/snapshots?path={}", b.to_str().unwrap().replace('/', "%2F"));
    assert_eq!(api_json(&addr, "GET", &path, &viewer)[0]["hostname"], "beta");
    let (id_a, id_b) = (alpha[0]["id"].as_str().unwrap().to_string(), all[1]["id"].as_str().unwrap().to_string());
    assert_eq!(api_json(&addr, "GET", "/api/v1/snapshots/latest", &viewer)["id"], id_b.as_str());
    let shown = api_json(&addr, "GET", &format!("/api/v1/snapshots/{}", &id_a[..8]), &viewer);
    assert_eq!(shown["id"], id_a.as_str());
    assert_eq!(shown["paths"][0], a.to_str().unwrap());
    assert_eq!(http(&addr, "GET", "/api/v1/snapshots/ffffffff", &viewer, "").0, 404);
    assert_eq!(http(&addr, "GET", "/api/v1/snapshots?colour=red", &viewer, "").0, 400);
    assert_eq!(http(&addr, "GET", "/api/v1/snapshots/latest/validate", &viewer, "").0, 405);

    // Validate reads one snapshot's data on the server: damage to a pack only b uses fails b's
    // validation, not a's.
    let v = api_json(&addr, "POST", &format!("/api/v1/snapshots/{id_a}/validate"), &viewer);
    assert!(v["ok"] == true && v["read_data"]["packs"].as_u64() > Some(0), "{v}");
    let only_b = packs().into_iter().filter(|p| !before.contains(p)).max_by_key(|p| p.metadata().unwrap().len());
    let only_b = only_b.expect("b's backup wrote a pack of its own");
    let mut bytes = std::fs::read(&only_b).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&only_b, bytes).unwrap();
    let v = api_json(&addr, "POST", &format!("/api/v1/snapshots/{id_b}/validate"), &viewer);
    assert!(v["ok"] == false && v["snapshot"] == id_b.as_str(), "{v}");
    assert_eq!(api_json(&addr, "POST", &format!("/api/v1/snapshots/{id_a}/validate"), &viewer)["ok"], true);

    // Export: an admin's, sealed under the password the request names; it imports and restores.
    let export = format!("/api/v1/snapshots/{id_a}/export");
    let pw = "snapfs-bundle-password: bundle secret\r\n";
    assert_eq!(http(&addr, "POST", &export, &viewer, pw).0, 403, "a read token may not export");
    assert_eq!(http(&addr, "POST", &export, &boss, "").0, 400, "an export needs a bundle password");
    let (code, bundle) = http(&addr, "POST", &export, &boss, pw);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&bundle));
    std::fs::write(base.join("a.bundle"), &bundle).unwrap();
    let mut other = Snapfs::new(base.join("other"));
    other.init();
    other.env.push(("SNAPFS_BUNDLE_PASSWORD".into(), "bundle secret".into()));
    other.ok(["import", base.join("a.bundle").to_str().unwrap()]);
    let target = base.join("restored");
    other.restore("latest", &target, &[]);
    assert_same_tree(&a, &restored(&target, &a));
    let log = srv.log_text();
    assert!(log.lines().any(|l| l.contains("viewer POST /api/v1/snapshots/") && l.contains(" 403 ")), "{log}");

    // Unlocked, the server reads the host of each snapshot a host-restricted token adds (its
    // locks name this machine, so the token is this machine's).
    let me = String::from_utf8(sh("hostname", &[] as &[&str])).unwrap().trim().to_string();
    let cfg = config.to_str().unwrap();
    let args = ["serve", "token", "add", "pinned", "--role", "append", "--host", &me, "--config", cfg];
    let pinned = srv.client(String::from_utf8(sh(bin(), &args)).unwrap().trim(), &base.join("c-pinned"));
    pinned.backup([a.to_str().unwrap()]);
    let line = assert_error_line(&pinned.run(["backup", "--host", "beta", a.to_str().unwrap()]));
    assert!(line.contains(&format!("may add snapshots of host {me} only, not of beta")), "{line}");
    let hosts: Vec<_> = api_json(&addr, "GET", "/api/v1/snapshots", &viewer)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts, ["alpha", "beta", me.as_str()], "the refused snapshot was stored");
}

fn raw(addr: &str, head: &str, body: &[u8], cut: bool) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if cut {
        s.shutdown(Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn bad_tokens_and_lying_bodies_store_nothing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let append = token(&config, "laptop", "append");
    let srv = Server::start(&repo, &config, None);

    // No token, a wrong one, a removed one: one clear line each.
    let mut none = srv.client("", &base.join("c0"));
    none.env.retain(|(k, _)| k != "SNAPFS_SERVER_TOKEN");
    let line = assert_error_line(&none.run(["snapshots"]));
    assert!(line.contains("no token") && line.contains("SNAPFS_SERVER_TOKEN"), "{line}");
    let line = assert_error_line(&srv.client("snapfs_00", &base.join("c0")).run(["snapshots"]));
    assert!(line.contains("refused the token"), "{line}");
    let gone = token(&config, "old", "read");
    srv.client(&gone, &base.join("c0")).ok(["snapshots"]);
    sh(bin(), &["serve", "token", "remove", "old", "--config", config.to_str().unwrap()]);
    let line = assert_error_line(&srv.client(&gone, &base.join("c0")).run(["snapshots"]));
    assert!(line.contains("refused the token"), "a removed token still works: {line}");
    let listed =
        String::from_utf8(sh(bin(), &["serve", "token", "list", "--config", config.to_str().unwrap()])).unwrap();
    assert_eq!(listed.trim(), "laptop\tappend\t-\tnever");

    let body = lock_text("laptop").into_bytes();
    let hash = blake3::hash(&body).to_hex().to_string();
    let put = |name: &str, len: usize, hash: &str, extra: &str| {
        format!(
            "PUT /v1/locks/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {append}\r\n\
             snapfs-protocol: 1\r\nContent-Length: {len}\r\nsnapfs-blake3: {hash}\r\n{extra}\r\n"
        )
    };
    let names =
        ["aa000000000000000000000000000001", "aa000000000000000000000000000002", "aa000000000000000000000000000003"];
    // A body cut off before its declared length.
    let code = raw(&srv.addr(), &put(names[0], body.len(), &hash, ""), &body[..body.len() / 2], true);
    assert!(code == 400 || code == 0, "a cut-off body: {code}");
    // A Content-Length shorter than the body: the hash of what was declared does not match.
    let code = raw(&srv.addr(), &put(names[1], body.len() - 5, &hash, ""), &body, false);
    assert_eq!(code, 422, "a body longer than declared");
    // The wrong hash for the right length.
    let wrong = blake3::hash(b"other").to_hex().to_string();
    assert_eq!(raw(&srv.addr(), &put(names[2], body.len(), &wrong, ""), &body, false), 422);
    // No hash, no length, another protocol version.
    let no_hash = format!(
        "PUT /v1/locks/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {append}\r\nContent-Length: {}\r\n\r\n",
        names[2],
        body.len()
    );
    assert_eq!(raw(&srv.addr(), &no_hash, &body, false), 400);
    let chunked = format!(
        "PUT /v1/locks/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {append}\r\nsnapfs-blake3: {hash}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        names[2],
        body.len()
    );
    assert_eq!(raw(&srv.addr(), &chunked, &[&body[..], b"\r\n0\r\n\r\n"].concat(), false), 411);
    let v2 = format!("GET /v1/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {append}\r\nsnapfs-protocol: 2\r\n\r\n");
    assert_eq!(raw(&srv.addr(), &v2, b"", false), 400);
    // None of it was stored, and the server still serves the honest request.
    let b = srv.backend(&append);
    assert!(b.list(Kind::Lock).unwrap().is_empty(), "a lying body was stored: {:?}", b.list(Kind::Lock));
    assert!(!repo.join("locks").exists() || std::fs::read_dir(repo.join("locks")).unwrap().next().is_none());
    b.write(Kind::Lock, names[0], &body).unwrap();
    assert_eq!(b.read(Kind::Lock, names[0]).unwrap(), body);
    let mut part = [0u8; 5];
    b.read_at(Kind::Lock, names[0], 5, &mut part).unwrap();
    assert_eq!(&part, &body[5..10]);
    let mut past = [0u8; 5];
    let e = b.read_at(Kind::Lock, names[0], body.len() as u64 - 2, &mut past).unwrap_err();
    assert_eq!(io_kind(&e), std::io::ErrorKind::UnexpectedEof, "{e}");

    // A host-restricted token writes locks of its host only.
    let h = String::from_utf8(sh(
        bin(),
        &[
            "serve",
            "token",
            "add",
            "pinned",
            "--role",
            "append",
            "--host",
            "laptop",
            "--config",
            config.to_str().unwrap(),
        ],
    ))
    .unwrap();
    let pinned = srv.backend(h.trim());
    pinned.write(Kind::Lock, "bb000000000000000000000000000001", lock_text("laptop").as_bytes()).unwrap();
    refused(
        pinned.write(Kind::Lock, "bb000000000000000000000000000002", lock_text("desktop").as_bytes()),
        "other host",
    );

    // Without --unlock the management API lists snapshot objects, and says why it cannot
    // filter or show them.
    let api =
        |q: &str| format!("GET /api/v1/snapshots{q} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {append}\r\n\r\n");
    assert_eq!(raw(&srv.addr(), &api(""), b"", false), 200);
    assert_eq!(raw(&srv.addr(), &api("?host=laptop"), b"", false), 409);
    let (code, body) = http(&srv.addr(), "GET", "/api/v1/snapshots/latest", &append, "");
    assert!(code == 409 && String::from_utf8_lossy(&body).contains("--unlock"), "{code} {body:?}");

    // A token past its expiry is refused by name, from the next request on.
    let cfg = config.to_str().unwrap();
    let soon = String::from_utf8(sh(
        bin(),
        &["serve", "token", "add", "temp", "--role", "read", "--expires", "1h", "--config", cfg],
    ))
    .unwrap();
    let listed = String::from_utf8(sh(bin(), &["serve", "token", "list", "--config", cfg])).unwrap();
    assert!(listed.lines().any(|l| l.starts_with("temp\tread\t-\t") && !l.ends_with("never")), "{listed}");
    srv.client(soon.trim(), &base.join("c0")).ok(["snapshots"]);
    let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(file["version"], 2, "a file with an expiring token is version 2");
    for t in file["tokens"].as_array_mut().unwrap() {
        if t["name"] == "temp" {
            t["expires"] = serde_json::json!(jiff::Timestamp::now().as_second() - 10);
        }
    }
    std::thread::sleep(Duration::from_millis(1100)); // the server re-reads the file when its mtime changes
    std::fs::write(&config, file.to_string()).unwrap();
    let line = assert_error_line(&srv.client(soon.trim(), &base.join("c0")).run(["snapshots"]));
    assert!(line.contains("token temp expired at"), "{line}");
    let late = run_cmd(Command::new(bin()).args([
        "serve",
        "token",
        "add",
        "late",
        "--role",
        "read",
        "--expires",
        "2020-01-01",
        "--config",
        cfg,
    ]));
    assert!(assert_error_line(&late).contains("in the past"));
    assert!(srv.log_text().lines().any(|l| l.contains(" - GET /v1/ 401 ")), "{}", srv.log_text());
}

#[test]
fn a_restarted_server_still_knows_which_token_wrote_a_lock() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let (mine, other) = (token(&config, "mine", "append"), token(&config, "other", "append"));
    let name = "cc000000000000000000000000000001";
    let srv = Server::start(&repo, &config, None);
    srv.backend(&mine).write(Kind::Lock, name, lock_text("h").as_bytes()).unwrap();
    drop(srv);
    let srv = Server::start(&repo, &config, None);
    refused(srv.backend(&other).delete(Kind::Lock, name), "another token's lock");
    srv.backend(&mine).delete(Kind::Lock, name).expect("a backup removes its own lock after a server restart");
    assert!(srv.backend(&mine).list(Kind::Lock).unwrap().is_empty());
}

/// A CA and a server certificate for 127.0.0.1 it signed, made with the openssl CLI.
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn make_tls(dir: &Path, name: &str) -> Tls {
    let p = |f: &str| dir.join(format!("{name}-{f}")).to_str().unwrap().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca_args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=snapfs test CA"];
    ca_args.extend(ec);
    let (ca_key, ca, key, csr, cert, ext) = (p("ca.key"), p("ca.pem"), p("key.pem"), p("csr"), p("cert.pem"), p("ext"));
    ca_args.extend(["-keyout", &ca_key, "-out", &ca]);
    sh("openssl", &ca_args);
    let mut req = vec!["req", "-subj", "/CN=127.0.0.1"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr]);
    sh("openssl", &req);
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    Tls { cert: cert.into(), key: key.into(), ca: ca.into() }
}

#[test]
fn tls_with_http2_and_a_wrong_ca_is_refused() {
    if !have_tool("openssl") {
        panic!("this test needs the openssl CLI (apt-get install openssl)");
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (repo, config) = repo_and_config(&base);
    let append = token(&config, "laptop", "append");
    let tls = make_tls(&base, "server");
    let srv = Server::start(&repo, &config, Some(&tls));
    assert!(srv.url.starts_with("https://"), "{}", srv.url);
    let c = srv.client(&append, &base.join("c1"));
    let src = base.join("src");
    change_tree(&src, 7);
    let id = c.backup([&src]);
    let target = base.join("restore");
    c.restore(&id, &target, &[]);
    assert_same_tree(&src, &restored(&target, &src));

    // Another CA, and the system's roots: the handshake fails, with a line that says so.
    let other = make_tls(&base, "other");
    for ca in [Some(&other.ca), None] {
        let mut bad = srv.client(&append, &base.join("c2"));
        bad.env.retain(|(k, _)| k != "SNAPFS_TLS_CA");
        if let Some(ca) = ca {
            bad.env.push(("SNAPFS_TLS_CA".into(), ca.into()));
        }
        let line = assert_error_line(&bad.run(["snapshots"]));
        assert!(line.to_lowercase().contains("certificate"), "{ca:?}: {line}");
    }
    // Plain HTTP to a TLS port fails too, and quickly: nothing worth retrying.
    let plain = Snapfs { repo: srv.url.replace("https://", "http://").into(), ..srv.client(&append, &base.join("c3")) };
    let start = Instant::now();
    assert!(!plain.run(["snapshots"]).status.success());
    assert!(start.elapsed() < Duration::from_secs(30));

    // HTTP/2, negotiated by ALPN, as curl sees it.
    if have_tool("curl") {
        let out = sh(
            "curl",
            &[
                "-sS",
                "--http2",
                "--cacert",
                tls.ca.to_str().unwrap(),
                "-H",
                &format!("Authorization: Bearer {append}"),
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                &format!("{}v1/snapshots/", srv.url),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&out), "2 200");
    }
}
