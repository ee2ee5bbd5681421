//! The management API (format-spec §17.4): snapshots listed, filtered, shown, validated and
//! exported as JSON over the protocol's port. What needs the snapshots' contents needs the
//! repository's password, which a server holds only when started with `--unlock`; without it
//! the API lists snapshot objects by id and size, and says how to get the rest.

use std::sync::Arc;

use hyper::{HeaderMap, Method, StatusCode};
use serde_json::json;
use zeroize::Zeroizing;

use super::roles::Role;
use super::routes::{Reply, State, blocking};
use super::tokens::TokenEntry;
use crate::backend::Backend;
use crate::check::{CheckOptions, Subset, check};
use crate::crypto::keyfile::KdfParams;
use crate::error::Error;
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::{Cache, LockMode, Opening, Repository};
use crate::select::{self, Filter};

/// The password to open the repository with, and where the server keeps its index cache.
pub struct Unlocked {
    pub password: Zeroizing<Vec<u8>>,
    pub cache: Cache,
}

/// The header that carries the password an exported bundle is sealed under.
pub const BUNDLE_PASSWORD_HEADER: &str = "snapfs-bundle-password";

/// What a path under `/api/v1/snapshots` names.
pub enum Api {
    List,
    Show(String),
    Validate(String),
    Export(String),
}

impl Api {
    pub fn parse(path: &str) -> Option<Api> {
        let rest = path.strip_prefix("/api/v1/snapshots")?;
        if rest.is_empty() || rest == "/" {
            return Some(Api::List);
        }
        let rest = rest.strip_prefix('/')?;
        let (spec, action) = rest.split_once('/').unwrap_or((rest, ""));
        let spec = spec.to_string();
        match action {
            "" => Some(Api::Show(spec)),
            "validate" => Some(Api::Validate(spec)),
            "export" => Some(Api::Export(spec)),
            _ => None,
        }
    }
}

pub async fn answer(
    state: &Arc<State>,
    token: &TokenEntry,
    method: &Method,
    api: Api,
    query: &str,
    headers: &HeaderMap,
) -> Reply {
    let (want, role) = match api {
        Api::List | Api::Show(_) => (Method::GET, Role::Read),
        Api::Validate(_) => (Method::POST, Role::Read),
        // A bundle is the snapshot's data under a password the caller chooses: only an admin
        // may turn the server's password into one.
        Api::Export(_) => (Method::POST, Role::Admin),
    };
    if *method != want {
        return Reply::err(StatusCode::METHOD_NOT_ALLOWED, format!("use {want} here"));
    }
    if token.role < role {
        return Reply::err(
            StatusCode::FORBIDDEN,
            format!(
                "token {} (role {}) may not use this; it needs role {}",
                token.name,
                token.role.name(),
                role.name()
            ),
        );
    }
    let filter = match parse_filter(query) {
        Ok(f) => f,
        Err(why) => return Reply::err(StatusCode::BAD_REQUEST, why),
    };
    let Some(unlocked) = state.unlocked.clone() else {
        return match api {
            Api::List if filter.is_none() => objects(state).await,
            _ => Reply::err(
                StatusCode::CONFLICT,
                "the server holds no password, so it cannot read snapshots: start it with `snapfs serve --unlock`, or run the command as a client with --repo set to this server",
            ),
        };
    };
    let bundle_password = headers.get(BUNDLE_PASSWORD_HEADER).map(|v| Zeroizing::new(v.as_bytes().to_vec()));
    let backend = state.backend.clone();
    let max = state.max_object;
    blocking(move || {
        let filter = filter.unwrap_or_default();
        let opened = |mode| {
            Repository::open_with(backend.clone(), &unlocked.password, &Opening::new(mode, "serve: management API"))
        };
        let result = (|| -> Result<Reply, Error> {
            match api {
                Api::List => {
                    let (snaps, _) = opened(LockMode::None)?.snapshots()?;
                    let list: Vec<_> = snaps
                        .iter()
                        .filter(|(_, s)| filter.matches(s))
                        .map(|(id, s)| crate::json::snapshot(id, s))
                        .collect();
                    Ok(Reply::json(json!(list)))
                }
                Api::Show(spec) => {
                    let (snaps, _) = opened(LockMode::None)?.snapshots()?;
                    let (id, s) = pick(&snaps, &spec, &filter)?;
                    Ok(Reply::json(crate::json::snapshot(id, s)))
                }
                Api::Validate(spec) => {
                    let (repo, _) = opened(LockMode::Reader)?.load_index(&unlocked.cache.clone().audited())?;
                    let (snaps, _) = repo.snapshots()?;
                    let id = pick(&snaps, &spec, &filter)?.0;
                    let opts = CheckOptions { read_data: Some(Subset::All), snapshot: Some(id), ..Default::default() };
                    let report = check(&repo, &opts)?;
                    let mut v = crate::json::check_report(&report);
                    v["snapshot"] = json!(id.hex());
                    Ok(Reply::json(v))
                }
                Api::Export(spec) => {
                    let Some(pw) = bundle_password.filter(|p| !p.is_empty()) else {
                        return Ok(Reply::err(
                            StatusCode::BAD_REQUEST,
                            format!("an export needs the bundle's password in a {BUNDLE_PASSWORD_HEADER} header"),
                        ));
                    };
                    let (repo, _) = opened(LockMode::Reader)?.load_index(&unlocked.cache)?;
                    let (snaps, _) = repo.snapshots()?;
                    let chosen = pick(&snaps, &spec, &filter)?.clone();
                    export(&repo, chosen, &pw, max)
                }
            }
        })();
        result.unwrap_or_else(|e| refusal(&e))
    })
    .await
}

