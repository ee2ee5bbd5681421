//! A repository in an S3-compatible bucket (format-spec §15), through Apache OpenDAL. Object
//! keys follow the local layout under an optional prefix: `config`, `keys/<name>`,
//! `packs/<2 hex>/<name>`, and so on.
//!
//! OpenDAL is async; the [`Backend`] trait is not. Each backend owns a small tokio runtime and
//! blocks on it at this edge only, so nothing above `backend/` knows about async. Callers run
//! on rayon and plain threads, never inside a runtime, and `Runtime::block_on` takes `&self`,
//! so many threads can wait on requests at once.

use std::io::ErrorKind as IoKind;
use std::time::Duration;

use opendal::layers::{HttpClientLayer, RetryLayer, TimeoutLayer};
use opendal::raw::HttpClient;
use opendal::{ErrorKind, Operator, services::S3};

use super::{Backend, Kind, ReadStream, object_name};
use crate::error::{Error, Result};

/// Retries of one request after the first try. With the delays below, an endpoint that
/// refuses connections fails a command in about 6 s, not minutes.
const RETRIES: usize = 5;
const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(3);
/// A TCP connect: without one, a blackholed address waited out the request timeout on every
/// try, two minutes in all; with it, about 20 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole request that is not data transfer (HEAD, LIST, DELETE).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// No progress for this long in a transfer: a pack is a few MiB, so even a slow link moves
/// some of it well within this.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const WORKER_THREADS: usize = 2;
/// A GET to a nearby server is mostly waiting: this many keep a 3-node Garage on loopback busy
/// (restic uses 5 connections; more helped little past this).
const PARALLEL_READS: usize = 8;
/// Pack uploads at once: a PUT waits on three replicas, and each in flight holds a 16 MiB pack.
const PARALLEL_WRITES: usize = 3;

/// Where a repository lives: `s3:http://HOST:PORT/BUCKET[/PREFIX]` (restic's syntax; a
/// location without `http://` or `https://` means https).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub endpoint: String,
    pub bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    pub fn parse(location: &str) -> Result<S3Location> {
        let rest = location.strip_prefix("s3:").ok_or_else(|| bad(location, "it does not start with s3:"))?;
        let (scheme, rest) = match rest.split_once("://") {
            Some((s @ ("http" | "https"), r)) => (s, r),
            Some((s, _)) => return Err(bad(location, &format!("unknown scheme {s}: (use http:// or https://)"))),
            None => ("https", rest),
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(bad(location, "no host"));
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad(location, "no bucket (expected s3:http://HOST:PORT/BUCKET[/PREFIX])"));
        }
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }
}

fn bad(location: &str, why: &str) -> Error {
    Error::Invalid(format!("repository {location}: not an S3 location: {why}"))
}

pub struct S3Backend {
    op: Operator,
    rt: tokio::runtime::Runtime,
    location: String,
    endpoint: String,
}

