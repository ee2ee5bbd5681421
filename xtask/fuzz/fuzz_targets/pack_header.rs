//! A pack's trailer and header: lengths and counts are claims, checked before allocation.
#![no_main]
use snapfs::format::pack::{TRAILER_LEN, decode_header, decode_trailer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let pack_len = u64::from_le_bytes(data[..8].try_into().unwrap());
    let rest = &data[8..];
    if rest.len() >= TRAILER_LEN {
        let _ = decode_trailer(&rest[rest.len() - TRAILER_LEN..], pack_len);
    }
    if let Ok(entries) = decode_header(rest, pack_len) {
        for e in entries {
            assert!(e.offset as u64 + e.length as u64 <= pack_len, "an entry beyond the blob area decoded");
        }
    }
});
