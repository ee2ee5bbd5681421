//! An envelope (every sealed object): type, id and bytes from the input, opened with a fixed key.
//! Nothing forged without the key may open; a malformed envelope must fail, never panic.
#![no_main]
use std::sync::OnceLock;

use snapfs::crypto::{Keys, ObjType, envelope_epoch};
use snapfs::id::Id;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    let keys = KEYS.get_or_init(|| Keys::from_master([7; 32]));
    if data.len() < 33 {
        return;
    }
    let Some(ty) = ObjType::from_u8(data[0] % 8) else { return };
    let id = Id(data[1..33].try_into().unwrap());
    let envelope = &data[33..];
    let _ = envelope_epoch(envelope);
    let _ = keys.open(ty, &id, envelope, 1 << 20, &[]);
    let _ = keys.open_verified(ty, &id, envelope, 1 << 20);
});
