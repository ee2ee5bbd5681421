//! FastCDC with a secret gear table (format-spec §5), so chunk boundaries don't fingerprint files.

use fastcdc::v2020::{Normalization, cut_gear, select_masks};

use crate::format::config::Params;

pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64, u64, u64),
}

impl Chunker {
    /// The secret gear table (format-spec §5), for the test vectors.
    pub fn gear(&self) -> &[u64; 256] {
        &self.gear
    }

    pub fn new(key: &[u8; 32], p: &Params) -> Chunker {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(key).finalize_xof().fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, c) in bytes.chunks_exact(8).enumerate() {
            gear[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            gear_ls[i] = gear[i] << 1;
        }
        let (mask_s, mask_l) = select_masks(p.chunk_avg as usize, Normalization::Level1);
        Chunker {
            gear,
            gear_ls,
            min: p.chunk_min as usize,
            avg: p.chunk_avg as usize,
            max: p.chunk_max as usize,
            masks: (mask_s, mask_l, mask_s << 1, mask_l << 1),
        }
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the next chunk at the start of `buf`. With `eof == false` the caller must
    /// supply at least `max_size()` bytes so the cut does not depend on how the file was read.
    pub fn next_len(&self, buf: &[u8], eof: bool) -> usize {
        debug_assert!(eof || buf.len() >= self.max);
        let (ms, ml, msl, mll) = self.masks;
        let (_, n) = cut_gear(buf, self.min, self.avg, self.max, ms, ml, msl, mll, &self.gear[..], &self.gear_ls[..]);
        n.max(1).min(buf.len())
    }

    /// The length of every chunk that starts inside a run of zeros reaching at least
    /// `max_size()` bytes further: the cut depends only on the bytes from the chunk's start, so
    /// such chunks are all this long and all have one id. A sparse file's holes (read by
    /// backup without reading them, found by dump from the ids) rely on it.
    pub fn zero_run_len(&self) -> usize {
        self.next_len(&vec![0u8; self.max], false)
    }

    /// All chunk lengths of a complete buffer.
    pub fn split(&self, mut buf: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let n = self.next_len(buf, true);
            out.push(n);
            buf = &buf[n..];
        }
        out
    }
}
