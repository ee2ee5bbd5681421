//! The repository config header and sealed parameters (format-spec §3).

use super::codec::{Dec, Enc};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"SNAPFS\x00\x01";
pub const VERSION: u32 = 2;
pub const HEADER_LEN: usize = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub pack_size: u32,
    pub zstd_level: u8,
}

impl Params {
    pub const DEFAULT: Params =
        Params { chunk_min: 512 << 10, chunk_avg: 1 << 20, chunk_max: 8 << 20, pack_size: 16 << 20, zstd_level: 3 };

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u32(self.chunk_min).u32(self.chunk_avg).u32(self.chunk_max).u32(self.pack_size).u8(self.zstd_level);
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<Params> {
        let mut d = Dec::new(buf, "config");
        let p = Params {
            chunk_min: d.u32()?,
            chunk_avg: d.u32()?,
            chunk_max: d.u32()?,
            pack_size: d.u32()?,
            zstd_level: d.u8()?,
        };
        d.finish()?;
        use fastcdc::v2020 as f;
        let in_range = |v: u32, lo: usize, hi: usize| (lo..=hi).contains(&(v as usize)) && v.is_multiple_of(2);
        let ok = in_range(p.chunk_min, f::MINIMUM_MIN, f::MINIMUM_MAX)
            && in_range(p.chunk_avg, f::AVERAGE_MIN, f::AVERAGE_MAX)
            && in_range(p.chunk_max, f::MAXIMUM_MIN, f::MAXIMUM_MAX)
            && p.chunk_min <= p.chunk_avg
            && p.chunk_avg <= p.chunk_max
            && (1..=22).contains(&p.zstd_level)
            && p.pack_size >= 1 << 20;
        if !ok {
            return Err(Error::corrupt("config", format!("parameters out of range: {p:?}")));
        }
        Ok(p)
    }
}

/// Length of the sealed configuration's plaintext with only the parameters.
pub const PARAMS_LEN: usize = 17;

/// Splits the sealed configuration's plaintext into the parameters and, for a repository
/// made to share another's content identity (`init --copy-chunker-params`), the 128 bytes of
/// identity keys that follow them (format-spec §3).
pub fn split(plain: &[u8]) -> Result<(&[u8], Option<&[u8]>)> {
    match plain.len() {
        PARAMS_LEN => Ok((plain, None)),
        n if n == PARAMS_LEN + 128 => Ok((&plain[..PARAMS_LEN], Some(&plain[PARAMS_LEN..]))),
        n => Err(Error::corrupt("config", format!("sealed configuration of {n} bytes (17 or 145 expected)"))),
    }
}

/// The 28 plaintext bytes that start `config` and are bound into the sealed part's AAD.
pub fn encode_header(repo_id: &[u8; 16]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..].copy_from_slice(repo_id);
    h
}

/// Parses the header; the version is checked by the caller so it can report it.
pub fn decode_header(buf: &[u8]) -> Result<(u32, [u8; 16])> {
    let mut d = Dec::new(buf, "config");
    if d.take(8)? != MAGIC {
        return Err(d.err("not a snapfs config (bad magic)"));
    }
    Ok((d.u32()?, d.arr()?))
}
