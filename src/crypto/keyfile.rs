//! Key slots: the master key wrapped under an Argon2id password key (format-spec §4).

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use zeroize::Zeroizing;

use super::{Keys, open_raw, random_bytes, seal_raw};
use crate::error::{Error, Result};
use crate::format::codec::{Dec, Enc};

pub const MAGIC: &[u8; 8] = b"SNAPKEY\x01";

/// Argon2id cost parameters, stored in every slot so they can be raised later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const DEFAULT: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 4 };

    /// The most memory a slot may ask for: 1 GiB, what a small machine can still afford.
    pub const MAX_M_KIB: u32 = 1 << 20;
    /// The most passes: 16 passes over 1 GiB take about a minute here, the worst a planted
    /// slot can cost (and only when the password did not open the hinted slot first).
    pub const MAX_T: u32 = 16;
    /// The most lanes.
    pub const MAX_P: u32 = 16;

    /// What a reader accepts (format-spec §4): what Argon2 itself accepts (m ≥ 8·p KiB, p ≥ 1,
    /// t ≥ 1) and what a machine can afford, checked before anything is allocated.
    pub fn check(&self) -> Result<()> {
        if let Some(why) = self.unacceptable() {
            return Err(Error::corrupt("key slot", format!("unacceptable Argon2 parameters ({why})")));
        }
        Ok(())
    }

    fn unacceptable(&self) -> Option<String> {
        let KdfParams { m_kib, t, p } = *self;
        if !(1..=Self::MAX_P).contains(&p) {
            return Some(format!("parallelism {p}, not 1 to {}", Self::MAX_P));
        }
        if !(1..=Self::MAX_T).contains(&t) {
            return Some(format!("{t} passes, not 1 to {}", Self::MAX_T));
        }
        if !(8 * p..=Self::MAX_M_KIB).contains(&m_kib) {
            return Some(format!("memory {m_kib} KiB, not {} to {} KiB", 8 * p, Self::MAX_M_KIB));
        }
        None
    }

    /// The floor for a new slot (format-spec §4): RFC 9106's second recommendation. Enforced
    /// here, in the library, so no caller can write a weaker slot.
    pub fn check_for_writing(&self) -> Result<()> {
        if self.m_kib < Self::DEFAULT.m_kib || self.t < Self::DEFAULT.t {
            return Err(Error::Invalid(format!(
                "Argon2 parameters m={} KiB, t={} are below the floor of m={} KiB, t={}",
                self.m_kib,
                self.t,
                Self::DEFAULT.m_kib,
                Self::DEFAULT.t
            )));
        }
        match self.unacceptable() {
            Some(why) => Err(Error::Invalid(format!("Argon2 parameters out of range: {why}"))),
            None => Ok(()),
        }
    }
}

/// What a slot says about itself, readable without the password.
#[derive(Clone, Debug)]
pub struct KeySlot {
    pub kdf: KdfParams,
    pub salt: [u8; 32],
    pub created_ns: i64,
    pub hostname: String,
    pub username: String,
    nonce_and_ct: Vec<u8>,
    header_len: usize,
    raw: Vec<u8>,
}

fn kek(password: &[u8], salt: &[u8; 32], kdf: KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    kdf.check()?;
    let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|e| Error::Invalid(format!("Argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(password, salt, out.as_mut()).map_err(|e| Error::Invalid(format!("Argon2: {e}")))?;
    Ok(out)
}

/// Wraps the master key of `keys` under `password`, returning the slot file's bytes.
pub fn wrap(
    keys: &Keys,
    password: &[u8],
    kdf: KdfParams,
    created_ns: i64,
    hostname: &str,
    username: &str,
) -> Result<Vec<u8>> {
    kdf.check_for_writing()?;
    let mut salt = [0u8; 32];
    random_bytes(&mut salt)?;
    let mut e = Enc::default();
    e.raw(MAGIC).u32(kdf.m_kib).u32(kdf.t).u32(kdf.p).raw(&salt).i64(created_ns);
    e.str16(&hostname.as_bytes()[..hostname.len().min(1024)]);
    e.str16(&username.as_bytes()[..username.len().min(1024)]);
    let k = kek(password, &salt, kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*k).into());
    let sealed = seal_raw(&cipher, &e.0, keys.master())?;
    e.raw(&sealed);
    Ok(e.0)
}

impl KeySlot {
    pub fn parse(raw: &[u8]) -> Result<KeySlot> {
        let mut d = Dec::new(raw, "key slot");
        if d.take(8)? != MAGIC {
            return Err(d.err("bad magic"));
        }
        let kdf = KdfParams { m_kib: d.u32()?, t: d.u32()?, p: d.u32()? };
        kdf.check()?;
        let salt = d.arr::<32>()?;
        let created_ns = d.i64()?;
        let hostname = String::from_utf8_lossy(d.str16()?).into_owned();
        let username = String::from_utf8_lossy(d.str16()?).into_owned();
        let header_len = raw.len() - d.remaining();
        let nonce_and_ct = d.take(24 + 32 + 16)?.to_vec();
        d.finish()?;
        Ok(KeySlot { kdf, salt, created_ns, hostname, username, nonce_and_ct, header_len, raw: raw.to_vec() })
    }

    /// Derives the password key and unwraps the master key; `None` means a wrong password.
    pub fn unwrap(&self, password: &[u8]) -> Result<Option<Keys>> {
        let k = kek(password, &self.salt, self.kdf)?;
        let cipher = XChaCha20Poly1305::new(&(*k).into());
        let Some(master) = open_raw(&cipher, &self.raw[..self.header_len], &self.nonce_and_ct) else {
            return Ok(None);
        };
        let master = Zeroizing::new(master);
        let m: [u8; 32] =
            master.as_slice().try_into().map_err(|_| Error::corrupt("key slot", "bad master key length"))?;
        Ok(Some(Keys::from_master(m)))
    }
}
