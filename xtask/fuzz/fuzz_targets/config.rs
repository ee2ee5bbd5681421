//! The config file: its plaintext header, and the sealed parameters (split, then decoded).
#![no_main]
use snapfs::format::config::{Params, decode_header, split};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = decode_header(data);
    let _ = Params::decode(data);
    if let Ok((params, _keys)) = split(data) {
        let _ = Params::decode(params);
    }
});
