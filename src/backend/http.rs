//! A repository behind `snapfs serve` (format-spec §17): `--repo http(s)://HOST:PORT/`, with a
//! bearer token from `SNAPFS_SERVER_TOKEN` or a token file, and for a private CA its
//! certificate. reqwest (already in the tree through OpenDAL) on a small tokio runtime, blocked
//! on at this edge only, as in [`super::s3`].

use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use zeroize::Zeroizing;

use super::{Backend, Kind, object_name};
use crate::error::{Error, Result};

/// The protocol version this client speaks; the server refuses another.
const PROTOCOL: u32 = 1;
/// Retries of one request after the first try, with backoff from `MIN_DELAY` doubling to
/// `MAX_DELAY`: a server that is down fails a command in about 6 s.
const RETRIES: u32 = 5;
const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte received for this long: the request failed (and is retried).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const WORKER_THREADS: usize = 2;
/// A ranged GET to the server is a round trip plus the server's own read: with a request per
/// core in flight the cores wait on it, so a restore keeps more than that going.
const PARALLEL_READS: usize = 6;
/// A PUT waits for the server to hash and store the whole pack before it answers.
const PARALLEL_WRITES: usize = 2;

/// What a client needs besides the URL.
#[derive(Default)]
pub struct HttpOptions {
    pub token: Option<Zeroizing<String>>,
    /// PEM certificates to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
}

impl HttpOptions {
    /// From `SNAPFS_SERVER_TOKEN`, `SNAPFS_SERVER_TOKEN_FILE` and `SNAPFS_TLS_CA`.
    pub fn from_env() -> Result<HttpOptions> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let token = match (env("SNAPFS_SERVER_TOKEN"), env("SNAPFS_SERVER_TOKEN_FILE")) {
            (Some(t), _) => Some(Zeroizing::new(t.to_string_lossy().trim().to_string())),
            (None, Some(f)) => Some(read_token_file(Path::new(&f))?),
            (None, None) => None,
        };
        Ok(HttpOptions { token, ca: env("SNAPFS_TLS_CA").map(PathBuf::from) })
    }
}

/// The first line of a token file.
pub fn read_token_file(path: &Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("read token file {}", path.display()), e))?,
    );
    Ok(Zeroizing::new(text.lines().next().unwrap_or("").trim().to_string()))
}

pub struct HttpBackend {
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    /// `http(s)://HOST:PORT/v1/`
    base: String,
    location: String,
    token: Zeroizing<String>,
    /// The token's role as the server reported it.
    pub role: String,
}

/// One answer: its status and body, or for a ranged read into a caller's buffer, how many
/// bytes of it the body filled (`None`: the body was longer than the buffer).
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    filled: Option<usize>,
}

