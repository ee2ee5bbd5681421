//! The local index cache file (a redb database the cache directory holds, which anything on
//! the machine may have altered): opening it and reading it must fail, not panic or hang.
#![no_main]
use std::sync::OnceLock;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("snapfs-fuzz-index-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let path = dir.join("index.redb");
    std::fs::write(&path, data).unwrap();
    for verify in [false, true] {
        if let Ok(index) = snapfs::index::Index::open(&path, verify) {
            let _ = index.packs();
            let _ = index.lookup(&snapfs::id::Id([0; 32]));
        }
        std::fs::write(&path, data).unwrap();
    }
});
