//! `snapfs serve`: the repository server (format-spec §17), and `snapfs serve token …` to
//! manage its tokens. The server runs in the foreground until killed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::Global;
use snapfs::repo::{LockMode, Opening, Repository};
use snapfs::server::api::Unlocked;
use snapfs::server::{self, Role, TokenFile};
use snapfs::timespec;
use zeroize::Zeroizing;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    token: Option<Sub>,
    /// Address to listen on, e.g. 0.0.0.0:8000 or 127.0.0.1:0 (any free port, printed)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,
    /// TLS certificate chain (PEM); with --tls-key the server speaks HTTPS only
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
    /// Append the access log to this file [default: standard error]
    #[arg(long, value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// The largest object a client may upload, in MiB
    #[arg(long, value_name = "MIB", default_value_t = server::MAX_OBJECT >> 20)]
    max_object: u64,
    /// Unlock the repository with its password (as for every command) so the management API
    /// can filter, show, validate and export snapshots; without it the server never sees it
    #[arg(long)]
    unlock: bool,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The server's token file [default: $XDG_CONFIG_HOME/snapfs/serve.json]
    #[arg(long, value_name = "FILE", env = "SNAPFS_SERVE_CONFIG", global = true)]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.config {
            return Ok(p.clone());
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .context("no --config given and neither XDG_CONFIG_HOME nor HOME is set")?;
        Ok(base.join("snapfs/serve.json"))
    }
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Manage the tokens clients present
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(clap::Subcommand)]
enum TokenCmd {
    /// Add a token and print its secret (once: only its hash is stored)
    Add {
        name: String,
        /// read: list and fetch; append: also add objects; delete: also forget and prune; admin: everything
        #[arg(long, value_parser = ["read", "append", "delete", "admin"])]
        role: String,
        /// Only locks of this host may be written with the token
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Refuse the token after this: a duration from now (90d, 12h) or a time (2027-06-30)
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// List the tokens: name, role, host and expiry
    List,
    /// Remove a token; clients using it are refused from their next request
    Remove { name: String },
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let config = a.config.path()?;
    match a.token {
        Some(Sub::Token(cmd)) => token(&config, cmd, g.quiet),
        None => serve(g, a, config),
    }
}

fn token(config: &std::path::Path, cmd: TokenCmd, quiet: bool) -> Result<u8> {
    let mut file = TokenFile::load(config)?;
    match cmd {
        TokenCmd::Add { name, role, host, expires } => {
            let role = Role::parse(&role).expect("clap checked the role");
            let expires = expires.as_deref().map(expiry).transpose()?;
            let secret = file.add(&name, role, host.as_deref(), expires)?;
            if let Some(dir) = config.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            }
            file.save(config)?;
            if !quiet {
                errln!(
                    "added token {name} (role {}) to {}; its secret, shown only now:",
                    role.name(),
                    config.display()
                );
            }
            outln!("{}", secret.as_str());
        }
        TokenCmd::List => {
            for t in &file.tokens {
                let expires = t.expires.map(|e| timespec::local(e.saturating_mul(1_000_000_000)));
                outln!(
                    "{}\t{}\t{}\t{}",
                    t.name,
                    t.role.name(),
                    t.host.as_deref().unwrap_or("-"),
                    expires.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCmd::Remove { name } => {
            if !file.remove(&name) {
                bail!("no token named {name} in {}", config.display());
            }
            file.save(config)?;
            if !quiet {
                errln!("removed token {name}");
            }
        }
    }
    Ok(0)
}

fn serve(g: &Global, a: Args, config: PathBuf) -> Result<u8> {
    let location = super::repo_location(g)?;
    let backend = super::backend(g)?;
    if backend.list(snapfs::backend::Kind::Config)?.is_empty() {
        errln!("warning: no repository at {location} yet; an admin token can create one with `snapfs init`");
    }
    if TokenFile::load(&config)?.tokens.is_empty() {
        errln!("warning: {} holds no token yet: add one with `snapfs serve token add NAME --role R`", config.display());
    }
    let unlocked = if a.unlock {
        let password = super::password(g, false)?;
        // A wrong password fails now, not at the first API call.
        Repository::open_with(backend.clone(), password.as_bytes(), &Opening::new(LockMode::None, "serve"))?;
        Some(Unlocked { password: Zeroizing::new(password.as_bytes().to_vec()), cache: super::cache(g) })
    } else {
        None
    };
    let scheme = if a.tls_cert.is_some() { "https" } else { "http" };
    let opts = server::Options {
        listen: a.listen,
        tls: a.tls_cert.zip(a.tls_key),
        config,
        access_log: a.access_log,
        max_object: a.max_object << 20,
        unlocked,
    };
    let quiet = g.quiet;
    server::serve(backend, opts, |addr| {
        if !quiet {
            outln!("serving {location} on {scheme}://{addr}/");
        }
    })
    .with_context(|| format!("serve {location}"))?;
    Ok(0)
}

/// `--expires`: a duration from now or a point in time, as Unix seconds.
fn expiry(when: &str) -> Result<i64> {
    let at = match super::parse_duration(when) {
        Ok(d) => jiff::Timestamp::now().as_second().saturating_add(d.as_secs() as i64),
        Err(_) => timespec::parse_at(when)
            .with_context(|| format!("bad --expires {when:?}: give a duration (90d, 12h) or a time"))?
            .as_second(),
    };
    if at <= jiff::Timestamp::now().as_second() {
        bail!("--expires {when:?} is in the past");
    }
    Ok(at)
}
