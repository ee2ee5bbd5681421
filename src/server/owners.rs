//! Which token wrote which lock: an `append` token may delete only its own locks (format-spec
//! §17.3). Kept in a file beside the token file as well as in memory, so that a server restart
//! does not leave a running backup unable to remove its lock (it would expire only after 30
//! minutes). A lost or damaged file costs just that: its locks belong to no token and expire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct LockOwners {
    path: PathBuf,
    map: Mutex<HashMap<String, String>>,
}

impl LockOwners {
    /// The owners recorded beside the token file `config` (`serve.json` → `serve.locks.json`),
    /// of the locks in `live` (those the repository holds now).
    pub fn beside(config: &Path, live: &[String]) -> LockOwners {
        let path = config.with_extension("locks.json");
        let mut map: HashMap<String, String> =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        map.retain(|lock, _| live.contains(lock));
        LockOwners { path, map: Mutex::new(map) }
    }

    pub fn owner(&self, lock: &str) -> Option<String> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(lock).cloned()
    }

    pub fn set(&self, lock: &str, token: &str) {
        self.change(|m| {
            m.insert(lock.to_string(), token.to_string());
        });
    }

    pub fn remove(&self, lock: &str) {
        self.change(|m| {
            m.remove(lock);
        });
    }

    /// Changes the map and rewrites the file whole (renamed into place, so a crash leaves the
    /// old file or the new one). Not synced: losing the last change only lets a lock expire.
    fn change(&self, f: impl FnOnce(&mut HashMap<String, String>)) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map);
        let tmp = self.path.with_extension("tmp");
        let text = serde_json::to_vec(&*map).expect("a map of strings serializes");
        if std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
