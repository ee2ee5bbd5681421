//! `snapfs dump` through the real binary: a file's bytes, a directory as a tar that GNU tar
//! extracts into the same tree as `snapfs restore` writes, and its errors.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

fn extract(tar: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let mut c = Command::new("tar");
    c.args(["-xp", "--xattrs", "--xattrs-include=*", "--warning=no-timestamp", "-f"])
        .arg(tar)
        .arg("-C")
        .arg(into)
        .stdin(Stdio::null());
    let out = run_cmd(&mut c);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", describe("tar -xp", &out));
}

#[test]
fn a_tar_of_a_directory_extracts_to_what_restore_writes() {
    let (_tmp, base, s) = setup();
    let g = gen_tree(&base.join("src"), 7);
    s.backup([&g.root]);
    let spec = format!("latest:{}", g.root.display());
    let restored = base.join("restored");
    s.restore(&spec, &restored, &[]);

    let tar = base.join("dump.tar");
    s.ok(["dump".as_ref(), spec.as_ref(), "-o".as_ref(), tar.as_os_str()]);
    let extracted = base.join("extracted");
    extract(&tar, &extracted);
    // Contents, modes, owners, ns mtimes, hardlink groups, xattrs, sparse files kept sparse.
    assert_same_contents(&restored, &extracted);
    assert_same_contents(&g.root, &extracted);

    // The same bytes on standard output, and the directory's tar is the default.
    let out = s.run(["dump", &spec]);
    assert!(out.status.success(), "{}", describe("dump to stdout", &out));
    assert_eq!(out.stdout, fs::read(&tar).unwrap(), "dump to stdout and to -o differ");

    // The sparse file is a sparse entry: the archive is far smaller than the file it holds.
    let listing = String::from_utf8(sh("tar", &[Path::new("-tvf"), &tar])).unwrap();
    assert!(listing.contains("sparse.img"), "{listing}");
    let sparse_len = fs::metadata(&g.sparse).unwrap().len();
    assert!(fs::metadata(&tar).unwrap().len() < dir_size(&g.root) - sparse_len / 2, "the sparse file was stored whole");
}

#[test]
fn the_whole_snapshot_is_a_tar_of_the_paths_as_restore_places_them() {
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    make_files(&src, &[("a/one", b"1\n"), ("b/two", b"22\n")]);
    // Data islands between long holes, at offsets and of lengths that are not block multiples:
    // a sparse entry of several runs.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(src.join("a/islands.img")).unwrap();
        f.set_len(100 * MIB + 3).unwrap();
        let mut rng = Rng::new(9);
        for off in [3, 30 * MIB + 1, 60 * MIB + 7, 90 * MIB + 5] {
            // Random data long enough to be cut inside, so runs end off the 8 MiB grid.
            f.write_all_at(&rng.bytes(3 * MIB as usize + off as usize % 7), off).unwrap();
        }
    }
    // Owner ids past ustar's octal fields go in pax records.
    std::os::unix::fs::chown(src.join("a/one"), Some(3_000_000), Some(4_000_000)).unwrap();
    s.backup([&src]);
    let restored = base.join("restored");
    s.restore("latest", &restored, &[]);
    let tar = base.join("all.tar");
    s.ok(["dump".as_ref(), "latest".as_ref(), "--archive".as_ref(), "tar".as_ref(), "-o".as_ref(), tar.as_os_str()]);
    let extracted = base.join("extracted");
    extract(&tar, &extracted);
    assert_same_contents(&restored, &extracted);
    assert_eq!(fs::read(common::restored(&extracted, &src.join("b/two"))).unwrap(), b"22\n");
    // `export --tar` is the same archive, and needs no bundle password.
    let exported = base.join("exported.tar");
    s.ok(["export".as_ref(), "--tar".as_ref(), "latest".as_ref(), "-o".as_ref(), exported.as_os_str()]);
    assert!(fs::read(&exported).unwrap() == fs::read(&tar).unwrap(), "export --tar differs from dump --archive tar");
    let out = s.run(["export".as_ref(), "--tar".as_ref(), "latest".as_ref(), "-o".as_ref(), exported.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "an existing file is not overwritten");
}

