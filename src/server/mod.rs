//! `snapfs serve`: a repository server (format-spec §17). It holds a repository on any
//! [`Backend`] and serves its encrypted objects over HTTP/1.1 and HTTP/2, with or without TLS,
//! to clients holding bearer tokens, each allowed what its role permits. It never needs the
//! repository's password; given one (`--unlock`), its management API can also read snapshots.
//!
//! The async runtime stays in here, as in `backend::s3`: [`serve`] blocks its caller.

pub mod api;
pub mod log;
pub mod owners;
pub mod roles;
pub mod routes;
pub mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use crate::backend::Backend;

pub use roles::Role;
pub use tokens::TokenFile;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{}: {why}", .path.display())]
    Config { path: PathBuf, why: String },
    #[error("listen on {addr}: {cause}")]
    Listen { addr: String, cause: std::io::Error },
    #[error("{0}")]
    Usage(String),
}

/// The largest object a PUT may carry by default: a pack is at most 4 GiB (§6) but writers
/// close one at tens of MiB.
pub const MAX_OBJECT: u64 = 1 << 30;
const WORKER_THREADS: usize = 4;
/// A client that sends no complete request head for this long is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Options {
    pub listen: String,
    /// Certificate chain and private key, PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The token file (see [`tokens`]).
    pub config: PathBuf,
    /// Where the access log goes; standard error without one.
    pub access_log: Option<PathBuf>,
    pub max_object: u64,
    /// The repository's password for the management API (`--unlock`); `None`: the server
    /// never sees it.
    pub unlocked: Option<api::Unlocked>,
}

/// Serves until the process ends. `ready` is called with the bound address once the server
/// accepts connections (the port, when `listen` asked for port 0).
pub fn serve(backend: Arc<dyn Backend>, opts: Options, ready: impl FnOnce(SocketAddr)) -> Result<(), ServerError> {
    let tokens = tokens::Tokens::open(&opts.config)?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    // A repository the server cannot list yet (none there) has no locks to own.
    let live_locks: Vec<String> =
        backend.list(crate::backend::Kind::Lock).unwrap_or_default().into_iter().map(|(n, _)| n).collect();
    let state = Arc::new(routes::State {
        backend,
        tokens,
        log: log::AccessLog::open(opts.access_log.as_deref())?,
        lock_owners: owners::LockOwners::beside(&opts.config, &live_locks),
        max_object: opts.max_object,
        unlocked: opts.unlocked.map(Arc::new),
    });
    let listen_err = |cause| ServerError::Listen { addr: opts.listen.clone(), cause };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("snapfs-serve")
        .enable_all()
        .build()
        .map_err(listen_err)?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&opts.listen).await.map_err(listen_err)?;
        ready(listener.local_addr().map_err(listen_err)?);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                // Out of file descriptors and the like: wait rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (state, tls) = (state.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| routes::handle(state.clone(), req, peer));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                // A connection that fails (a TLS handshake with a client that does not trust
                // the certificate, a reset) ends by itself; requests are logged by `routes`.
                let _ = match tls {
                    Some(tls) => match tls.accept(stream).await {
                        Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection(TokioIo::new(stream), svc).await,
                };
            });
        }
    })
}
