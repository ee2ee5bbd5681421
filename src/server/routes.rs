//! The protocol (format-spec §17): one request, authenticated, authorized, answered, logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::api::{Api, Unlocked};
use super::log::AccessLog;
use super::owners::LockOwners;
use super::roles::{Op, Role, Verdict};
use super::tokens::{Auth, TokenEntry, Tokens};
use crate::backend::{Backend, Kind, is_not_found, object_name};
use crate::error::Error;
use crate::repo::lock::LockInfo;

/// The protocol version this server speaks (format-spec §17.1).
pub const PROTOCOL: u32 = 1;
pub const PROTOCOL_HEADER: &str = "snapfs-protocol";
/// The hex BLAKE3 of a PUT's body.
pub const HASH_HEADER: &str = "snapfs-blake3";

pub struct State {
    pub backend: Arc<dyn Backend>,
    pub tokens: Tokens,
    pub log: AccessLog,
    /// Lock name → the token that wrote it: an `append` token may delete its own locks only.
    pub lock_owners: LockOwners,
    /// The largest body a PUT may have.
    pub max_object: u64,
    /// The password, when the server was started with `--unlock` (the management API's reads).
    pub unlocked: Option<Arc<Unlocked>>,
}

/// An answer before it becomes a response: its status, body, and what the log says of it.
pub struct Reply {
    status: StatusCode,
    body: Bytes,
    json: bool,
    content_range: Option<String>,
    note: String,
}

impl Reply {
    pub fn ok(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        Reply { status, body: body.into(), json: false, content_range: None, note: String::new() }
    }

    pub fn json(v: serde_json::Value) -> Reply {
        Reply { json: true, ..Reply::ok(StatusCode::OK, v.to_string()) }
    }

    /// A refusal: its one-line reason is the body and goes into the log.
    pub fn err(status: StatusCode, why: impl Into<String>) -> Reply {
        let why = why.into();
        Reply { note: why.clone(), ..Reply::ok(status, why + "\n") }
    }

    pub fn from_backend(e: &Error, what: &str) -> Reply {
        if is_not_found(e) {
            return Reply::err(StatusCode::NOT_FOUND, format!("no {what}"));
        }
        match e {
            Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::AlreadyExists => {
                Reply::err(StatusCode::CONFLICT, format!("{what} exists, and objects are never overwritten"))
            }
            Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::UnexpectedEof => {
                Reply::err(StatusCode::RANGE_NOT_SATISFIABLE, format!("the range lies beyond the end of {what}"))
            }
            e => Reply::err(StatusCode::INTERNAL_SERVER_ERROR, format!("server storage: {e}")),
        }
    }
}

pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let target = req.uri().path().to_string();
    let (token, reply) = route(&state, req).await;
    state.log.request(
        peer,
        token.as_ref().map(|t| t.name.as_str()),
        method.as_str(),
        &target,
        reply.status.as_u16(),
        &reply.note,
    );
    let mut resp = Response::new(Full::new(if method == Method::HEAD { Bytes::new() } else { reply.body.clone() }));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    h.insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL));
    let kind = if reply.json {
        "application/json"
    } else if reply.status.is_success() {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if method == Method::HEAD {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
    }
    if let Some(range) = reply.content_range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        h.insert(header::CONTENT_RANGE, range);
    }
    Ok(resp)
}

/// What a path names.
enum Target {
    Info,
    List(Kind),
    Object(Kind, String),
    Api(Api),
}

