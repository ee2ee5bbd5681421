//! Command-line conventions: what a restic user expects of snapfs.

mod common;
use common::*;
use std::fs;

#[test]
fn an_os_error_is_printed_once() {
    let tmp = tempdir();
    let file = canonical(tmp.path()).join("a-file");
    fs::write(&file, b"").unwrap();
    // Reading `a-file/config` fails with ENOTDIR, an I/O error of the library under anyhow's context.
    let out = Snapfs::new(&file).run(["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("snapshots of a file", &out));
    let line = assert_error_line(&out);
    assert_eq!(line.matches("os error").count(), 1, "{line}");

    let out = Snapfs::new(&file).run(["init"]);
    let line = assert_error_line(&out);
    assert!(line.contains("is not a directory") && !line.contains("os error"), "{line}");
}
