//! Backup selection options with restic's names: `--files-from*`, `--exclude-caches`,
//! `--exclude-if-present`, `--exclude-larger-than`, `--iexclude`.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// The paths below `root` in the latest snapshot, relative to it (from `ls --json`, so names
/// may hold newlines).
fn stored(s: &Snapfs, root: &Path) -> BTreeSet<String> {
    let root = root.to_string_lossy().into_owned() + "/";
    s.ok(["ls", "--json", "latest"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["path"].as_str().and_then(|p| p.strip_prefix(&root)).map(String::from))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn backup(s: &Snapfs, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    s.backup(&args);
}

#[test]
fn excludes_by_tag_file_size_and_case() {
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    let sig = b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n";
    make_files(
        &src,
        &[
            ("cache/CACHEDIR.TAG", sig),
            ("cache/blob", b"x"),
            ("fake-cache/CACHEDIR.TAG", b"Signature: something else\n"),
            ("fake-cache/kept", b"x"),
            ("nobackup/.nobackup", b""),
            ("nobackup/x", b"x"),
            ("marked/.mark", b"SKIP me"),
            ("marked/y", b"y"),
            ("unmarked/.mark", b"keep me"),
            ("small", &[1u8; 1024]),
            ("large", &[1u8; 1025]),
            ("photo.JPG", b"j"),
            ("photo.jpg", b"j"),
            ("notes.txt", b"n"),
        ],
    );
    backup(
        &s,
        &[&"--exclude-caches", &"--exclude-if-present", &".nobackup", &"--exclude-if-present", &".mark:SKIP", &src],
    );
    let want = set(&[
        "fake-cache",
        "fake-cache/CACHEDIR.TAG",
        "fake-cache/kept",
        "unmarked",
        "unmarked/.mark",
        "small",
        "large",
        "photo.JPG",
        "photo.jpg",
        "notes.txt",
    ]);
    assert_eq!(stored(&s, &src), want);

    backup(&s, &[&"--exclude-larger-than", &"1k", &"--iexclude", &"*.jpg", &src]);
    let got = stored(&s, &src);
    assert!(got.contains("small") && !got.contains("large"), "{got:?}");
    assert!(!got.contains("photo.JPG") && !got.contains("photo.jpg") && got.contains("notes.txt"), "{got:?}");
    assert!(got.contains("cache/blob"), "{got:?}");

    let out = s.run(["backup", "--exclude-larger-than", "12x", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("bad size", &out));
    assert!(assert_error_line(&out).contains("12x"));
}

#[test]
fn paths_come_from_lists() {
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    make_files(
        &src,
        &[
            ("a/one.txt", b"1"),
            ("a/two.txt", b"2"),
            ("a/three.log", b"3"),
            ("b", b"b"),
            ("#hash", b"h"),
            (" pad", b"p"),
        ],
    );
    fs::write(src.join("new\nline"), b"nl").unwrap();
    let list = base.join("list");
    fs::write(&list, format!("# the text files\n\n  {}/a/*.txt  \n{}/b\n", src.display(), src.display())).unwrap();
    backup(&s, &[&"--files-from", &list]);
    assert_eq!(stored(&s, &src), set(&["a", "a/one.txt", "a/two.txt", "b"]));

    // Verbatim: no comments, no trimming, no globs.
    let verbatim = base.join("verbatim");
    fs::write(&verbatim, format!("{0}/#hash\n{0}/ pad\n", src.display())).unwrap();
    backup(&s, &[&"--files-from-verbatim", &verbatim]);
    assert_eq!(stored(&s, &src), set(&["#hash", " pad"]));

    // Raw: NUL-separated, so a name may hold a newline; combined with a path argument.
    let raw = base.join("raw");
    let mut bytes = src.join("new\nline").into_os_string().into_vec();
    bytes.push(0);
    fs::write(&raw, bytes).unwrap();
    backup(&s, &[&"--files-from-raw", &raw, &src.join("b")]);
    assert_eq!(stored(&s, &src), set(&["new\nline", "b"]));

    // A glob that matches nothing, and an empty list, are errors.
    fs::write(&list, format!("{}/nothing*\n", src.display())).unwrap();
    let out = s.run([OsString::from("backup"), "--files-from".into(), list.clone().into()]);
    assert!(!out.status.success() && assert_error_line(&out).contains("nothing*"), "{}", describe("no match", &out));
    fs::write(&list, "# nothing\n").unwrap();
    let out = s.run([OsString::from("backup"), "--files-from".into(), list.into()]);
    assert!(!out.status.success() && assert_error_line(&out).contains("no paths"), "{}", describe("empty", &out));
}

#[test]
fn git_ignore_files_apply_to_their_directory_and_below() {
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    make_files(
        &src,
        &[
            (".gitignore", b"# objects\n*.o\n/build/\n!keep.o\n"),
            ("a.o", b"a"),
            ("keep.o", b"k"),
            ("build/x", b"x"),
            ("src/.gitignore", b"!b.o\nsecret\n"),
            ("src/b.o", b"b"),
            ("src/c.o", b"c"),
            ("src/secret", b"s"),
            ("src/build/y", b"y"),
        ],
    );
    backup(&s, &[&src]);
    assert_eq!(stored(&s, &src).len(), 12, "without --git-ignore everything is kept");
    backup(&s, &[&"--git-ignore", &src]);
    let want = set(&[".gitignore", "keep.o", "src", "src/.gitignore", "src/b.o", "src/build", "src/build/y"]);
    assert_eq!(stored(&s, &src), want);
}
