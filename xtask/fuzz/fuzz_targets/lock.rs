//! A file in locks/: anything that is not a whole lock must parse as none.
#![no_main]
use snapfs::repo::lock::LockInfo;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize).min(data.len().saturating_sub(1));
    let (name, text) = data.get(1..).unwrap_or_default().split_at(split.min(data.len().saturating_sub(1)));
    let name = String::from_utf8_lossy(name);
    let _ = LockInfo::parse(&name, &String::from_utf8_lossy(text));
});
