//! A condemned-pack list (format-spec §11): the packs one prune run found unneeded, and when.

use super::codec::{Dec, Enc};
use crate::error::Result;
use crate::id::Id;

const VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condemned {
    /// When prune condemned them, ns since the Unix epoch.
    pub time_ns: i64,
    pub packs: Vec<Id>,
}

pub fn encode(c: &Condemned) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(VERSION).i64(c.time_ns).u32(c.packs.len() as u32);
    for p in &c.packs {
        e.raw(&p.0);
    }
    e.0
}

pub fn decode(buf: &[u8]) -> Result<Condemned> {
    let mut d = Dec::new(buf, "condemned-pack list");
    if d.u8()? != VERSION {
        return Err(d.err("unknown version"));
    }
    let time_ns = d.i64()?;
    let n = d.u32()? as usize;
    let n = d.count(n, 32)?;
    let mut packs = Vec::with_capacity(n);
    for _ in 0..n {
        packs.push(Id(d.arr()?));
    }
    d.finish()?;
    Ok(Condemned { time_ns, packs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let c = Condemned { time_ns: -5, packs: vec![Id([1; 32]), Id([2; 32])] };
        let b = encode(&c);
        assert_eq!(b.len(), 1 + 8 + 4 + 64);
        assert_eq!(decode(&b).unwrap(), c);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err());
        }
        let mut huge = b[..9].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
