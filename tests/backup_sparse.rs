//! Backup of sparse files: holes are not read, yet the stored chunks are those a full read
//! gives (a dense copy of the file adds no data), and restore gives the same bytes.

mod common;
use common::*;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};

#[test]
fn holes_are_not_read_and_dedup_with_a_dense_copy() {
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let sparse = src.join("disk.img");
    let mut rng = Rng::new(11);
    let f = File::create(&sparse).unwrap();
    f.set_len(256 * MIB).unwrap();
    // A hole first, data in the middle, data touching the end.
    for off in [40 * MIB + 3, 41 * MIB, 200 * MIB + 77, 256 * MIB - 300 * KIB] {
        f.write_all_at(&rng.bytes(300 * KIB as usize), off).unwrap();
    }
    drop(f);
    let md = fs::metadata(&sparse).unwrap();
    assert!(md.blocks() * 512 < 8 * MIB, "the filesystem did not keep the file sparse");

    let v = s.backup_json([&src]);
    assert_eq!(num(&v, "total_bytes"), 256 * MIB);
    assert!(num(&v, "bytes_read") < 4 * MIB, "holes were read: {v}");

    // The same bytes, written densely elsewhere: every chunk is already stored.
    let dense_dir = base.join("dense");
    fs::create_dir_all(&dense_dir).unwrap();
    sh("cp", &[std::ffi::OsStr::new("--sparse=never"), sparse.as_os_str(), dense_dir.join("disk.img").as_os_str()]);
    let v = s.backup_json([&dense_dir]);
    assert_eq!(num(&v, "bytes_read"), 256 * MIB, "the dense copy was not read whole: {v}");
    assert_eq!(num(&v, "data_blobs_added"), 0, "the sparse read gave other chunks than a full read: {v}");

    let target = base.join("restored");
    s.restore(&format!("latest:{}", dense_dir.display()), &target, &[]);
    let out = run_cmd(std::process::Command::new("cmp").arg(&sparse).arg(target.join("disk.img")));
    assert!(out.status.success(), "{}", describe("cmp restored sparse file", &out));
}
