//! A snapshot file's plaintext.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = snapfs::format::snapshot::decode(data) {
        let again = snapfs::format::snapshot::decode(&snapfs::format::snapshot::encode(&s))
            .expect("re-encoded snapshot decodes");
        assert_eq!(again, s);
    }
});
