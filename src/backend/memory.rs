//! A repository in memory, for tests that need no kernel and for the fault wrapper's
//! durable image.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::{Arc, RwLock};

use super::{Backend, Kind, object_name};
use crate::error::{Error, Result};

type Objects = BTreeMap<(Kind, String), Arc<Vec<u8>>>;

#[derive(Default, Clone)]
pub struct MemoryBackend {
    objects: Arc<RwLock<Objects>>,
}

fn err(kind: ErrorKind, what: String) -> Error {
    Error::io(what, std::io::Error::from(kind))
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// A copy that shares nothing with this one: a snapshot of the store at this moment.
    pub fn deep_copy(&self) -> MemoryBackend {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner()).clone();
        MemoryBackend { objects: Arc::new(RwLock::new(objects)) }
    }

    /// Replaces an object's bytes in place, for tests that damage a repository.
    pub fn tamper(&self, kind: Kind, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = objects.get_mut(&(kind, name.to_string())) {
            f(Arc::make_mut(v));
        }
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Arc<Vec<u8>>> {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        objects.get(&(kind, name.to_string())).cloned().ok_or_else(|| err(ErrorKind::NotFound, object_name(kind, name)))
    }
}

impl Backend for MemoryBackend {
    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        let key = (kind, name.to_string());
        if objects.contains_key(&key) {
            return Err(err(ErrorKind::AlreadyExists, format!("write {}", object_name(kind, name))));
        }
        objects.insert(key, Arc::new(data.to_vec()));
        Ok(())
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(kind, name)?.to_vec())
    }

    fn read_at(&self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let v = self.get(kind, name)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()).and_then(|end| v.get(start..end)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(err(ErrorKind::UnexpectedEof, format!("read past the end of {}", object_name(kind, name)))),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        Ok(objects.iter().filter(|((k, _), _)| *k == kind).map(|((_, n), v)| (n.clone(), v.len() as u64)).collect())
    }

    fn replace(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        match objects.get_mut(&(kind, name.to_string())) {
            Some(v) => {
                *v = Arc::new(data.to_vec());
                Ok(())
            }
            None => Err(err(ErrorKind::NotFound, format!("replace {}", object_name(kind, name)))),
        }
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        self.objects.write().unwrap_or_else(|e| e.into_inner()).remove(&(kind, name.to_string()));
        Ok(())
    }

    fn location(&self) -> String {
        "memory".into()
    }
}
