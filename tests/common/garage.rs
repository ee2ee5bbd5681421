//! A real 3-node Garage cluster on loopback (replication factor 3), started once per test
//! binary and shared by its tests, each in its own bucket. See the testing guide's "Object
//! storage in tests".
//!
//! A static's destructor never runs, so the servers are tied to the test process instead: they
//! are spawned from a thread that never ends, with PR_SET_PDEATHSIG, so the kernel kills them
//! when the test process goes, however it goes (a panic, a SIGKILL, a normal exit).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};

use snapfs::backend::Backend;
use std::time::{Duration, Instant};

const REGION: &str = "garage";
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Garage {
    /// The servers' directories and configs; kept for the process's life.
    pub dir: PathBuf,
    pub configs: Vec<PathBuf>,
    pub s3_ports: Vec<u16>,
    /// Each node's admin API, for its request counters.
    admin_ports: Vec<u16>,
    pub key_id: String,
    pub secret: String,
    /// `ID@127.0.0.1:PORT` of each node, for `node connect`.
    peers: Vec<String>,
    children: Mutex<Vec<Option<Child>>>,
    spawner: mpsc::Sender<(PathBuf, mpsc::Sender<Child>)>,
}

/// The garage binary: on PATH, else where `cargo install` puts it.
pub fn garage_bin() -> Option<PathBuf> {
    let on_path = Command::new("garage").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok_and(|s| s.success()) {
        return Some("garage".into());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let p = home.join(".cargo/bin/garage");
    p.is_file().then_some(p)
}

/// The shared cluster, started on first use. A test binary that reports "ok" for tests that
/// never ran looks green, so a missing garage fails the test, unless `SNAPFS_SKIP_GARAGE=1`
/// asks to skip it (never in CI): then the test says so and gets `None`.
pub fn cluster() -> Option<&'static Garage> {
    if !available() {
        return None;
    }
    Some(CLUSTER.get_or_init(|| {
        // SAFETY: registering a plain function; it runs once, at exit.
        unsafe { libc::atexit(stop_cluster) };
        Garage::start(3)
    }))
}

/// Whether garage is here; when it is not, panics unless the tests may be skipped (see
/// [`cluster`]).
pub fn available() -> bool {
    if garage_bin().is_none() {
        let why = "the S3 tests need Garage 2.x (cargo install garage --locked)";
        if std::env::var_os("CI").is_some_and(|v| v != "false") {
            panic!("garage is required in CI: {why}");
        }
        if std::env::var_os("SNAPFS_SKIP_GARAGE").is_none_or(|v| v != "1") {
            panic!("{why}; set SNAPFS_SKIP_GARAGE=1 to skip the S3 tests instead");
        }
        eprintln!("\n!!!!!!!! SKIPPED (SNAPFS_SKIP_GARAGE=1): {why} !!!!!!!!\n");
        return false;
    }
    true
}

static CLUSTER: OnceLock<Garage> = OnceLock::new();

/// At a normal exit: stop the servers and remove their directories (a static is never dropped).
extern "C" fn stop_cluster() {
    if let Some(g) = CLUSTER.get() {
        g.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A unique, valid bucket name per call in this process.
pub fn bucket_name(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), what.replace('_', "-"))
}

