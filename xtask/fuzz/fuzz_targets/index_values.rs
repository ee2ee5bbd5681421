//! The index cache's stored values (a blob's location, a pack's record).
#![no_main]
use snapfs::id::Id;
use snapfs::index::{PackInfo, decode_blob};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(v) = data.get(..17) {
        let v: &[u8; 17] = v.try_into().unwrap();
        let _ = decode_blob(v, |no| Ok(Id([no as u8; 32])));
    }
    if let Some(v) = data.get(..24) {
        let _ = PackInfo::decode(v.try_into().unwrap());
    }
});
