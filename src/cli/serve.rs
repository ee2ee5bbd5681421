//! `snapfs serve`: the repository server (format-spec §17), and `snapfs serve token …` to
//! manage its tokens. The server runs in the foreground until killed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::Global;
use snapfs::server::{self, Role, TokenFile};

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
    },
    /// List the tokens: name, role and host
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
        TokenCmd::Add { name, role, host } => {
            let role = Role::parse(&role).expect("clap checked the role");
            let secret = file.add(&name, role, host.as_deref())?;
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
                outln!("{}\t{}\t{}", t.name, t.role.name(), t.host.as_deref().unwrap_or("-"));
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
    let scheme = if a.tls_cert.is_some() { "https" } else { "http" };
    let opts = server::Options {
        listen: a.listen,
        tls: a.tls_cert.zip(a.tls_key),
        config,
        access_log: a.access_log,
        max_object: a.max_object << 20,
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
