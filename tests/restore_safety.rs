//! Restore never leaves its target: a directory swapped for a symlink while the restore runs
//! must not let it write, chmod or chown outside (issue #20). And sparse files come back sparse.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const DIRS: usize = 40;
const FILES_PER_DIR: usize = 100;

/// A tree of `DIRS` directories (mode 0750) with `FILES_PER_DIR` small files each.
fn many_files(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for d in 0..DIRS {
        let dir = root.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            fs::write(dir.join(format!("f{f:03}")), format!("file {d} {f}\n")).unwrap();
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        names.push(format!("d{d:02}"));
    }
    names
}

/// Everything under `dir`, as relative paths.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, base: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(&p, base, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Runs a restore of a tree of thousands of files while a thread swaps every directory the
/// restore creates for a symlink to a directory outside the target, as soon as it appears.
#[test]
fn restore_never_writes_through_a_directory_swapped_for_a_symlink() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    let names = many_files(&data);
    s.backup([&data]);

    let outside = base.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let before = fs::metadata(&outside).unwrap();
    let target = base.join("target");
    let here = restored(&target, &data);

    let done = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (done, swaps, here, outside) = (done.clone(), swaps.clone(), here.clone(), outside.clone());
        std::thread::spawn(move || {
            let mut left: Vec<String> = names;
            while !done.load(Ordering::Relaxed) && !left.is_empty() {
                left.retain(|n| {
                    let p = here.join(n);
                    match fs::symlink_metadata(&p) {
                        Ok(m) if m.is_dir() => {
                            // Moved aside (not removed: it may already hold files), then the
                            // name points outside.
                            if fs::rename(&p, here.join(format!("{n}.moved"))).is_ok() && symlink(&outside, &p).is_ok()
                            {
                                swaps.fetch_add(1, Ordering::Relaxed);
                            }
                            false
                        }
                        _ => true,
                    }
                });
                std::thread::yield_now();
            }
        })
    };
    let mut c = s.command();
    c.arg("restore").arg("latest").arg("--target").arg(&target);
    let out = run_cmd(&mut c);
    done.store(true, Ordering::Relaxed);
    attacker.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    assert!(
        swaps > 0,
        "the attacker never swapped a directory; the test proves nothing\n{}",
        describe("restore", &out)
    );

    let leaked = listing(&outside);
    assert!(
        leaked.is_empty(),
        "restore wrote {} entries outside its target through swapped directories ({swaps} swaps), e.g. {:?}",
        leaked.len(),
        &leaked[..leaked.len().min(5)]
    );
    let after = fs::metadata(&outside).unwrap();
    assert_eq!(
        (after.mode(), after.uid(), after.gid(), after.mtime(), after.mtime_nsec()),
        (before.mode(), before.uid(), before.gid(), before.mtime(), before.mtime_nsec()),
        "restore changed the metadata of a directory outside its target"
    );
    assert!(!stderr_of(&out).contains("panicked"), "{}", describe("restore", &out));
}

/// A 64 MiB file holding two 4 KiB islands of data comes back with about as many blocks
/// allocated as the source: FastCDC's chunks are much larger than the islands, so the zero
/// blocks inside each chunk must be left as holes too.
#[test]
fn sparse_file_restores_sparse() {
    use std::os::unix::fs::FileExt;
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    let src = data.join("sparse");
    let f = fs::File::create(&src).unwrap();
    f.set_len(64 * MIB).unwrap();
    let mut rng = Rng::new(7);
    let islands = [(MIB + 4 * KIB, rng.bytes(4096)), (40 * MIB, rng.bytes(4096))];
    for (off, bytes) in &islands {
        f.write_all_at(bytes, *off).unwrap();
    }
    drop(f);
    let src_blocks = fs::metadata(&src).unwrap().blocks();
    assert!(src_blocks * 512 <= 64 * KIB, "the source is not sparse here ({src_blocks} blocks); the test needs holes");
    s.backup([&data]);
    let target = base.join("target");
    s.restore("latest", &target, &[]);
    let got = restored(&target, &src);
    let m = fs::metadata(&got).unwrap();
    eprintln!("st_blocks: source {src_blocks}, restored {} (512-byte units)", m.blocks());
    assert_eq!(m.len(), 64 * MIB, "restored size");
    // Up to 64 KiB beyond the source: ext4 may zero out and allocate up to
    // `extent_max_zeroout_kb` (32 KiB) around a write instead of splitting an extent (CI saw 72
    // blocks against 16). Writing the zeros of the islands' chunks would allocate at least two
    // minimum chunks (2 x 512 KiB).
    assert!(
        m.blocks() * 512 <= src_blocks * 512 + 64 * KIB,
        "restored file has {} blocks allocated, the source {src_blocks}: not restored sparse",
        m.blocks()
    );
    let back = fs::File::open(&got).unwrap();
    for (off, bytes) in &islands {
        let mut buf = vec![0u8; bytes.len()];
        back.read_exact_at(&mut buf, *off).unwrap();
        assert_eq!(&buf, bytes, "island at {off}");
    }
    assert_eq!(blake3::hash(&fs::read(&got).unwrap()), blake3::hash(&fs::read(&src).unwrap()), "content");
}

/// Past the descriptor budget (half the limit left after 256), directories are opened again
/// from their nearest held ancestor: a low limit still restores everything, into a new target
/// and over an existing one.
#[test]
fn a_low_descriptor_limit_still_restores_everything() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    many_files(&data);
    s.backup([&data]);
    let target = base.join("target");
    let run = |extra: &[&str]| {
        let inner = s.command();
        let mut c = std::process::Command::new("prlimit");
        // Room for 22 directories of the 41.
        c.arg("--nofile=300").arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(["restore", "latest", "--target"]).arg(&target).args(extra).stdin(std::process::Stdio::null());
        let out = run_cmd(&mut c);
        assert!(out.status.success(), "{}", describe(&format!("restore {extra:?} under a low limit"), &out));
    };
    run(&[]);
    assert_same_tree(&data, &restored(&target, &data));
    fs::write(restored(&target, &data).join("d39/f099"), b"changed").unwrap();
    run(&["--overwrite", "always"]);
    assert_same_tree(&data, &restored(&target, &data));
}

/// Symlinks already in the target where the snapshot has a directory or a file are never
/// followed, whatever the overwrite mode: they are kept (never, rename) or replaced (always).
#[test]
fn symlinks_planted_in_the_target_are_never_followed() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("dir/inner", b"inner"), ("file", b"file")]);
    s.backup([&data]);
    let outside = base.join("outside");
    make_files(&outside, &[("file", b"outside file")]);
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let before = (listing(&outside), fs::metadata(&outside).unwrap().mode());
    let target = base.join("target");
    fs::create_dir(&target).unwrap();
    symlink(&outside, target.join("dir")).unwrap();
    symlink(outside.join("file"), target.join("file")).unwrap();
    let spec = format!("latest:{}", data.display());
    for mode in ["never", "rename", "if-newer", "always"] {
        s.restore(&spec, &target, &["--overwrite", mode, "--delete"]);
        assert_eq!((listing(&outside), fs::metadata(&outside).unwrap().mode()), before, "--overwrite {mode}");
        assert_eq!(fs::read(outside.join("file")).unwrap(), b"outside file", "--overwrite {mode}");
    }
    assert!(fs::symlink_metadata(target.join("dir")).unwrap().is_dir(), "always did not replace the symlink");
    assert_eq!(fs::read(target.join("dir/inner")).unwrap(), b"inner");
    assert_eq!(fs::read(target.join("file")).unwrap(), b"file");
}
