//! Checks of the test helpers themselves, without snapfs: the tree comparison must accept an exact
//! copy (`cp -a`) and must reject each kind of difference a restore could get wrong. Without this,
//! a comparison bug would let every round-trip test pass vacuously.

mod common;
use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::panic::{AssertUnwindSafe, catch_unwind};

fn must_fail(what: &str, f: impl FnOnce()) {
    let r = catch_unwind(AssertUnwindSafe(f));
    assert!(r.is_err(), "the tree comparison did not notice: {what}");
}

#[test]
fn prng_is_deterministic_and_not_constant() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    let x = a.bytes(4099);
    assert_eq!(x, b.bytes(4099));
    assert_ne!(x, Rng::new(8).bytes(4099));
    let zeros = x.iter().filter(|&&v| v == 0).count();
    assert!(zeros < 100, "suspicious PRNG output: {zeros} zero bytes of 4099");
}

#[test]
fn tree_comparison_accepts_a_copy_and_rejects_differences() {
    let tmp = tempdir();
    let src = canonical(tmp.path()).join("src");
    let tree = gen_tree(&src, 42);

    // The generated tree really has what the guide asks for.
    let l = meta_listing(&src, true);
    let has = |needle: &str| l.lines.iter().any(|x| x.contains(needle));
    assert!(has(" p 644 "), "no FIFO in {:#?}", &l.lines[..10]);
    assert!(has(" c 644 "), "no char device");
    assert!(has(" 4755 ") && has(" 1777 ") && has(" 0 0 0 "), "modes missing");
    assert!(has(" 1234 5678 "), "no file owned by 1234:5678");
    assert!(has("names/new\\nline ") && has("bad-\\xff\\xfe-utf8"), "odd names missing");
    assert!(has("-1000001.8765432110") || has("-1000000.1234567890"), "no pre-1970 mtime");
    assert!(l.hardlinks.iter().any(|g| g.len() == 3), "no 3-way hardlink group: {:?}", l.hardlinks);
    assert!(l.hardlinks.iter().any(|g| g.iter().any(|p| p.starts_with("elsewhere/"))), "no cross-directory hardlink");
    let (size, blocks) = l.alloc["sparse.img"];
    assert_eq!(size, 64 * MIB);
    assert!(blocks * 512 <= 2 * MIB, "sparse.img is not sparse: {blocks} blocks");
    assert_eq!(l.alloc["sizes/max+1"].0, 8 * MIB + 1);
    assert!(l.lines.len() > 10_000);
    if tree.have_xattrs {
        assert!(l.xattrs.iter().any(|b| b.contains("user.binary=0x00ff10ee")), "{:?}", l.xattrs);
    }

    assert_eq!(atime_of(&src.join("times/atime")), "1900000000.1234567890");
    assert!(has("special/null c 644 0 0 - ") && has(" dev 1:3"), "device numbers not listed");

    let base = canonical(tmp.path());
    let copy = base.join("copy");
    sh("cp", &[OsStr::new("-a"), OsStr::new("--sparse=always"), src.as_os_str(), copy.as_os_str()]);
    assert_same_tree(&src, &copy);

    // Each difference below is made in the copy, detected, and undone; the comparisons run on
    // subtrees (with_root = false) so each sees only the difference at hand.
    let sub = |rel: &str| assert_same_contents(&src.join(rel), &copy.join(rel));
    let f = copy.join("links/other/a3");
    let md = fs::metadata(&f).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    must_fail("mode change", || sub("links/other"));
    fs::set_permissions(&f, md.permissions()).unwrap();
    sub("links/other");

    let min = copy.join("sizes/min");
    let bytes = fs::read(&min).unwrap();
    let t = fs::metadata(&min).unwrap().modified().unwrap();
    let set_mtime = |t| {
        fs::File::options().write(true).open(&min).unwrap().set_times(fs::FileTimes::new().set_modified(t)).unwrap()
    };
    let mut changed = bytes.clone();
    changed[1000] ^= 1;
    fs::write(&min, &changed).unwrap();
    set_mtime(t);
    must_fail("content change with same size and mtime", || sub("sizes"));
    fs::write(&min, &bytes).unwrap();
    must_fail("mtime change", || sub("sizes"));
    set_mtime(t);
    sub("sizes");

    let link = copy.join("symlinks/dangling");
    fs::remove_file(&link).unwrap();
    symlink("does/not/exisT", &link).unwrap();
    must_fail("symlink target", || sub("symlinks"));

    if tree.have_xattrs {
        sh("setfattr", &[OsStr::new("-x"), OsStr::new("user.empty"), copy.join("xattr/file").as_os_str()]);
        must_fail("xattr removed", || sub("xattr"));
        setfattr(&copy.join("xattr/file"), "user.empty", "");
        sub("xattr");
    }

    // A sparse file written out densely.
    let (s_dir, d_dir) = (base.join("sparse"), base.join("dense"));
    fs::create_dir(&s_dir).unwrap();
    fs::create_dir(&d_dir).unwrap();
    sh("cp", &[OsStr::new("-a"), OsStr::new("--sparse=always"), tree.sparse.as_os_str(), s_dir.as_os_str()]);
    sh("cp", &[OsStr::new("-a"), OsStr::new("--sparse=never"), tree.sparse.as_os_str(), d_dir.as_os_str()]);
    assert_same_contents(&s_dir, &s_dir);
    must_fail("sparse file restored dense", || assert_same_contents(&s_dir, &d_dir));

    // Same names, contents and link counts, but the hardlinks grouped differently.
    let (g1, g2) = (base.join("groups1"), base.join("groups2"));
    for (dir, pairs) in [(&g1, [("x1", "x2"), ("y1", "y2")]), (&g2, [("x1", "y1"), ("x2", "y2")])] {
        fs::create_dir(dir).unwrap();
        for (a, b) in pairs {
            fs::write(dir.join(a), b"same").unwrap();
            fs::hard_link(dir.join(a), dir.join(b)).unwrap();
            for n in [a, b] {
                fs::File::open(dir.join(n))
                    .unwrap()
                    .set_times(fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH))
                    .unwrap();
            }
        }
    }
    must_fail("hardlinks grouped differently", || assert_same_contents(&g1, &g2));
}
