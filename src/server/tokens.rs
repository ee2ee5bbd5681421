//! The server's config file: its tokens, each with a name, a role, an optional host, and only
//! the BLAKE3 hash of the secret (format-spec §17.2). A token is 256 random bits, so a plain
//! hash is as hard to invert as the token is to guess; no password hashing is needed.
//!
//! The file is JSON, written whole to a temporary file and renamed over (mode 0600).

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::ServerError;
use super::roles::Role;

/// The only layout of the config file so far.
const CONFIG_VERSION: u64 = 1;
/// Secret tokens start with this, so one found in a file or a log is recognisable.
const TOKEN_PREFIX: &str = "snapfs_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Only locks naming this host may be written with the token (see format-spec §17.3).
    pub host: Option<String>,
    hash: blake3::Hash,
}

#[derive(Default)]
pub struct TokenFile {
    pub tokens: Vec<TokenEntry>,
}

fn hash_of(secret: &str) -> blake3::Hash {
    blake3::hash(secret.trim().as_bytes())
}

impl TokenFile {
    /// The tokens in `path`; a missing file has none.
    pub fn load(path: &Path) -> Result<TokenFile, ServerError> {
        let bad = |why: String| ServerError::Config { path: path.to_path_buf(), why };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(TokenFile::default()),
            Err(e) => return Err(bad(e.to_string())),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if v["version"].as_u64() != Some(CONFIG_VERSION) {
            return Err(bad(format!("unknown version {} (this snapfs knows {CONFIG_VERSION})", v["version"])));
        }
        let mut tokens = Vec::new();
        for t in v["tokens"].as_array().ok_or_else(|| bad("no `tokens` array".into()))? {
            let field = |k: &str| t[k].as_str().ok_or_else(|| bad(format!("a token without `{k}`")));
            let name = field("name")?.to_string();
            let role = Role::parse(field("role")?).ok_or_else(|| bad(format!("token {name}: unknown role")))?;
            let hash = blake3::Hash::from_hex(field("hash")?).map_err(|_| bad(format!("token {name}: bad hash")))?;
            let host = t["host"].as_str().map(str::to_string);
            tokens.push(TokenEntry { name, role, host, hash });
        }
        Ok(TokenFile { tokens })
    }

    pub fn save(&self, path: &Path) -> Result<(), ServerError> {
        let tokens: Vec<Value> = self
            .tokens
            .iter()
            .map(|t| json!({"name": t.name, "role": t.role.name(), "host": t.host, "hash": t.hash.to_hex().as_str()}))
            .collect();
        let text = serde_json::to_string_pretty(&json!({"version": CONFIG_VERSION, "tokens": tokens}))
            .expect("JSON values serialize");
        let err = |e: std::io::Error| ServerError::Config { path: path.to_path_buf(), why: e.to_string() };
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::options().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).and_then(|()| f.write_all(b"\n")).and_then(|()| f.sync_all()).map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    }

    /// Adds a token and returns its secret, which is stored nowhere.
    pub fn add(&mut self, name: &str, role: Role, host: Option<&str>) -> Result<Zeroizing<String>, ServerError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(ServerError::Usage(format!("token name {name:?}: use letters, digits and ._-@ only")));
        }
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(ServerError::Usage(format!("a token named {name} exists; remove it first")));
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        crate::crypto::random_bytes(&mut raw[..]).map_err(|e| ServerError::Usage(e.to_string()))?;
        let mut secret = Zeroizing::new(String::from(TOKEN_PREFIX));
        for b in raw.iter() {
            secret.push_str(&format!("{b:02x}"));
        }
        let host = host.map(str::to_string);
        self.tokens.push(TokenEntry { name: name.to_string(), role, host, hash: hash_of(&secret) });
        Ok(secret)
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.name != name);
        self.tokens.len() != before
    }

    /// The token a secret is; `blake3::Hash` compares in constant time.
    pub fn find(&self, secret: &str) -> Option<&TokenEntry> {
        let h = hash_of(secret);
        self.tokens.iter().find(|t| t.hash == h)
    }
}

/// The config file as the server sees it: re-read when it changes on disk, so `token add`
/// and `token remove` take effect without a restart.
pub struct Tokens {
    path: PathBuf,
    state: RwLock<(Option<SystemTime>, TokenFile)>,
}

impl Tokens {
    pub fn open(path: &Path) -> Result<Tokens, ServerError> {
        let file = TokenFile::load(path)?;
        Ok(Tokens { path: path.to_path_buf(), state: RwLock::new((mtime(path), file)) })
    }

    pub fn authenticate(&self, secret: &str) -> Option<TokenEntry> {
        let now = mtime(&self.path);
        if self.state.read().unwrap_or_else(|e| e.into_inner()).0 != now {
            // A file being rewritten is renamed into place whole; a bad one keeps the old tokens.
            if let Ok(file) = TokenFile::load(&self.path) {
                *self.state.write().unwrap_or_else(|e| e.into_inner()) = (now, file);
            }
        }
        self.state.read().unwrap_or_else(|e| e.into_inner()).1.find(secret).cloned()
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_as_hashes_and_found_by_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.json");
        let mut f = TokenFile::default();
        let secret = f.add("laptop", Role::Append, Some("laptop")).unwrap();
        assert!(f.add("laptop", Role::Read, None).is_err(), "names are unique");
        assert!(f.add("bad name", Role::Read, None).is_err());
        f.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(secret.as_str()) && !text.contains(&secret[TOKEN_PREFIX.len()..]), "{text}");
        let tokens = Tokens::open(&path).unwrap();
        let t = tokens.authenticate(&secret).unwrap();
        assert_eq!((t.name.as_str(), t.role, t.host.as_deref()), ("laptop", Role::Append, Some("laptop")));
        assert!(tokens.authenticate("snapfs_00").is_none());
        let mut f = TokenFile::load(&path).unwrap();
        assert!(f.remove("laptop") && !f.remove("laptop"));
    }
}
