//! Key slots and key epochs of an open repository (format-spec §4, §2): several passwords,
//! password changes, and new data-key epochs. Re-sealing old data under a new epoch is
//! [`crate::rekey`]'s job.

use super::{Repository, epoch_name, hex, now_ns};
use crate::backend::{self, Kind};
use crate::crypto::keyfile::{self, KdfParams, KeySlot};
use crate::crypto::{EpochKey, random_bytes};
use crate::error::{Error, Result};

/// What `key list` shows of a slot: everything but the wrapped key.
#[derive(Clone, Debug)]
pub struct SlotInfo {
    pub id: String,
    /// The slot this handle's password opened.
    pub current: bool,
    pub created_ns: i64,
    pub hostname: String,
    pub username: String,
    pub kdf: Option<KdfParams>,
    /// Why the slot cannot be read, when it cannot.
    pub damaged: Option<String>,
}

/// Who a new slot says it belongs to.
#[derive(Clone, Debug)]
pub struct SlotOwner {
    pub hostname: String,
    pub username: String,
}

impl SlotOwner {
    /// This host and user.
    pub fn here() -> SlotOwner {
        SlotOwner { hostname: crate::sys::hostname(), username: crate::sys::user_name(crate::sys::uid()) }
    }
}

/// An epoch as `key list` shows it.
#[derive(Clone, Debug)]
pub struct EpochInfo {
    pub number: u32,
    pub created_ns: Option<i64>,
    /// New objects are sealed under it.
    pub current: bool,
}

impl<S> Repository<S> {
    /// Every key slot, by id; damaged ones are listed with why.
    pub fn key_slots(&self) -> Result<Vec<SlotInfo>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(Kind::Key)? {
            let current = name == self.key_slot;
            match self.backend.read(Kind::Key, &name).and_then(|raw| KeySlot::parse(&raw)) {
                Ok(s) => out.push(SlotInfo {
                    id: name,
                    current,
                    created_ns: s.created_ns,
                    hostname: s.hostname,
                    username: s.username,
                    kdf: Some(s.kdf),
                    damaged: None,
                }),
                Err(e) if backend::is_not_found(&e) => {}
                Err(e) => out.push(SlotInfo {
                    id: name,
                    current,
                    created_ns: 0,
                    hostname: String::new(),
                    username: String::new(),
                    kdf: None,
                    damaged: Some(e.to_string()),
                }),
            }
        }
        out.sort_by(|a, b| (a.created_ns, &a.id).cmp(&(b.created_ns, &b.id)));
        Ok(out)
    }

    /// Adds a slot that opens the repository with `password`; returns its id. The floor on
    /// the KDF parameters is enforced by [`keyfile::wrap`].
    pub fn add_key(&self, password: &[u8], kdf: KdfParams, owner: &SlotOwner) -> Result<String> {
        if password.is_empty() {
            return Err(Error::Invalid("an empty password is not allowed".into()));
        }
        let slot = keyfile::wrap(&self.keys, password, kdf, now_ns(), &owner.hostname, &owner.username)?;
        let mut name = [0u8; 8];
        random_bytes(&mut name)?;
        let name = hex(&name);
        self.backend.write(Kind::Key, &name, &slot)?;
        Ok(name)
    }

    /// The one slot whose id starts with `prefix`.
    pub fn find_key(&self, prefix: &str) -> Result<String> {
        let names: Vec<String> = self
            .backend
            .list(Kind::Key)?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !prefix.is_empty() && n.starts_with(prefix))
            .collect();
        match names.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Invalid(format!("no key slot {prefix:?}; `snapfs key list` shows them"))),
            _ => Err(Error::Invalid(format!("key slot prefix {prefix:?} is ambiguous: {}", names.join(", ")))),
        }
    }

    /// Removes a slot: never the last one, and the one in use only with `force`.
    pub fn remove_key(&self, prefix: &str, force: bool) -> Result<String> {
        let name = self.find_key(prefix)?;
        let others = self.backend.list(Kind::Key)?.into_iter().filter(|(n, _)| *n != name).count();
        if others == 0 {
            return Err(Error::Invalid(format!(
                "key slot {name} is the last one; removing it would make the repository unreadable"
            )));
        }
        if name == self.key_slot && !force {
            return Err(Error::Invalid(format!(
                "key slot {name} is the one this password opened; use --force to remove it anyway"
            )));
        }
        self.backend.delete(Kind::Key, &name)?;
        Ok(name)
    }

    /// Replaces the slot in use by one for `new_password`: the new slot is durable before the
    /// old one goes, so a crash between leaves both, never neither. Returns (new, removed).
    pub fn change_password(&self, new_password: &[u8], kdf: KdfParams, owner: &SlotOwner) -> Result<(String, String)> {
        let new = self.add_key(new_password, kdf, owner)?;
        self.backend.delete(Kind::Key, &self.key_slot)?;
        Ok((new, self.key_slot.clone()))
    }

    /// The epochs this handle holds, and which one it seals under.
    pub fn key_epochs(&self) -> Result<Vec<EpochInfo>> {
        let current = self.keys.current_epoch();
        let mut out = Vec::new();
        for n in self.keys.epochs() {
            let created = self
                .backend
                .read(Kind::Epoch, &epoch_name(n))
                .and_then(|raw| self.keys.open_epoch(n, &self.repo_id, &raw))
                .ok()
                .map(|(_, t)| t);
            out.push(EpochInfo { number: n, created_ns: created, current: Some(n) == current });
        }
        Ok(out)
    }

    /// When an epoch was made, from its object.
    pub fn epoch_created(&self, n: u32) -> Result<i64> {
        let raw = self.backend.read(Kind::Epoch, &epoch_name(n))?;
        Ok(self.keys.open_epoch(n, &self.repo_id, &raw)?.1)
    }

    /// Makes a new data-key epoch, one above every epoch object there is (damaged ones too),
    /// and seals under it from now on. Returns its number.
    pub fn rotate_epoch(&self) -> Result<u32> {
        let highest = self
            .backend
            .list(Kind::Epoch)?
            .into_iter()
            .filter_map(|(n, _)| u32::from_str_radix(&n, 16).ok())
            .chain(self.keys.epochs())
            .max();
        let n = match highest {
            Some(h) => h.checked_add(1).ok_or_else(|| Error::Invalid("no key epoch number is left".into()))?,
            None => 0,
        };
        let key = EpochKey::random()?;
        self.keys.learn_epoch(n, key.clone());
        // Written before this handle seals anything under it: an object must never name an
        // epoch whose key is not durable.
        self.backend.write(Kind::Epoch, &epoch_name(n), &self.keys.seal_epoch(n, &self.repo_id, now_ns())?)?;
        self.keys.add_epoch(n, key);
        Ok(n)
    }

    /// Deletes an epoch's key object: everything still sealed under it becomes unreadable,
    /// which is the point once [`crate::rekey`] has re-sealed it all. Never the current one.
    pub(crate) fn destroy_epoch(&self, n: u32) -> Result<()> {
        if self.keys.current_epoch() == Some(n) {
            return Err(Error::Invalid(format!("key epoch {n} is the current one")));
        }
        self.backend.delete(Kind::Epoch, &epoch_name(n))
    }
}
