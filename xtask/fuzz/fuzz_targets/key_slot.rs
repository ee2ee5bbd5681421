//! A file in keys/: parsed and bounds-checked, never run through Argon2 (the bounds exist so
//! that a planted slot cannot make that cost anything; unwrapping is what they protect).
#![no_main]
use snapfs::crypto::keyfile::KeySlot;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = KeySlot::parse(data) {
        let _ = slot.kdf.check();
    }
});
