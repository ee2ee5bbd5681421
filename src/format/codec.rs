//! Bounded little-endian encoding helpers shared by every on-disk codec.
//! Decoding never panics and never allocates more than the input could hold.

use crate::error::{Error, Result};

#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// Strings longer than a u16 cannot be represented; callers validate before encoding.
    pub fn str16(&mut self, v: &[u8]) -> &mut Self {
        let n = u16::try_from(v.len()).expect("str16 longer than 65535 bytes");
        self.u16(n).raw(v)
    }
    pub fn bytes32(&mut self, v: &[u8]) -> &mut Self {
        let n = u32::try_from(v.len()).expect("bytes32 longer than 4 GiB");
        self.u32(n).raw(v)
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Dec { buf, pos: 0, what }
    }
    pub fn err(&self, detail: impl Into<String>) -> Error {
        Error::corrupt(self.what, format!("{} at byte {}", detail.into(), self.pos))
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(format!("truncated: wanted {n} bytes")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    pub fn str16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    pub fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string16(&mut self) -> Result<String> {
        String::from_utf8(self.str16()?.to_vec()).map_err(|_| self.err("invalid UTF-8"))
    }
    /// A count of items that each take at least `min_item` bytes, checked against what is left
    /// so a hostile count cannot make us allocate.
    pub fn count(&mut self, n: usize, min_item: usize) -> Result<usize> {
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(self.err(format!("count {n} exceeds the data")));
        }
        Ok(n)
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn finish(self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err("trailing bytes"));
        }
        Ok(())
    }
}