impl S3Backend {
    /// Connects to the bucket a location names, with credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` and the region from `AWS_DEFAULT_REGION` (else `us-east-1`).
    pub fn open(location: &str) -> Result<S3Backend> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) else {
            S3Location::parse(location)?;
            return Err(Error::Invalid(format!(
                "repository {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3"
            )));
        };
        let region = env("AWS_DEFAULT_REGION").or_else(|| env("AWS_REGION")).unwrap_or_else(|| "us-east-1".into());
        Self::with_credentials(location, &id, &secret, &region)
    }

    /// As [`open`](Self::open), with the credentials given. One LIST of the prefix checks the
    /// endpoint, the bucket and the credentials, so each of those fails here with its own
    /// message rather than later as a missing repository.
    pub fn with_credentials(location: &str, id: &str, secret: &str, region: &str) -> Result<S3Backend> {
        let loc = S3Location::parse(location)?;
        // Explicit credentials only: no ~/.aws files and no EC2 metadata lookup, which on a
        // machine outside EC2 hangs before it fails.
        let builder = S3::default()
            .endpoint(&loc.endpoint)
            .bucket(&loc.bucket)
            .root(&format!("/{}", loc.prefix))
            .region(region)
            .access_key_id(id)
            .secret_access_key(secret)
            .disable_config_load()
            .disable_ec2_metadata();
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Invalid(format!("repository {location}: HTTP client: {e}")))?;
        let op = Operator::new(builder)
            .map_err(|e| Error::Invalid(format!("repository {location}: {}", one_line(&e))))?
            .layer(HttpClientLayer::new(HttpClient::with(client)))
            .layer(TimeoutLayer::new().with_timeout(REQUEST_TIMEOUT).with_io_timeout(IO_TIMEOUT))
            .layer(
                RetryLayer::new()
                    .with_max_times(RETRIES)
                    .with_min_delay(MIN_DELAY)
                    .with_max_delay(MAX_DELAY)
                    .with_factor(2.0)
                    .with_jitter(),
            )
            .finish();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("snapfs-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the S3 client's runtime", e))?;
        let backend = S3Backend { op, rt, location: location.to_string(), endpoint: loc.endpoint };
        backend.root_entries(1)?;
        Ok(backend)
    }

    /// Refuses a prefix that holds anything: `init` must not mix with other objects.
    pub fn check_empty(&self) -> Result<()> {
        if self.root_entries(1)? > 0 {
            return Err(Error::Invalid(format!(
                "{} is not empty; refusing to create a repository there",
                self.location
            )));
        }
        Ok(())
    }

    /// Up to `limit` entries at the top of the prefix (objects or "directories").
    fn root_entries(&self, limit: usize) -> Result<usize> {
        use futures_core::Stream;
        // From the first page only: `list_with(..).limit(n)` pages through the whole prefix n
        // keys a request (five LISTs for every command's open).
        let count = async {
            let lister = self.op.lister_with("").limit(limit + 1).await?;
            let mut lister = std::pin::pin!(lister);
            let mut n = 0;
            while n < limit {
                match std::future::poll_fn(|cx| lister.as_mut().poll_next(cx)).await {
                    // OpenDAL lists the root itself as a directory entry.
                    Some(Ok(e)) if matches!(e.path(), "" | "/") => {}
                    Some(Ok(_)) => n += 1,
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            Ok(n)
        };
        self.run(count).map_err(|e| self.err(format!("open {}", self.location), e))
    }

    /// Waits for one request; OpenDAL's request builders are `IntoFuture`.
    fn run<F: IntoFuture>(&self, request: F) -> F::Output {
        self.rt.block_on(request.into_future())
    }

    fn key(kind: Kind, name: &str) -> String {
        match kind {
            Kind::Config => "config".into(),
            Kind::Pack => format!("packs/{}/{name}", name.get(..2).unwrap_or("__")),
            _ => format!("{}/{name}", kind.dir()),
        }
    }

    fn err(&self, context: String, e: opendal::Error) -> Error {
        let kind = match e.kind() {
            ErrorKind::NotFound => IoKind::NotFound,
            ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => IoKind::AlreadyExists,
            ErrorKind::PermissionDenied => IoKind::PermissionDenied,
            ErrorKind::RangeNotSatisfied => IoKind::UnexpectedEof,
            _ => IoKind::Other,
        };
        let cause = match s3_code(&e).as_deref() {
            Some("NoSuchBucket") => "the bucket does not exist".to_string(),
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => format!(
                "access denied ({}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions",
                s3_code(&e).unwrap_or_default()
            ),
            Some("AuthorizationHeaderMalformed") => {
                "the endpoint refused the request's region: check AWS_DEFAULT_REGION".to_string()
            }
            _ if e.kind() == ErrorKind::PermissionDenied => {
                "access denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions".into()
            }
            _ if e.is_persistent() || e.is_temporary() => {
                format!("{} failed {} tries: {}", self.endpoint, RETRIES + 1, one_line(&e))
            }
            _ => one_line(&e),
        };
        Error::io(context, std::io::Error::new(kind, cause))
    }

    fn ctx(&self, what: &str, kind: Kind, name: &str) -> String {
        format!("{what} {} at {}", object_name(kind, name), self.location)
    }
}

/// The S3 error code (`NoSuchBucket`, …) OpenDAL keeps in its message, when there is one.
fn s3_code(e: &opendal::Error) -> Option<String> {
    s3_field(e, "code")
}

/// A field of the S3 error OpenDAL formats into its message (`S3Error { code: "…", … }`).
fn s3_field(e: &opendal::Error, field: &str) -> Option<String> {
    let m = e.message();
    let start = m.find(&format!("{field}: \""))? + field.len() + 3;
    // The value is Debug-formatted: quotes inside it are escaped.
    let mut value = String::new();
    let mut chars = m[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    None
}

/// The innermost cause of an OpenDAL error on one line (`Connection refused`, or the S3
/// message), without the request dump OpenDAL's own formatting adds.
fn one_line(e: &opendal::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let text = if std::ptr::addr_eq(inner, e as &dyn std::error::Error) {
        match (s3_code(e), s3_field(e, "message")) {
            (Some(code), Some(message)) if !message.is_empty() => format!("{code}: {message}"),
            (Some(code), _) => format!("{code} ({})", e.kind()),
            (None, _) => format!("{}: {}", e.kind(), e.message()),
        }
    } else {
        inner.to_string()
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Backend for S3Backend {
    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let key = Self::key(kind, name);
        let what = || self.ctx("write", kind, name);
        // Garage 2.5 ignores If-None-Match on PUT (it replaces the object), so a HEAD first
        // refuses what exists. Two writers racing between the HEAD and the PUT can both
        // succeed; format-spec §15 says why that is harmless for every name but a concurrent
        // `init`. Servers that honour the header (AWS, MinIO) close that window with the 412.
        match self.run(self.op.stat(&key)) {
            Ok(_) => {
                let cause = std::io::Error::new(IoKind::AlreadyExists, "the object exists");
                return Err(Error::io(what(), cause));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(self.err(what(), e)),
        }
        self.run(self.op.write_with(&key, data.to_vec()).if_not_exists(true))
            .map(|_| ())
            .map_err(|e| self.err(what(), e))
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let key = Self::key(kind, name);
        let buf = self.run(self.op.read(&key)).map_err(|e| self.err(self.ctx("read", kind, name), e))?;
        Ok(buf.to_vec())
    }

    fn read_at(&self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let key = Self::key(kind, name);
        let what = || self.ctx(&format!("read {} bytes at {offset} of", buf.len()), kind, name);
        let got = self
            .run(self.op.read_with(&key).range(offset..offset + buf.len() as u64))
            .map_err(|e| self.err(what(), e))?;
        if got.len() != buf.len() {
            let cause = std::io::Error::new(IoKind::UnexpectedEof, format!("got {} bytes", got.len()));
            return Err(Error::io(what(), cause));
        }
        let mut at = 0;
        for chunk in got {
            buf[at..at + chunk.len()].copy_from_slice(&chunk);
            at += chunk.len();
        }
        Ok(())
    }

    /// One GET for the whole range, consumed as it arrives: memory stays one fill's worth. A
    /// connection that breaks mid-way is resumed from where it stopped (OpenDAL's retry layer).
    fn read_stream(&self, kind: Kind, name: &str, range: std::ops::Range<u64>) -> Result<Box<dyn ReadStream + '_>> {
        let key = Self::key(kind, name);
        let what = self.ctx(&format!("read bytes {}-{} of", range.start, range.end), kind, name);
        let stream = self
            .run(async { self.op.reader(&key).await?.into_stream(range.clone()).await })
            .map_err(|e| self.err(what.clone(), e))?;
        let (held, left) = (opendal::Buffer::new(), range.end - range.start);
        Ok(Box::new(S3Stream { backend: self, what, stream: Box::pin(stream), held, left }))
    }

    fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let what = || format!("list {} at {}", kind.dir(), self.location);
        if kind == Kind::Config {
            return match self.run(self.op.stat("config")) {
                Ok(m) => Ok(vec![("config".into(), m.content_length())]),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.err("list config at ".to_string() + &self.location, e)),
            };
        }
        let dir = format!("{}/", kind.dir());
        // One LIST request per 1000 keys (format-spec §9), recursive so packs/xx/ is one walk.
        let entries = self.run(self.op.list_with(&dir).recursive(true)).map_err(|e| self.err(what(), e))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let Some(rel) = e.path().strip_prefix(&dir) else { continue };
            let name = match (kind, rel.split_once('/')) {
                // packs/<2 hex>/<name>: a name outside its prefix keeps the prefix, so it
                // cannot pass for a pack id (as locally).
                (Kind::Pack, Some((sub, file))) if file.starts_with(sub) && !file.contains('/') => file.to_string(),
                _ => rel.to_string(),
            };
            out.push((name, e.metadata().content_length()));
        }
        Ok(out)
    }

    fn replace(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let key = Self::key(kind, name);
        let what = || self.ctx("replace", kind, name);
        self.run(self.op.stat(&key)).map_err(|e| self.err(what(), e))?;
        // A PUT is atomic: a reader sees the old object or the new one.
        self.run(self.op.write(&key, data.to_vec())).map(|_| ()).map_err(|e| self.err(what(), e))
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let key = Self::key(kind, name);
        self.run(self.op.delete(&key)).map_err(|e| self.err(self.ctx("delete", kind, name), e))
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

struct S3Stream<'b> {
    backend: &'b S3Backend,
    what: String,
    stream: std::pin::Pin<Box<opendal::BufferStream>>,
    /// Received and not yet handed out.
    held: opendal::Buffer,
    /// Bytes of the range not yet handed out.
    left: u64,
}

impl ReadStream for S3Stream<'_> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        use bytes::Buf;
        use futures_core::Stream;
        let eof = |got: usize| {
            let cause = std::io::Error::new(IoKind::UnexpectedEof, format!("the object ended {got} bytes short"));
            Error::io(self.what.clone(), cause)
        };
        if buf.len() as u64 > self.left {
            return Err(eof(buf.len() - self.left as usize));
        }
        let mut at = 0;
        while at < buf.len() {
            if !self.held.has_remaining() {
                let stream = &mut self.stream;
                let next = self.backend.run(std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)));
                match next {
                    Some(Ok(b)) => self.held = b,
                    Some(Err(e)) => return Err(self.backend.err(self.what.clone(), e)),
                    None => return Err(eof(buf.len() - at)),
                }
                continue;
            }
            let n = self.held.remaining().min(buf.len() - at);
            self.held.copy_to_slice(&mut buf[at..at + n]);
            at += n;
        }
        self.left -= buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = S3Location::parse("s3:http://127.0.0.1:3900/bkt/a/b/").unwrap();
        assert_eq!(
            l,
            S3Location { endpoint: "http://127.0.0.1:3900".into(), bucket: "bkt".into(), prefix: "a/b".into() }
        );
        let l = S3Location::parse("s3:s3.example.com/bkt").unwrap();
        assert_eq!((l.endpoint.as_str(), l.bucket.as_str(), l.prefix.as_str()), ("https://s3.example.com", "bkt", ""));
        for bad in ["s3:http://127.0.0.1:3900", "s3:http://127.0.0.1:3900/", "s3:http:///bkt", "s3:ftp://h/b"] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("not an S3 location"), "{bad}: {e}");
        }
        assert!(S3Location::parse("s3:http://h:1").unwrap_err().to_string().contains("no bucket"));
    }

    #[test]
    fn s3_errors_read_as_one_line() {
        let e = opendal::Error::new(
            ErrorKind::Unexpected,
            r#"S3Error { code: "ServiceUnavailable", message: "no quorum: [\"Not connected\"]", resource: "" }"#,
        );
        assert_eq!(s3_code(&e).as_deref(), Some("ServiceUnavailable"));
        assert_eq!(one_line(&e), r#"ServiceUnavailable: no quorum: ["Not connected"]"#);
        let plain = opendal::Error::new(ErrorKind::NotFound, "gone\n away");
        assert_eq!(one_line(&plain), "NotFound: gone away");
    }

    #[test]
    fn keys_follow_the_local_layout() {
        let pack = "ab".repeat(32);
        assert_eq!(S3Backend::key(Kind::Pack, &pack), format!("packs/ab/{pack}"));
        assert_eq!(S3Backend::key(Kind::Config, "config"), "config");
        assert_eq!(S3Backend::key(Kind::Lock, "00ff"), "locks/00ff");
    }
}