#[test]
fn a_file_is_dumped_as_its_bytes_and_a_missing_path_is_one_error_line() {
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(3);
    let big = src.join("big.bin");
    write_random(&big, 12 * MIB + 5, &mut rng);
    s.backup([&src]);
    let spec = format!("latest:{}", big.display());

    let out = s.run(["dump", &spec]);
    assert!(out.status.success(), "{}", describe("dump a file", &out));
    assert!(out.stdout == fs::read(&big).unwrap(), "dumped bytes differ from the file");
    let copy = base.join("copy");
    s.ok(["dump".as_ref(), spec.as_ref(), "-o".as_ref(), copy.as_os_str()]);
    assert!(fs::read(&copy).unwrap() == fs::read(&big).unwrap());
    // Also the restic form: the path as its own argument.
    let out = s.run(["dump".as_ref(), "latest".as_ref(), big.as_os_str()]);
    assert_eq!(out.stdout.len() as u64, 12 * MIB + 5);

    // A reader that stops early is no error.
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!("'{}' --repo '{}' dump '{spec}' | head -c 10 | wc -c", bin(), s.repo.display()));
    c.env("SNAPFS_PASSWORD", PASSWORD).env("SNAPFS_CACHE_DIR", cache_dir(&s.repo));
    let pipe = run_cmd(&mut c);
    assert_eq!(String::from_utf8_lossy(&pipe.stdout).trim(), "10", "{}", describe("dump | head", &pipe));
    assert!(pipe.stderr.is_empty(), "{}", describe("dump | head must print nothing on stderr", &pipe));
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!(
        "'{}' --repo '{}' dump '{spec}' | head -c 10 >/dev/null; exit ${{PIPESTATUS[0]}}",
        bin(),
        s.repo.display()
    ));
    c.env("SNAPFS_PASSWORD", PASSWORD).env("SNAPFS_CACHE_DIR", cache_dir(&s.repo));
    let pipe = run_cmd(&mut c);
    assert!(pipe.status.success(), "{}", describe("dump | head -c 10 must exit 0", &pipe));

    for missing in [format!("latest:{}/nope", src.display()), format!("latest:{}/big.bin/x", src.display())] {
        let out = s.run(["dump", &missing]);
        assert!(!out.status.success(), "{}", describe("dump of a missing path", &out));
        let line = assert_error_line(&out);
        assert!(line.contains("/nope") || line.contains("big.bin"), "{line}");
        assert_eq!(stderr_of(&out).lines().count(), 1, "{}", describe("one line", &out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_zip_of_a_directory_unzips_to_its_files_symlinks_and_modes() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, base, s) = setup();
    let src = base.join("src");
    let mut rng = Rng::new(11);
    make_files(&src, &[("a/big.bin", &rng.bytes(3 << 20)), ("a/b/small.txt", b"small\n"), ("empty", b"")]);
    fs::set_permissions(src.join("a/b/small.txt"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("a/b/small.txt", src.join("link")).unwrap();
    assert!(Command::new("mkfifo").arg(src.join("fifo")).status().unwrap().success());
    s.backup([&src]);
    let zip = base.join("src.zip");
    let spec = format!("latest:{}", src.display());
    let out =
        s.run(["dump".as_ref(), spec.as_ref(), "--archive".as_ref(), "zip".as_ref(), "-o".as_ref(), zip.as_os_str()]);
    // The FIFO cannot be in a zip: named, exit 3, everything else written.
    assert_eq!(out.status.code(), Some(3), "{}", describe("dump --archive zip", &out));
    assert!(stderr_of(&out).contains("fifo"), "{}", stderr_of(&out));
    let into = base.join("unzipped");
    let out = run_cmd(Command::new("unzip").arg("-q").arg(&zip).arg("-d").arg(&into));
    assert!(out.status.success(), "{}", describe("unzip", &out));
    for f in ["a/big.bin", "a/b/small.txt", "empty"] {
        assert_eq!(fs::read(into.join(f)).unwrap(), fs::read(src.join(f)).unwrap(), "{f}");
    }
    assert_eq!(fs::metadata(into.join("a/b/small.txt")).unwrap().permissions().mode() & 0o7777, 0o750);
    assert_eq!(fs::read_link(into.join("link")).unwrap(), Path::new("a/b/small.txt"));
    // Streamed to stdout it is the same archive.
    let out = s.run(["dump", &spec, "--archive", "zip"]);
    assert!(out.stdout == fs::read(&zip).unwrap(), "dump --archive zip to stdout differs from -o");
}