fn parse_target(path: &str) -> Option<Target> {
    if path.starts_with("/api/") {
        return Api::parse(path).map(Target::Api);
    }
    let rest = path.strip_prefix("/v1")?;
    if rest.is_empty() || rest == "/" {
        return Some(Target::Info);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "config" {
        return Some(Target::Object(Kind::Config, "config".into()));
    }
    let (dir, name) = rest.split_once('/')?;
    let kind = Kind::ALL.into_iter().find(|k| *k != Kind::Config && k.dir() == dir)?;
    if name.is_empty() {
        return Some(Target::List(kind));
    }
    // Stray names a listing shows (`ab/junk` under packs/) may be read; none climbs out.
    let fits = name.len() <= 256
        && name.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    fits.then(|| Target::Object(kind, name.to_string()))
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> (Option<TokenEntry>, Reply) {
    let bearer =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(bearer) = bearer else {
        return (
            None,
            Reply::err(StatusCode::UNAUTHORIZED, "no token: give one with SNAPFS_SERVER_TOKEN or --token-file"),
        );
    };
    let token = match state.tokens.authenticate(bearer) {
        Auth::Valid(t) => t,
        Auth::Unknown => {
            return (None, Reply::err(StatusCode::UNAUTHORIZED, "unknown token (wrong, or removed from the server)"));
        }
        Auth::Expired(name, at) => {
            let when = crate::timespec::rfc3339(at.saturating_mul(1_000_000_000));
            return (None, Reply::err(StatusCode::UNAUTHORIZED, format!("token {name} expired at {when}")));
        }
    };
    if let Some(v) = req.headers().get(PROTOCOL_HEADER)
        && v.to_str().ok().and_then(|v| v.parse::<u32>().ok()) != Some(PROTOCOL)
    {
        let why = format!(
            "the client speaks protocol {v:?}; this server speaks {PROTOCOL}: use the same snapfs version on both"
        );
        return (Some(token), Reply::err(StatusCode::BAD_REQUEST, why));
    }
    let Some(target) = parse_target(req.uri().path()) else {
        return (Some(token), Reply::err(StatusCode::NOT_FOUND, "no such path in the snapfs protocol"));
    };
    let reply = match (req.method().clone(), target) {
        (Method::GET, Target::Info) => Reply::json(json!({
            "protocol": PROTOCOL,
            "format": crate::format::config::VERSION,
            "token": token.name,
            "role": token.role.name(),
            "host": token.host,
        })),
        (Method::GET, Target::List(kind)) => list(state, kind).await,
        (m, Target::Api(api)) => {
            super::api::answer(state, &token, &m, api, req.uri().query().unwrap_or(""), req.headers()).await
        }
        (Method::GET | Method::HEAD, Target::Object(kind, name)) => get(state, &req, kind, name).await,
        (Method::PUT, Target::Object(kind, name)) => put(state, &token, req, kind, name).await,
        (Method::DELETE, Target::Object(kind, name)) => delete(state, &token, kind, name).await,
        (m, _) => Reply::err(StatusCode::METHOD_NOT_ALLOWED, format!("{m} is not allowed here")),
    };
    (Some(token), reply)
}

/// Runs a backend call off the async workers (backends block, and an S3 backend runs its own
/// runtime).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("a backend call does not panic")
}

async fn list(state: &Arc<State>, kind: Kind) -> Reply {
    let b = state.backend.clone();
    match blocking(move || b.list(kind)).await {
        Ok(items) => Reply::json(json!(items)),
        Err(e) => Reply::from_backend(&e, kind.dir()),
    }
}

/// `Range: bytes=S-E`, the only form clients send.
fn parse_range(v: &str) -> Option<(u64, u64)> {
    let (s, e) = v.strip_prefix("bytes=")?.split_once('-')?;
    let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
    (e >= s && e - s < 1 << 30).then_some((s, e))
}

async fn get(state: &Arc<State>, req: &Request<Incoming>, kind: Kind, name: String) -> Reply {
    let what = object_name(kind, &name);
    let b = state.backend.clone();
    let range = req.headers().get(header::RANGE).map(|v| v.to_str().ok().and_then(parse_range));
    match range {
        Some(None) => Reply::err(StatusCode::RANGE_NOT_SATISFIABLE, "only `Range: bytes=START-END` is understood"),
        Some(Some((start, end))) => {
            let got = blocking(move || {
                let mut buf = vec![0u8; (end - start + 1) as usize];
                b.read_at(kind, &name, start, &mut buf).map(|()| buf)
            })
            .await;
            match got {
                Ok(buf) => Reply {
                    content_range: Some(format!("bytes {start}-{end}/*")),
                    ..Reply::ok(StatusCode::PARTIAL_CONTENT, buf)
                },
                Err(e) => Reply::from_backend(&e, &what),
            }
        }
        None => match blocking(move || b.read(kind, &name)).await {
            Ok(data) => Reply::ok(StatusCode::OK, data),
            Err(e) => Reply::from_backend(&e, &what),
        },
    }
}

fn refused(token: &TokenEntry, op: Op, kind: Kind, what: &str) -> Reply {
    let deletes = op == Op::Delete || kind == Kind::Condemned;
    let hint = match (op, token.role) {
        (Op::Delete | Op::Write, Role::Read | Role::Append) if deletes => {
            "; this token may not delete: run forget and prune with a delete token".to_string()
        }
        (Op::Replace, _) => "; only an admin token may replace an object (key rotation)".to_string(),
        _ => String::new(),
    };
    Reply::err(
        StatusCode::FORBIDDEN,
        format!("token {} (role {}) may not {} {what}{hint}", token.name, token.role.name(), op.verb()),
    )
}

async fn put(state: &Arc<State>, token: &TokenEntry, req: Request<Incoming>, kind: Kind, name: String) -> Reply {
    let what = object_name(kind, &name);
    let op =
        if req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "replace")) { Op::Replace } else { Op::Write };
    if token.role.may(op, kind) != Verdict::Allow {
        return refused(token, op, kind, &what);
    }
    if name.contains('/') {
        return Reply::err(StatusCode::BAD_REQUEST, format!("{what}: not a name an object may be written under"));
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let Some(declared) = declared else {
        return Reply::err(StatusCode::LENGTH_REQUIRED, format!("{what}: a PUT needs a Content-Length"));
    };
    if declared > state.max_object {
        return Reply::err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: {declared} bytes exceed the server's limit of {}", state.max_object),
        );
    }
    let hash = req.headers().get(HASH_HEADER).and_then(|v| blake3::Hash::from_hex(v.as_bytes()).ok());
    let Some(hash) = hash else {
        return Reply::err(
            StatusCode::BAD_REQUEST,
            format!("{what}: a PUT needs a {HASH_HEADER} header (hex BLAKE3 of the body)"),
        );
    };
    // The whole body, or nothing: a connection cut short or a body longer than declared ends
    // here, before anything reaches storage.
    let body = match Limited::new(req.into_body(), declared as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Reply::err(
                StatusCode::BAD_REQUEST,
                format!("{what}: the body was not received whole ({e}); nothing stored"),
            );
        }
    };
    if body.len() as u64 != declared {
        return Reply::err(
            StatusCode::BAD_REQUEST,
            format!("{what}: got {} bytes, {declared} declared; nothing stored", body.len()),
        );
    }
    let got = blake3::hash(&body);
    if got != hash {
        return Reply::err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{what}: the body's BLAKE3 is not the declared one; nothing stored"),
        );
    }
    // A pack is named by the plain BLAKE3 of its bytes (§6): garbage cannot take a pack's name.
    if kind == Kind::Pack && got.to_hex().as_str() != name {
        return Reply::err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{what}: the body's BLAKE3 is not the pack's name; nothing stored"),
        );
    }
    if kind == Kind::Lock
        && let Some(host) = &token.host
    {
        let lock = std::str::from_utf8(&body).ok().and_then(|t| LockInfo::parse(&name, t));
        if lock.as_ref().is_none_or(|l| &l.host != host) {
            return Reply::err(
                StatusCode::FORBIDDEN,
                format!("token {} may write locks of host {host} only", token.name),
            );
        }
    }
    // Unlocked, the server can read a snapshot's host, and a host-restricted token adds
    // snapshots of its own host only.
    if kind == Kind::Snapshot
        && let (Some(host), Some(unlocked)) = (&token.host, &state.unlocked)
    {
        let (b, u, n, sealed) = (state.backend.clone(), unlocked.clone(), name.clone(), body.clone());
        match blocking(move || super::api::snapshot_host(&u, b, &n, &sealed)).await {
            Ok(h) if h == *host => {}
            Ok(h) => {
                return Reply::err(
                    StatusCode::FORBIDDEN,
                    format!("token {} may add snapshots of host {host} only, not of {h}", token.name),
                );
            }
            Err(e) => {
                return Reply::err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{what}: not a snapshot of this repository ({e}); nothing stored"),
                );
            }
        }
    }
    let b = state.backend.clone();
    let n = name.clone();
    let stored =
        blocking(move || if op == Op::Replace { b.replace(kind, &n, &body) } else { b.write(kind, &n, &body) }).await;
    match stored {
        Ok(()) => {
            if kind == Kind::Lock {
                state.lock_owners.set(&name, &token.name);
            }
            Reply::ok(StatusCode::CREATED, Bytes::new())
        }
        Err(e) => Reply::from_backend(&e, &what),
    }
}

