//! Reading and writing condemned-pack lists (format-spec §11): prune's record of packs it will
//! delete once no backup or mount that might still use them is running.

use crate::backend::{Backend, Kind};
use crate::crypto::{Keys, ObjType};
use crate::error::{Error, Result};
use crate::format::condemned::{self, Condemned};
use crate::id::Id;

/// Bound on one list: 2^20 packs (16 TiB of 16 MiB packs) is far beyond one prune.
const MAX_LIST: usize = 32 << 20;

/// A list with its object name.
#[derive(Clone, Debug)]
pub struct Named {
    pub name: String,
    pub list: Condemned,
}

/// The lists that open, oldest first, and the names of those that do not, with why.
pub type Lists = (Vec<Named>, Vec<(String, Error)>);

/// Every list that opens, and the names of those that do not (left alone, reported).
pub fn load_all(backend: &dyn Backend, keys: &Keys) -> Result<Lists> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (name, _) in backend.list(Kind::Condemned)? {
        let opened = backend
            .read(Kind::Condemned, &name)
            .and_then(|raw| keys.open(ObjType::Condemned, &Id::ZERO, &raw, MAX_LIST, &[]))
            .and_then(|plain| condemned::decode(&plain));
        match opened {
            Ok(list) => good.push(Named { name, list }),
            // Gone between listing and reading: a prune swept it.
            Err(e) if crate::backend::is_not_found(&e) => {}
            Err(e) => bad.push((name, e)),
        }
    }
    good.sort_by_key(|n| (n.list.time_ns, n.name.clone()));
    Ok((good, bad))
}

/// Writes a new list; returns its name.
pub fn write(backend: &dyn Backend, keys: &Keys, list: &Condemned) -> Result<String> {
    let sealed = keys.seal(ObjType::Condemned, &Id::ZERO, &condemned::encode(list), 3, &[])?;
    let mut raw = [0u8; 16];
    crate::crypto::random_bytes(&mut raw)?;
    let name = super::hex(&raw);
    backend.write(Kind::Condemned, &name, &sealed)?;
    Ok(name)
}