/// The host a sealed snapshot object names, opened as the repository would open it.
pub fn snapshot_host(
    unlocked: &Unlocked,
    backend: Arc<dyn Backend>,
    name: &str,
    sealed: &[u8],
) -> Result<String, Error> {
    let id = Id::from_hex(name)?;
    let repo = Repository::open_with(backend, &unlocked.password, &Opening::new(LockMode::None, "serve"))?;
    Ok(repo.open_snapshot(&id, sealed)?.hostname)
}

/// `tag=a,b&host=h&path=/p`, each repeatable, as the CLI's filter options; `None` when the
/// query names none.
fn parse_filter(query: &str) -> Result<Option<Filter>, String> {
    let mut f = Filter::default();
    let mut any = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "tag" => f.tags.push(v.into_owned()),
            "host" => f.hosts.push(v.into_owned()),
            "path" => f.paths.push(v.into_owned()),
            other => return Err(format!("unknown query parameter {other:?}: use tag, host or path")),
        }
        any = true;
    }
    Ok(any.then_some(f))
}

fn pick<'a>(snaps: &'a [(Id, Snapshot)], spec: &str, filter: &Filter) -> Result<&'a (Id, Snapshot), Error> {
    let spec = form_urlencoded::parse(format!("s={spec}").as_bytes()).next().map(|(_, v)| v.into_owned());
    let (sel, path) = select::parse_spec(spec.as_deref().unwrap_or(""))?;
    if path.is_some() {
        return Err(Error::Invalid("the API names whole snapshots, not a path in one".into()));
    }
    select::pick(snaps, &sel, filter)
}

/// The bundle of one snapshot, staged in a temporary file and answered whole.
fn export(repo: &Repository, chosen: (Id, Snapshot), password: &[u8], max: u64) -> Result<Reply, Error> {
    let dir = tempfile_dir()?;
    let path = dir.join("export.snapfs-bundle");
    let done = crate::transfer::bundle::export(repo, &[chosen], &path, password, KdfParams::DEFAULT);
    let read = done.and_then(|_| {
        let len = std::fs::metadata(&path).map_err(|e| Error::io(path.display().to_string(), e))?.len();
        if len > max {
            return Ok(Reply::err(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the bundle is {len} bytes, above the server's --max-object of {max}: run `snapfs export` as a client"
                ),
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(Reply::ok(StatusCode::OK, bytes))
    });
    let _ = std::fs::remove_dir_all(&dir);
    read
}

/// A fresh private directory under TMPDIR.
fn tempfile_dir() -> Result<std::path::PathBuf, Error> {
    let mut raw = [0u8; 8];
    crate::crypto::random_bytes(&mut raw)?;
    let dir = std::env::temp_dir().join(format!("snapfs-serve-{}", crate::repo::hex(&raw)));
    std::fs::create_dir(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

fn refusal(e: &Error) -> Reply {
    let status = match e {
        Error::NoSnapshot(_) => StatusCode::NOT_FOUND,
        Error::AmbiguousSnapshot(_) | Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::Locked { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Reply::err(status, e.to_string())
}

/// The snapshot objects, by id and size: what the server can tell without the password.
async fn objects(state: &Arc<State>) -> Reply {
    let b = state.backend.clone();
    match blocking(move || b.list(crate::backend::Kind::Snapshot)).await {
        Ok(items) => {
            Reply::json(json!(items.into_iter().map(|(id, size)| json!({"id": id, "size": size})).collect::<Vec<_>>()))
        }
        Err(e) => Reply::from_backend(&e, "snapshots"),
    }
}
