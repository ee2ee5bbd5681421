//! A prune's list of condemned packs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = snapfs::format::condemned::decode(data) {
        let again =
            snapfs::format::condemned::decode(&snapfs::format::condemned::encode(&c)).expect("re-encoded list decodes");
        assert_eq!(again, c);
    }
});
