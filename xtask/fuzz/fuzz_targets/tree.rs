//! A tree blob's plaintext: a listing must decode or fail, never panic or allocate what it claims.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(nodes) = snapfs::format::tree::decode(data) {
        // What decodes must encode back to a listing that decodes the same.
        let again =
            snapfs::format::tree::decode(&snapfs::format::tree::encode(&nodes)).expect("re-encoded tree decodes");
        assert_eq!(again, nodes);
    }
});