impl HttpBackend {
    /// Connects and asks the server who the token is: a wrong token, an untrusted
    /// certificate, a server of another protocol and a dead address each fail here.
    pub fn open(location: &str, opts: &HttpOptions) -> Result<HttpBackend> {
        let invalid = |why: String| Error::Invalid(format!("repository {location}: {why}"));
        let rest = location.strip_prefix("http://").or_else(|| location.strip_prefix("https://")).unwrap_or("");
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(invalid("expected http(s)://HOST:PORT/".into()));
        }
        let token = opts
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("no token: set SNAPFS_SERVER_TOKEN or use --token-file".into()))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .pool_max_idle_per_host(32)
            .no_proxy();
        if let Some(ca) = &opts.ca {
            let pem = std::fs::read(ca).map_err(|e| Error::io(format!("read CA file {}", ca.display()), e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("CA file {}: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| invalid(format!("start the HTTP client: {}", one_line(&e))))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("snapfs-http")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the HTTP client's runtime", e))?;
        let scheme = if location.starts_with("https://") { "https" } else { "http" };
        let mut b = HttpBackend {
            client,
            rt,
            base: format!("{scheme}://{host}/v1/"),
            location: format!("{scheme}://{host}/"),
            token,
            role: String::new(),
        };
        let info = b.request(Method::GET, String::new(), None, None, None, &format!("connect to {}", b.location))?;
        let v: serde_json::Value =
            serde_json::from_slice(&info.body).map_err(|_| invalid("not a snapfs server".into()))?;
        b.role = v["role"].as_str().unwrap_or("").to_string();
        Ok(b)
    }

    fn url(&self, kind: Kind, name: &str) -> String {
        match kind {
            Kind::Config => format!("{}config", self.base),
            _ => format!("{}{}/{name}", self.base, kind.dir()),
        }
    }

    /// Sends one request, retrying what may pass on a second try (no connection, a timeout,
    /// 5xx, 429). A 4xx is final and becomes an error naming `what`. A successful answer's
    /// body goes into `into` when given, chunk by chunk as it arrives: collecting a 4 MiB span
    /// and then copying it cost two fresh buffers' page faults per request, a third of a
    /// restore's client CPU through `snapfs serve`.
    fn request(
        &self,
        method: Method,
        path: String,
        body: Option<&[u8]>,
        range: Option<(u64, usize)>,
        mut into: Option<&mut [u8]>,
        what: &str,
    ) -> Result<Answer> {
        let url = if path.starts_with("http") { path } else { format!("{}{path}", self.base) };
        let hash = body.map(|b| blake3::hash(b).to_hex().to_string());
        let mut delay = MIN_DELAY;
        let mut last = String::new();
        let mut retried_unknown = false;
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_DELAY);
            }
            let mut req = self
                .client
                .request(method.clone(), &url)
                .bearer_auth(self.token.as_str())
                .header("snapfs-protocol", PROTOCOL);
            if let (Some(b), Some(h)) = (body, &hash) {
                req = req.header("snapfs-blake3", h.as_str()).header(header::CONTENT_LENGTH, b.len()).body(b.to_vec());
            }
            if let Some((offset, len)) = range {
                req = req.header(header::RANGE, format!("bytes={offset}-{}", offset + len as u64 - 1));
            }
            let sink = into.as_deref_mut();
            let sent = self.rt.block_on(async {
                let mut resp = req.send().await?;
                let status = resp.status();
                match sink {
                    Some(buf) if status.is_success() => {
                        let mut filled = Some(0);
                        while let Some(chunk) = resp.chunk().await? {
                            filled = filled.and_then(|n| {
                                let dest = buf.get_mut(n..n + chunk.len())?;
                                dest.copy_from_slice(&chunk);
                                Some(n + chunk.len())
                            });
                        }
                        Ok(Answer { status, body: Vec::new(), filled })
                    }
                    _ => resp.bytes().await.map(|b| Answer { status, body: b.into(), filled: None }),
                }
            });
            let answer = match sent {
                Ok(a) => a,
                Err(e) => {
                    last = one_line(&e);
                    // A certificate that is not trusted stays so: say it at once.
                    if last.contains("certificate") {
                        let why = format!("TLS: {last} (give the server's CA with --tls-ca)");
                        return Err(Error::io(what, std::io::Error::new(IoKind::PermissionDenied, why)));
                    }
                    // The request may have reached the server: a retried PUT may then find
                    // its own object (below).
                    retried_unknown = true;
                    continue;
                }
            };
            let status = answer.status;
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                last = format!("server error {}: {}", status.as_u16(), text(&answer.body));
                continue;
            }
            if status.is_success() {
                return Ok(answer);
            }
            // Our own earlier try landed: packs and snapshots are named by their content, locks
            // have random names, so the object there is the one we sent.
            if status == StatusCode::CONFLICT && retried_unknown && method == Method::PUT {
                return Ok(answer);
            }
            let msg = text(&answer.body);
            let (kind, why) = match status {
                StatusCode::UNAUTHORIZED => (IoKind::PermissionDenied, format!("the server refused the token: {msg}")),
                StatusCode::FORBIDDEN => (IoKind::PermissionDenied, format!("{msg} on {}", self.location)),
                StatusCode::NOT_FOUND => (IoKind::NotFound, msg),
                StatusCode::CONFLICT => (IoKind::AlreadyExists, msg),
                StatusCode::RANGE_NOT_SATISFIABLE => (IoKind::UnexpectedEof, msg),
                s => (IoKind::Other, format!("the server answered {}: {msg}", s.as_u16())),
            };
            return Err(Error::io(what, std::io::Error::new(kind, why)));
        }
        let why = format!("failed {} tries: {last}", RETRIES + 1);
        Err(Error::io(what, std::io::Error::other(why)))
    }

    fn ctx(&self, what: &str, kind: Kind, name: &str) -> String {
        format!("{what} {} at {}", object_name(kind, name), self.location)
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause on one line (`Connection refused`, `invalid peer certificate: …`).
fn one_line(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    let mut text = e.to_string();
    while let Some(next) = inner.source() {
        inner = next;
        text = next.to_string();
    }
    if e.is_timeout() {
        text = format!("timed out ({text})");
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Backend for HttpBackend {
    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        self.request(Method::PUT, self.url(kind, name), Some(data), None, None, &self.ctx("write", kind, name))
            .map(|_| ())
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        Ok(self.request(Method::GET, self.url(kind, name), None, None, None, &self.ctx("read", kind, name))?.body)
    }

    fn read_at(&self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let what = self.ctx(&format!("read {} bytes at {offset} of", buf.len()), kind, name);
        let want = buf.len();
        let got = self.request(Method::GET, self.url(kind, name), None, Some((offset, want)), Some(buf), &what)?;
        if got.filled != Some(want) || got.status != StatusCode::PARTIAL_CONTENT {
            let n = got.filled.map_or_else(|| format!("more than {want}"), |n| n.to_string());
            let cause = std::io::Error::new(IoKind::UnexpectedEof, format!("got {n} bytes"));
            return Err(Error::io(what, cause));
        }
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let what = format!("list {} at {}", if kind == Kind::Config { "config" } else { kind.dir() }, self.location);
        if kind == Kind::Config {
            return match self.request(Method::GET, self.url(kind, ""), None, None, None, &what) {
                Ok(a) => Ok(vec![("config".into(), a.body.len() as u64)]),
                Err(e) if super::is_not_found(&e) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let a = self.request(Method::GET, format!("{}/", kind.dir()), None, None, None, &what)?;
        serde_json::from_slice(&a.body).map_err(|e| Error::corrupt(what, format!("the server's listing: {e}")))
    }

    fn replace(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let url = self.url(kind, name) + "?replace";
        self.request(Method::PUT, url, Some(data), None, None, &self.ctx("replace", kind, name)).map(|_| ())
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        match self.request(Method::DELETE, self.url(kind, name), None, None, None, &self.ctx("delete", kind, name)) {
            Err(e) if super::is_not_found(&e) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn parallel_reads(&self) -> usize {
        PARALLEL_READS
    }

    fn parallel_writes(&self) -> usize {
        PARALLEL_WRITES
    }
}
