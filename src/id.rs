//! 32-byte object ids and their hex form.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

// Ids are hash outputs: eight of their bytes are as good a hash as all 32, at a quarter of the work.
impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes")));
    }
}

/// Hashes an [`Id`] by taking its first eight bytes as they are. Only for maps keyed by blob
/// ids, which are keyed BLAKE3: nobody without the key can choose them to collide.
#[derive(Default)]
pub struct BlobIdHasher(u64);

impl Hasher for BlobIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not reached through `Id`; any other key still hashes, just not well.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type BlobIdMap<V> = HashMap<Id, V, BuildHasherDefault<BlobIdHasher>>;
pub type BlobIdSet = HashSet<Id, BuildHasherDefault<BlobIdHasher>>;

impl Id {
    pub const ZERO: Id = Id([0; 32]);

    pub fn hex(&self) -> String {
        let mut buf = [0u8; 64];
        self.hex_into(&mut buf).to_string()
    }

    /// The hex form in a caller's buffer: the read path names a pack per blob it reads, and
    /// an allocation each time showed in a restore of many small files.
    pub fn hex_into<'b>(&self, buf: &'b mut [u8; 64]) -> &'b str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        std::str::from_utf8(buf).expect("hex digits are ASCII")
    }

    pub fn short(&self) -> String {
        self.hex()[..8].to_string()
    }

    pub fn from_hex(s: &str) -> Result<Id> {
        let bad = || Error::Invalid(format!("not a 64-digit hex id: {s:?}"));
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
        }
        Ok(Id(out))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}