impl Garage {
    pub fn start(nodes: usize) -> Garage {
        let dir = tempfile::Builder::new().prefix("snapfs-garage").tempdir().unwrap().keep();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).unwrap();
        let rpc_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut configs = Vec::new();
        let mut s3_ports = Vec::new();
        let mut rpc_ports = Vec::new();
        let mut admin_ports = Vec::new();
        for i in 1..=nodes {
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            let node = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node).unwrap();
            let conf = format!(
                "metadata_dir = \"{n}/meta\"\ndata_dir = \"{n}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = {nodes}\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{rpc_secret}\"\n\
                 [s3_api]\napi_bind_addr = \"127.0.0.1:{s3}\"\ns3_region = \"{REGION}\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                n = node.display()
            );
            let path = dir.join(format!("node{i}.toml"));
            std::fs::write(&path, conf).unwrap();
            configs.push(path);
            s3_ports.push(s3);
            admin_ports.push(admin);
            rpc_ports.push(rpc);
        }
        // The thread that spawns the servers lives as long as the process (see the module docs).
        let (spawner, requests) = mpsc::channel::<(PathBuf, mpsc::Sender<Child>)>();
        let log_dir = dir.clone();
        std::thread::spawn(move || {
            for (conf, reply) in requests {
                let name = conf.file_stem().unwrap().to_string_lossy().into_owned();
                let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).unwrap();
                let mut c = Command::new(garage_bin().unwrap());
                c.arg("-c").arg(&conf).arg("server").stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
                // SAFETY: prctl is async-signal-safe and touches only the child.
                unsafe {
                    c.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(c.spawn().expect("spawn garage server"));
            }
            loop {
                std::thread::park();
            }
        });
        let g = Garage {
            dir,
            configs,
            s3_ports,
            admin_ports,
            key_id: String::new(),
            secret: String::new(),
            peers: Vec::new(),
            children: Mutex::new(Vec::new()),
            spawner,
        };
        for i in 0..nodes {
            let child = g.spawn(i);
            g.children.lock().unwrap().push(Some(child));
        }
        g.form_cluster(nodes, &rpc_ports)
    }

    fn spawn(&self, node: usize) -> Child {
        let (tx, rx) = mpsc::channel();
        self.spawner.send((self.configs[node].clone(), tx)).unwrap();
        rx.recv().unwrap()
    }

    /// `garage -c nodeN.toml ARGS`, retried while the servers come up; panics with the output.
    pub fn admin(&self, node: usize, args: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new(garage_bin().unwrap())
                .arg("-c")
                .arg(&self.configs[node])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run garage");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "garage {args:?} failed: {}{}\n(logs in {})",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn form_cluster(mut self, nodes: usize, rpc_ports: &[u16]) -> Garage {
        let ids: Vec<String> = (0..nodes)
            .map(|i| self.admin(i, &["node", "id", "-q"]).trim().split('@').next().unwrap().to_string())
            .collect();
        self.peers = (0..nodes).map(|i| format!("{}@127.0.0.1:{}", ids[i], rpc_ports[i])).collect();
        for peer in &self.peers[1..] {
            self.admin(0, &["node", "connect", peer]);
        }
        for id in &ids {
            self.admin(0, &["layout", "assign", "-z", "dc1", "-c", "1G", id]);
        }
        self.admin(0, &["layout", "apply", "--version", "1"]);
        self.wait_healthy();
        let key = self.admin(0, &["key", "create", "snapfs-tests"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no {name} in garage key create's output:\n{key}"))
        };
        self.key_id = field("Key ID:");
        self.secret = field("Secret key:");
        self
    }

    /// Waits until every node is up and in the layout.
    pub fn wait_healthy(&self) {
        let start = Instant::now();
        while !self.healthy(self.configs.len()) {
            assert!(start.elapsed() < START_TIMEOUT, "garage did not become healthy:\n{}", self.status());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn status(&self) -> String {
        self.admin(0, &["status"])
    }

    /// Every node up and in the layout: `status` lists them all under HEALTHY NODES with a
    /// zone, and lists no failed node.
    fn healthy(&self, nodes: usize) -> bool {
        let s = self.status();
        let healthy = s.split("====").skip_while(|p| !p.contains("HEALTHY NODES")).nth(1).unwrap_or("");
        !s.contains("FAILED") && healthy.lines().filter(|l| l.contains("dc1")).count() == nodes
    }

    /// A new bucket the test key may read, write and own; returns its name.
    pub fn bucket(&self, what: &str) -> String {
        let name = bucket_name(what);
        self.admin(0, &["bucket", "create", &name]);
        self.admin(0, &["bucket", "allow", "--read", "--write", "--owner", &name, "--key", "snapfs-tests"]);
        // The grant is made through node 0 and reaches the other nodes a moment later: a test's
        // first request through another node was AccessDenied (CI saw it). Wait until every
        // node lets the key in.
        for node in 0..self.s3_ports.len() {
            let deadline = Instant::now() + Duration::from_secs(20);
            let usable = || {
                snapfs::backend::S3Backend::with_credentials(&self.url(node, &name), &self.key_id, &self.secret, REGION)
                    .and_then(|b| b.list(snapfs::backend::Kind::Lock))
                    .is_ok()
            };
            while !usable() {
                assert!(Instant::now() < deadline, "bucket {name} is not usable through node {node} after 20 s");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        name
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET[/PREFIX]` through node `node`.
    pub fn url(&self, node: usize, bucket_and_prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket_and_prefix}", self.s3_ports[node])
    }

    /// The environment a client needs for this cluster.
    pub fn env(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        [
            ("AWS_ACCESS_KEY_ID", self.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", &self.secret),
            ("AWS_DEFAULT_REGION", REGION),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    /// Kills node `node` (SIGKILL, as a crash) and waits for it.
    pub fn kill(&self, node: usize) {
        if let Some(mut c) = self.children.lock().unwrap()[node].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `node` again after [`kill`](Self::kill), with its data.
    pub fn restart(&self, node: usize) {
        let child = self.spawn(node);
        self.children.lock().unwrap()[node] = Some(child);
        // Garage would find it again by itself, after tens of seconds; this is at once.
        let peer = self.peers[node].clone();
        self.admin(if node == 0 { 1 } else { 0 }, &["node", "connect", &peer]);
    }

    /// A client of the repository at `url` (from [`url`](Self::url)) with its own cache.
    pub fn client(&self, url: &str, cache: &Path) -> super::Snapfs {
        let mut s = super::Snapfs::new(PathBuf::from(url));
        s.env = self.env();
        s.env.push(("SNAPFS_CACHE_DIR".into(), cache.into()));
        s
    }

    /// Starts `snapfs backup SRC` and returns once its first pack is in the bucket, with the
    /// backup's uploads slowed to [`SLOW_UPLOAD`] bytes/s through a loopback proxy: a moment
    /// when it has uploaded something and has seconds of work left, however fast the machine
    /// (unthrottled, a fast CI runner finished 30 MiB between the first pack and the kill).
    pub fn backup_under_way(&self, s: &super::Snapfs, url: &str, src: &Path) -> Child {
        let host = |port: u16| format!("127.0.0.1:{port}/");
        let port = *self.s3_ports.iter().find(|p| url.contains(&host(**p))).expect("a cluster URL");
        let slow = super::Snapfs {
            repo: url.replace(&host(port), &host(proxy(port, Some(SLOW_UPLOAD), |_| None))).into(),
            ..s.clone()
        };
        let mut cmd = slow.command();
        cmd.arg("backup").arg(src).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let probe = snapfs::backend::S3Backend::with_credentials(url, &self.key_id, &self.secret, REGION).unwrap();
        let start = Instant::now();
        while probe.list(snapfs::backend::Kind::Pack).unwrap().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(60), "the backup wrote no pack in 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// S3 requests of one kind (`GetObject`, `PutObject`, …) the whole cluster served so far:
    /// Garage's `api_s3_request_counter` from each node's `/metrics`. Every bucket counts, so a
    /// test comparing counts must have the cluster to itself.
    pub fn requests(&self, call: &str) -> u64 {
        use std::io::{Read, Write};
        let label = format!("api_endpoint=\"{call}\"");
        let mut n = 0.0;
        for port in &self.admin_ports {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", *port)).unwrap();
            conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
            let mut page = String::new();
            conn.read_to_string(&mut page).unwrap();
            let counters = page.lines().filter(|l| l.starts_with("api_s3_request_counter{") && l.contains(&label));
            n += counters.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>();
        }
        n as u64
    }

    pub fn config(&self, node: usize) -> &Path {
        &self.configs[node]
    }
}

impl Garage {
    fn stop(&self) {
        for node in 0..self.configs.len() {
            self.kill(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What [`Garage::backup_under_way`]'s proxy lets through, all connections together.
pub const SLOW_UPLOAD: u64 = 4 << 20;

/// A loopback proxy to `to`, serving until the test process ends. Requests pass on at `rate`
/// bytes/s over all connections when given; answers at full speed. Connection k (from 0) is
/// reset after `cut(k)` bytes of its request when that is `Some`, so the client sees the
/// request fail mid-way.
pub fn proxy(to: u16, rate: Option<u64>, cut: impl Fn(usize) -> Option<usize> + Send + Sync + 'static) -> u16 {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // The next instant at which the shared rate allows more bytes through.
    let next = Arc::new(Mutex::new(Instant::now()));
    std::thread::spawn(move || {
        for (k, c) in l.incoming().enumerate() {
            let Ok(mut client) = c else { continue };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            let limit = cut(k);
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            let next = next.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                let mut passed = 0;
                while let Ok(m) = client.read(&mut buf) {
                    if let Some(rate) = rate {
                        let at = {
                            let mut n = next.lock().unwrap();
                            *n = (*n).max(Instant::now()) + Duration::from_secs_f64(m as f64 / rate as f64);
                            *n
                        };
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    if m == 0 || server.write_all(&buf[..m]).is_err() {
                        break;
                    }
                    passed += m;
                    if limit.is_some_and(|a| passed >= a) {
                        set_linger_zero(&client);
                        break;
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Both);
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

/// SO_LINGER 0: the close sends a reset, not a clean end.
fn set_linger_zero(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
