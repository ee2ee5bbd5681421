//! The rest of what a restic user reaches for (issue 19): `snapshots --latest/--compact`,
//! `backup --compression` and `-v`, `cat` and `list`, progress that stays off a pipe, and
//! interrupted or damaged runs that clean up and say what they left.

mod common;
use common::*;
use std::fs;

#[test]
fn snapshots_latest_per_group_and_compact() {
    let (_tmp, base, s) = setup();
    let (a, b) = (base.join("a"), base.join("b"));
    make_files(&a, &[("f", b"a")]);
    make_files(&b, &[("f", b"b")]);
    for _ in 0..2 {
        s.backup([&a]);
        s.backup([&b]);
    }
    let text = s.ok(["snapshots", "--group-by", "paths", "--latest", "1"]);
    assert_eq!(text.lines().filter(|l| l.contains("/a") || l.contains("/b")).count(), 4, "{text}");
    assert!(text.contains("2 snapshots; times in the local zone ("), "the table names no zone:\n{text}");
    let json = s.snapshots(["--latest", "1"]);
    assert_eq!(json.len(), 1);

    let compact = s.ok(["snapshots", "--compact"]);
    let header = compact.lines().next().unwrap();
    assert!(header.starts_with("id") && !header.contains("paths") && !header.contains("size"), "{compact}");
    assert_eq!(compact.lines().filter(|l| is_hex(&l[..8.min(l.len())], 8)).count(), 4, "{compact}");
}
