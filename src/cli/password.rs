//! Where a repository's password comes from, in restic's order, and never an empty one.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::Global;

const NO_EMPTY: &str = "an empty password is not allowed";

/// Passwords taken from the environment, which is scrubbed of them: a command that opens the
/// repository twice (`forget --prune`) finds the variable gone the second time.
static FROM_ENV: std::sync::Mutex<Vec<(String, Zeroizing<String>)>> = std::sync::Mutex::new(Vec::new());

/// The password, in restic's order: an explicit `--password-command` or `--password-file` (or
/// their variables), then `SNAPFS_PASSWORD`, then a prompt on the terminal (twice when
/// creating a repository). An empty password is refused from every source: a broken
/// `pass show` must not create a repository anyone can open.
pub fn password(g: &Global, confirm: bool) -> Result<Zeroizing<String>> {
    let source = PasswordSource {
        command: g.password_command.as_deref(),
        file: g.password_file.as_deref(),
        env: "SNAPFS_PASSWORD",
        prompt: "repository password: ",
        options: "SNAPFS_PASSWORD, SNAPFS_PASSWORD_FILE, --password-file or --password-command",
    };
    read_password(&source, confirm)
}

/// Where one repository's password comes from (`copy` reads a second one: `--from-*`).
pub struct PasswordSource<'a> {
    pub command: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub env: &'a str,
    pub prompt: &'a str,
    /// The ways to give it, for the error when none was used.
    pub options: &'a str,
}

pub fn read_password(src: &PasswordSource, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(cmd) = src.command {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("run password command {cmd:?}"))?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            bail!("password command {cmd:?} failed with {}", out.status);
        }
        let text = std::str::from_utf8(&stdout).context("the password command printed non-UTF-8")?;
        let pw = text.trim_end_matches(['\n', '\r']);
        if pw.is_empty() {
            bail!("password command {cmd:?} printed no password; {NO_EMPTY}");
        }
        return Ok(Zeroizing::new(pw.to_string()));
    }
    if let Some(f) = src.file {
        let text =
            Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("read password file {}", f.display()))?);
        let first = text.split('\n').next().unwrap_or("");
        let pw = first.strip_suffix('\r').unwrap_or(first);
        if pw.is_empty() {
            bail!("the first line of password file {} is empty; {NO_EMPTY}", f.display());
        }
        return Ok(Zeroizing::new(pw.to_string()));
    }
    if let Some(p) = std::env::var_os(src.env) {
        let p = Zeroizing::new(p.into_string().map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", src.env))?);
        if p.is_empty() {
            bail!("{} is set but empty; {NO_EMPTY}", src.env);
        }
        // A long-running mount would otherwise show it in /proc/<pid>/environ for as long as it runs.
        snapfs::sys::scrub_env(src.env);
        FROM_ENV.lock().unwrap_or_else(|e| e.into_inner()).push((src.env.to_string(), p.clone()));
        return Ok(p);
    }
    if let Some((_, p)) = FROM_ENV.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(k, _)| k == src.env) {
        return Ok(p.clone());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password given: set {}", src.options);
    }
    let p = Zeroizing::new(rpassword::prompt_password(src.prompt).context("read password")?);
    if p.is_empty() {
        bail!("{NO_EMPTY}");
    }
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("repeat password: ").context("read password")?);
        if *again != *p {
            bail!("the passwords do not match");
        }
    }
    Ok(p)
}
