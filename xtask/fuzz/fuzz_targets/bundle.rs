//! An export bundle's parts: the fixed header, the snapshot ids, the length fields, the
//! manifest (after its decryption) and a blob record's header.
#![no_main]
use snapfs::format::bundle::{
    Header, MAX_MANIFEST, RECORD_HEADER_LEN, decode_len, decode_manifest, decode_record_header,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((mut header, count)) = Header::decode_fixed(data) {
        let _ = header.decode_ids(data, count);
    }
    if let Some(b) = data.get(..4) {
        let _ = decode_len(b, "manifest", MAX_MANIFEST);
    }
    let _ = decode_manifest(data);
    if let Some(h) = data.get(..RECORD_HEADER_LEN) {
        let _ = decode_record_header(h.try_into().unwrap());
    }
});
