//! The read-ahead for cold disks (src/archiver/readahead.rs) must not change what is stored:
//! a tree of many small files and some large ones is stored exactly as without it, and
//! restores exactly; files rewritten or removed while the walk reads ahead are stored as one
//! whole version or left out with a warning, never as a mix.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const MIB: usize = 1 << 20;

/// Many small files in many directories, some nested, plus large ones around the sizes where
/// the read-ahead changes its way: whole reads up to 512 KiB, advised reads above, 16 MiB blocks.
fn mixed_tree(root: &Path) {
    let mut rng = Rng::new(21);
    for d in 0..40 {
        let dir = if d % 4 == 0 { root.join(format!("d{d}/inner/deeper")) } else { root.join(format!("d{d}")) };
        fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let len = match f % 5 {
                0 => 0,
                1 => rng.below(100) as usize,
                2 => rng.below(8 << 10) as usize,
                _ => rng.below(96 << 10) as usize,
            };
            let body = if f % 2 == 0 { rng.bytes(len) } else { text_bytes(len, &mut rng) };
            fs::write(dir.join(format!("f{f}")), body).unwrap();
        }
    }
    let big = root.join("big");
    fs::create_dir_all(&big).unwrap();
    for (i, len) in [MIB / 2, MIB / 2 + 1, MIB, 3 * MIB + 17, 21 * MIB, 40 * MIB + 5].into_iter().enumerate() {
        write_random(&big.join(format!("b{i}")), len as u64, &mut rng);
    }
}

#[test]
fn read_ahead_stores_exactly_what_a_plain_read_stores() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    mixed_tree(&data);
    let ahead = s.backup([&data]);
    // The same tree read without the I/O threads (every file read by the walk itself).
    let mut plain = Snapfs::new(&s.repo);
    plain.env.push(("SNAPFS_READAHEAD".into(), "0".into()));
    let out = plain.ok([std::ffi::OsStr::new("backup"), "--force".as_ref(), data.as_os_str()]);
    let without = snapshot_id_from(&out);
    assert_ne!(ahead, without);
    // The data's own subtree: the directories above it (/tmp) change as other tests run.
    let at = |id: &str| format!("{id}:{}", data.display());
    let diff = s.ok(["diff".to_string(), "--json".into(), at(&ahead), at(&without)]);
    let lines: Vec<serde_json::Value> = diff.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "read-ahead changed what was stored:\n{diff}");
    let stats = &lines[0];
    assert_eq!(stats["changed_files"], 0, "{diff}");
    assert_eq!(stats["added"]["data_blobs"], 0, "{diff}");
    assert_eq!(stats["removed"]["data_blobs"], 0, "{diff}");
    assert_eq!(stats["added"]["tree_blobs"], 0, "identical trees have identical ids: {diff}");
    let target = base.join("restore");
    s.restore(&ahead, &target, &[]);
    assert_same_tree(&data, &restored(&target, &data));
}

/// Files rewritten (each version whole, of another length) and removed while the backup runs.
#[test]
fn files_changing_or_vanishing_during_read_ahead() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    mixed_tree(&data);
    let churn_dir = data.join("churn");
    fs::create_dir_all(&churn_dir).unwrap();
    let churned: Vec<PathBuf> = (0..200).map(|i| churn_dir.join(format!("c{i}"))).collect();
    let version = |p: &Path, n: usize| format!("{} version {n}\n", p.display()).repeat(1 + (n * 37) % 500);
    for p in &churned {
        fs::write(p, version(p, 0)).unwrap();
    }
    for attempt in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, churned) = (stop.clone(), churned.clone());
            std::thread::spawn(move || {
                let mut n = 1;
                while !stop.load(Ordering::Relaxed) {
                    for (i, p) in churned.iter().enumerate() {
                        if (i + n) % 3 == 0 {
                            let _ = fs::remove_file(p);
                        } else {
                            // A new file put in place: no reader ever sees a partial version.
                            let tmp = p.with_extension("tmp");
                            fs::write(&tmp, version(p, n)).unwrap();
                            fs::rename(&tmp, p).unwrap();
                        }
                    }
                    n += 1;
                }
            })
        };
        let out = s.run([std::ffi::OsStr::new("backup"), "--force".as_ref(), data.as_os_str()]);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 3)), "{}", describe("backup under churn", &out));
        let id = snapshot_id_from(&stdout_of(&out));
        let target = base.join(format!("restore{attempt}"));
        s.restore(&id, &target, &[]);
        let back = restored(&target, &data);
        // Everything that did not change is exact.
        fs::remove_dir_all(back.join("churn")).unwrap();
        let churn_saved = base.join(format!("churn-saved{attempt}"));
        fs::rename(&churn_dir, &churn_saved).unwrap();
        assert_same_contents(&data, &back);
        fs::rename(&churn_saved, &churn_dir).unwrap();
        // What changed is one whole version, never a mix of two.
        let churn_target = base.join(format!("churn-restore{attempt}"));
        s.restore(&format!("{id}:{}", churn_dir.display()), &churn_target, &[]);
        for e in fs::read_dir(&churn_target).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let body = fs::read_to_string(e.path()).unwrap();
            if name.ends_with(".tmp") {
                continue;
            }
            let p = churn_dir.join(&name);
            let n: usize = body
                .lines()
                .next()
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: not a version: {body:?}"));
            assert_eq!(body, version(&p, n), "{name}: stored bytes are not one version");
        }
    }
}
