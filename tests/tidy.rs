//! Architecture rules checked on the source text (as rust-analyzer's tidy test does), so that a
//! change that breaks one fails here instead of in a review:
//! - repository bytes go through `src/backend/` only: the modules that handle repository
//!   objects never use `std::fs`, and nothing outside `backend/` spells a repository path;
//! - the client's caches (the index, and the tree cache beside it) are the only local files
//!   those modules may keep, in `repo/catchup.rs` and `repo/treecache.rs`.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> (PathBuf, Vec<PathBuf>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    (root, files)
}

/// Lines of `file` (comments dropped) that contain any of `needles`.
fn hits(file: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| needles.iter().any(|n| l.contains(n)))
        .map(|(i, l)| format!("{}:{}: {}", file.display(), i + 1, l.trim()))
        .collect()
}

#[test]
fn repository_objects_are_reached_through_the_backend_only() {
    let (root, files) = src();
    let rel = |p: &Path| p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
    // Modules whose job is repository objects: no file system access at all, except the
    // client's own caches.
    let object_modules = ["repo/", "check", "vfs/", "reader.rs", "format/", "crypto/", "index.rs", "cache.rs"];
    let cache_files = ["repo/catchup.rs", "repo/treecache.rs", "index.rs"];
    let mut bad = Vec::new();
    for f in &files {
        let r = rel(f);
        if r.starts_with("backend/") {
            continue;
        }
        // The layout of a local repository is the local backend's business.
        let layout = [
            "join(\"packs\")",
            "join(\"snapshots\")",
            "join(\"keys\")",
            "join(\"locks\")",
            "join(\"epochs\")",
            "join(\"tmp\")",
            "join(\"config\")",
        ];
        bad.extend(hits(f, &layout));
        if object_modules.iter().any(|m| r.starts_with(m)) && !cache_files.contains(&r.as_str()) {
            bad.extend(hits(f, &["std::fs", "fs::", "File::open", "File::create", "OpenOptions"]));
        }
        if !r.starts_with("cli/") {
            bad.extend(hits(f, &["LocalBackend::new"]));
        }
        if !cache_files.contains(&r.as_str()) {
            bad.extend(hits(f, &["index.redb\""]));
        }
    }
    assert!(bad.is_empty(), "repository bytes outside the backend:\n{}", bad.join("\n"));
}

#[test]
fn the_rule_catches_what_it_is_about() {
    // The check above must be able to fail: a file that opens a pack by path is caught.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rs");
    std::fs::write(&f, "let p = root.join(\"packs\");\nlet f = File::open(&p)?;\n// fs:: in a comment\n").unwrap();
    assert_eq!(hits(&f, &["join(\"packs\")"]).len(), 1);
    assert_eq!(hits(&f, &["File::open", "fs::"]).len(), 1);
}

/// `println!` and `eprintln!` panic when their stream is gone (`snapfs snapshots | head -1`): the
/// commands print through `cli/output.rs`, which takes a closed pipe as the end of output.
#[test]
fn nothing_prints_through_a_macro_that_panics() {
    let (_, files) = src();
    let bad: Vec<String> = files.iter().flat_map(|f| hits(f, &["println!(", "print!("])).collect();
    assert!(bad.is_empty(), "print with outln!/errln! (cli) or a callback (library):\n{}", bad.join("\n"));
}
