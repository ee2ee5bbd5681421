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

/// The config file's layout. Version 2 adds a token's expiry; a file is written as version 1
/// while no token expires, so a server that predates expiry refuses a file whose tokens it
/// would otherwise keep accepting past their date.
const CONFIG_VERSION: u64 = 2;
/// Secret tokens start with this, so one found in a file or a log is recognisable.
const TOKEN_PREFIX: &str = "snapfs_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Only locks naming this host may be written with the token (see format-spec §17.3).
    pub host: Option<String>,
    /// Refused from this time on (Unix seconds).
    pub expires: Option<i64>,
    hash: blake3::Hash,
}

/// What a presented secret is.
#[derive(Debug)]
pub enum Auth {
    Valid(TokenEntry),
    Unknown,
    /// The token's name and when it expired.
    Expired(String, i64),
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
        if !matches!(v["version"].as_u64(), Some(1..=CONFIG_VERSION)) {
            return Err(bad(format!("unknown version {} (this snapfs knows {CONFIG_VERSION})", v["version"])));
        }
        let mut tokens = Vec::new();
        for t in v["tokens"].as_array().ok_or_else(|| bad("no `tokens` array".into()))? {
            let field = |k: &str| t[k].as_str().ok_or_else(|| bad(format!("a token without `{k}`")));
            let name = field("name")?.to_string();
            let role = Role::parse(field("role")?).ok_or_else(|| bad(format!("token {name}: unknown role")))?;
            let hash = blake3::Hash::from_hex(field("hash")?).map_err(|_| bad(format!("token {name}: bad hash")))?;
            let host = t["host"].as_str().map(str::to_string);
            let expires = match &t["expires"] {
                Value::Null => None,
                e => Some(e.as_i64().ok_or_else(|| bad(format!("token {name}: `expires` is not a number")))?),
            };
            tokens.push(TokenEntry { name, role, host, expires, hash });
        }
        Ok(TokenFile { tokens })
    }

    pub fn save(&self, path: &Path) -> Result<(), ServerError> {
        let tokens: Vec<Value> = self
            .tokens
            .iter()
            .map(|t| {
                let mut v =
                    json!({"name": t.name, "role": t.role.name(), "host": t.host, "hash": t.hash.to_hex().as_str()});
                if let Some(e) = t.expires {
                    v["expires"] = json!(e);
                }
                v
            })
            .collect();
        let version = if self.tokens.iter().any(|t| t.expires.is_some()) { CONFIG_VERSION } else { 1 };
        let text = serde_json::to_string_pretty(&json!({"version": version, "tokens": tokens}))
            .expect("JSON values serialize");
        let err = |e: std::io::Error| ServerError::Config { path: path.to_path_buf(), why: e.to_string() };
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::options().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).and_then(|()| f.write_all(b"\n")).and_then(|()| f.sync_all()).map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    }

    /// Adds a token, valid until `expires` (Unix seconds) when given, and returns its secret,
    /// which is stored nowhere.
    pub fn add(
        &mut self,
        name: &str,
        role: Role,
        host: Option<&str>,
        expires: Option<i64>,
    ) -> Result<Zeroizing<String>, ServerError> {
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
        self.tokens.push(TokenEntry { name: name.to_string(), role, host, expires, hash: hash_of(&secret) });
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

    pub fn authenticate(&self, secret: &str) -> Auth {
        let now = mtime(&self.path);
        if self.state.read().unwrap_or_else(|e| e.into_inner()).0 != now {
            // A file being rewritten is renamed into place whole; a bad one keeps the old tokens.
            if let Ok(file) = TokenFile::load(&self.path) {
                *self.state.write().unwrap_or_else(|e| e.into_inner()) = (now, file);
            }
        }
        let Some(t) = self.state.read().unwrap_or_else(|e| e.into_inner()).1.find(secret).cloned() else {
            return Auth::Unknown;
        };
        match t.expires {
            Some(e) if jiff::Timestamp::now().as_second() >= e => Auth::Expired(t.name, e),
            _ => Auth::Valid(t),
        }
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
        let secret = f.add("laptop", Role::Append, Some("laptop"), None).unwrap();
        assert!(f.add("laptop", Role::Read, None, None).is_err(), "names are unique");
        assert!(f.add("bad name", Role::Read, None, None).is_err());
        f.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(secret.as_str()) && !text.contains(&secret[TOKEN_PREFIX.len()..]), "{text}");
        let tokens = Tokens::open(&path).unwrap();
        let Auth::Valid(t) = tokens.authenticate(&secret) else { panic!("the token is valid") };
        assert_eq!((t.name.as_str(), t.role, t.host.as_deref()), ("laptop", Role::Append, Some("laptop")));
        assert!(matches!(tokens.authenticate("snapfs_00"), Auth::Unknown));
        let mut f = TokenFile::load(&path).unwrap();
        assert!(f.remove("laptop") && !f.remove("laptop"));
    }

    #[test]
    fn an_expired_token_is_refused_and_only_expiring_files_need_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.json");
        let mut f = TokenFile::default();
        let now = jiff::Timestamp::now().as_second();
        let old = f.add("old", Role::Read, None, Some(now - 1)).unwrap();
        let new = f.add("new", Role::Read, None, Some(now + 3600)).unwrap();
        f.save(&path).unwrap();
        let v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 2);
        let tokens = Tokens::open(&path).unwrap();
        assert!(matches!(tokens.authenticate(&old), Auth::Expired(n, e) if n == "old" && e == now - 1));
        assert!(matches!(tokens.authenticate(&new), Auth::Valid(t) if t.expires == Some(now + 3600)));
        let mut f = TokenFile::load(&path).unwrap();
        f.tokens.iter_mut().for_each(|t| t.expires = None);
        f.save(&path).unwrap();
        let v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1, "a file without expiry stays readable by older servers");
    }
}