async fn delete(state: &Arc<State>, token: &TokenEntry, kind: Kind, name: String) -> Reply {
    let what = object_name(kind, &name);
    match token.role.may(Op::Delete, kind) {
        Verdict::Allow => {}
        Verdict::IfOwnLock => {
            if state.lock_owners.owner(&name).as_ref() != Some(&token.name) {
                return Reply::err(
                    StatusCode::FORBIDDEN,
                    format!(
                        "token {} (role {}) may delete only the locks it wrote, not {what}",
                        token.name,
                        token.role.name()
                    ),
                );
            }
        }
        Verdict::Deny => return refused(token, Op::Delete, kind, &what),
    }
    let b = state.backend.clone();
    let n = name.clone();
    match blocking(move || b.delete(kind, &n)).await {
        Ok(()) => {
            if kind == Kind::Lock {
                state.lock_owners.remove(&name);
            }
            Reply::ok(StatusCode::NO_CONTENT, Bytes::new())
        }
        Err(e) => Reply::from_backend(&e, &what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ranges() {
        assert!(matches!(parse_target("/v1/"), Some(Target::Info)));
        assert!(matches!(parse_target("/v1/packs/"), Some(Target::List(Kind::Pack))));
        assert!(matches!(parse_target("/v1/config"), Some(Target::Object(Kind::Config, _))));
        assert!(matches!(parse_target("/v1/locks/00ff"), Some(Target::Object(Kind::Lock, n)) if n == "00ff"));
        for bad in ["/v1/packs/../config", "/v1/nope/x", "/v2/packs/", "/v1/packs/a//b", "/v1/locks/a b"] {
            assert!(parse_target(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_range("bytes=10-19"), Some((10, 19)));
        assert_eq!(parse_range("bytes=10-"), None);
        assert_eq!(parse_range("bytes=9-3"), None);
    }
}
