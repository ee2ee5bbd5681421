//! Passwords, exit codes for a wrong password or a missing repository, what the repository leaks
//! (it must not hold plain hashes, names or contents), key-derivation parameters, and tampering:
//! a flipped byte must make a restore fail loudly, never restore wrong data.

mod common;
use common::*;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn new_repo() -> (tempfile::TempDir, PathBuf, Snapfs) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let s = Snapfs::new(base.join("repo"));
    s.init();
    (tmp, base, s)
}

fn assert_single_error_line(out: &std::process::Output, what: &str) -> String {
    let err = stderr_of(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("snapfs: error: "),
        "{}",
        describe(&format!("{what}: expected exactly one `snapfs: error: ` line on stderr"), out)
    );
    lines[0].to_string()
}

#[test]
fn wrong_password_exits_12_with_one_line() {
    let (_tmp, base, s) = new_repo();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    let mut wrong = Snapfs::new(&s.repo);
    wrong.password = Some("not the password".into());
    for args in [vec!["snapshots"], vec!["backup", data.to_str().unwrap()]] {
        let out = wrong.run(&args);
        assert_eq!(out.status.code(), Some(12), "{}", describe(&format!("{args:?} with a wrong password"), &out));
        let line = assert_single_error_line(&out, "wrong password");
        assert!(line.to_lowercase().contains("password"), "error line does not mention the password: {line}");
    }
    assert!(s.snapshots(Vec::<&str>::new()).is_empty(), "a backup with a wrong password wrote a snapshot");
}

#[test]
fn missing_repository_exits_10() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let empty = base.join("empty");
    fs::create_dir(&empty).unwrap();
    for repo in [base.join("does-not-exist"), empty.clone()] {
        let s = Snapfs::new(&repo);
        for args in [vec!["snapshots"], vec!["backup", "/etc/hostname"]] {
            let out = s.run(&args);
            assert_eq!(out.status.code(), Some(10), "{}", describe(&format!("{args:?} on {}", repo.display()), &out));
            assert_error_line(&out);
        }
    }
    assert!(!base.join("does-not-exist").exists(), "a command created the missing repository");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "a command wrote into an empty non-repository");
}

#[test]
fn init_creates_missing_dirs_and_refuses_non_empty_ones() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let nested = base.join("a/b/repo");
    let s = Snapfs::new(&nested);
    let out = s.init();
    assert!(out.contains("created snapfs repository") && out.contains(&nested.display().to_string()), "{out}");
    let repoid =
        out.split_whitespace().find(|w| is_hex(w, 32)).unwrap_or_else(|| panic!("no 32-hex repository id in {out:?}"));
    let config = fs::read(nested.join("config")).unwrap();
    assert_eq!(&config[..8], b"SNAPFS\0\x01", "config magic");
    assert_eq!(u32::from_le_bytes(config[8..12].try_into().unwrap()), 2, "format version");
    assert_eq!(hex(&config[12..28]), repoid, "printed id differs from the config's repository id");

    // A second init on the repository, and an init on a directory with a file in it.
    let again = s.run(["init"]);
    assert_eq!(again.status.code(), Some(1), "{}", describe("init on an existing repository", &again));
    let other = base.join("occupied");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("keep.txt"), b"precious").unwrap();
    let out = Snapfs::new(&other).run(["init"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("init on a non-empty directory", &out));
    assert_error_line(&out);
    let names: Vec<_> = fs::read_dir(&other).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep.txt")], "init touched a non-empty directory");
    assert_eq!(fs::read(other.join("keep.txt")).unwrap(), b"precious");
}

#[test]
fn key_slot_uses_strong_argon2_parameters() {
    let (_tmp, _base, s) = new_repo();
    let slots: Vec<_> = fs::read_dir(s.repo.join("keys")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(slots.len(), 1, "expected one key slot: {slots:?}");
    let name = slots[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(is_hex(&name, 16), "key slot name {name:?} is not 16 hex digits");
    let k = fs::read(&slots[0]).unwrap();
    assert_eq!(&k[..8], b"SNAPKEY\x01", "key slot magic");
    let u = |o: usize| u32::from_le_bytes(k[o..o + 4].try_into().unwrap());
    let (m, t, p) = (u(8), u(12), u(16));
    assert!(m >= 65536, "Argon2 memory {m} KiB < 64 MiB");
    assert!(t >= 3, "Argon2 time cost {t} < 3");
    assert_eq!(p, 4, "Argon2 parallelism");
    // salt (32) + created (8) + hostname + user + nonce (24) + sealed master key (48)
    assert!(k.len() >= 20 + 32 + 8 + 2 + 2 + 24 + 48, "key slot too short: {} bytes", k.len());
}

#[test]
fn password_sources_and_global_options_anywhere() {
    let (_tmp, base, s) = new_repo();
    let pwfile = base.join("pw");
    fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let badfile = base.join("bad");
    fs::write(&badfile, "wrong\n").unwrap();
    let mut nopw = Snapfs::new(&s.repo);
    nopw.password = None;

    let ok = |mut c: Command, what: &str| {
        let out = run_cmd(&mut c);
        assert!(out.status.success(), "{}", describe(what, &out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.is_array(), "{what}: not a JSON array");
    };
    let mut c = nopw.command();
    c.args(["snapshots", "--json", "--password-file"]).arg(&pwfile);
    ok(c, "--password-file (with trailing newline)");
    let mut c = nopw.command();
    c.args(["snapshots", "--json"]).env("SNAPFS_PASSWORD_FILE", &pwfile);
    ok(c, "SNAPFS_PASSWORD_FILE");
    let mut c = nopw.command();
    c.args(["snapshots", "--json", "--password-command"]).arg(format!("cat {}", pwfile.display()));
    ok(c, "--password-command");
    // Repository from the environment, options after the subcommand.
    let mut c = Command::new(bin());
    c.args(["snapshots", "--json"]).env("SNAPFS_REPOSITORY", &s.repo).env("SNAPFS_PASSWORD", PASSWORD);
    c.env_remove("SNAPFS_PASSWORD_FILE").stdin(std::process::Stdio::null());
    ok(c, "SNAPFS_REPOSITORY");
    let mut c = Command::new(bin());
    c.args(["snapshots", "--json", "--repo"]).arg(&s.repo).arg("--password-file").arg(&pwfile);
    c.env_remove("SNAPFS_PASSWORD").env_remove("SNAPFS_REPOSITORY").env_remove("SNAPFS_PASSWORD_FILE");
    ok(c, "global options after the subcommand");

    let mut c = nopw.command();
    c.args(["snapshots", "--password-file"]).arg(&badfile);
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(12), "{}", describe("wrong --password-file", &out));
}

#[test]
fn no_password_and_no_terminal_is_an_error() {
    let (_tmp, _base, s) = new_repo();
    let mut nopw = Snapfs::new(&s.repo);
    nopw.password = None;
    // setsid: a new session without a controlling terminal, so no prompt is possible.
    let inner = nopw.command();
    let mut c = Command::new("setsid");
    c.arg("-w").arg(inner.get_program()).args(inner.get_args());
    c.env_remove("SNAPFS_PASSWORD").env_remove("SNAPFS_PASSWORD_FILE").env_remove("SNAPFS_REPOSITORY");
    c.arg("snapshots").stdin(std::process::Stdio::null());
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(1), "{}", describe("no password source, no terminal", &out));
    let line = assert_error_line(&out);
    assert!(line.to_lowercase().contains("password"), "{line}");
}

/// Every byte of every file in the repository.
fn repo_bytes(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    fn walk(d: &Path, all: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, all);
            } else {
                all.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    walk(repo, &mut all);
    all
}

#[test]
fn repository_holds_no_plain_hashes_names_or_contents() {
    let (_tmp, base, s) = new_repo();
    let dirname = "snapfs-secret-dir-name-q7x2";
    let data = base.join(dirname);
    fs::create_dir(&data).unwrap();
    let mut rng = Rng::new(21);
    let marker = b"PLAINTEXT-MARKER-ZQX-0123456789-";
    let mut contents: Vec<Vec<u8>> = Vec::new();
    for i in 0..40usize {
        let n = 1 + rng.below(60_000) as usize;
        let body = match i % 4 {
            0 => rng.bytes(n),
            1 => text_bytes(n, &mut rng),
            2 => marker.repeat(1 + i * 10),
            _ => rng.bytes(i),
        };
        fs::write(data.join(format!("snapfs-secret-file-name-{i:02}")), &body).unwrap();
        contents.push(body);
    }
    let big = rng.bytes(3 * MIB as usize + 4321);
    fs::write(data.join("big"), &big).unwrap();
    s.backup([&data]);

    // Plain BLAKE3 of each whole file, and of pieces of the big file a naive chunker would make.
    let mut hashes: Vec<[u8; 32]> = contents.iter().map(|c| *blake3::hash(c).as_bytes()).collect();
    hashes.push(*blake3::hash(&big).as_bytes());
    for piece in [512 * KIB, MIB, 4 * MIB] {
        for c in big.chunks(piece as usize) {
            hashes.push(*blake3::hash(c).as_bytes());
        }
    }
    let raw: HashSet<[u8; 32]> = hashes.iter().copied().collect();
    let prefixes: HashSet<u64> = hashes.iter().map(|h| u64::from_le_bytes(h[..8].try_into().unwrap())).collect();
    let hexes: HashSet<String> = hashes.iter().map(|h| hex(h)).collect();

    let files = repo_bytes(&s.repo);
    assert!(files.iter().any(|(p, _)| p.starts_with(s.repo.join("packs"))), "no packs written");
    for (path, bytes) in &files {
        for i in 0..bytes.len().saturating_sub(31) {
            let pre = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
            if prefixes.contains(&pre) && raw.contains(&<[u8; 32]>::try_from(&bytes[i..i + 32]).unwrap()) {
                panic!("{} holds a plain BLAKE3 hash of backed-up data at offset {i}", path.display());
            }
        }
        // Runs of hex digits long enough to be a hash.
        let mut start = 0;
        for i in 0..=bytes.len() {
            if i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                continue;
            }
            if i - start >= 64 {
                let run = String::from_utf8_lossy(&bytes[start..i]).to_lowercase();
                for j in 0..=run.len() - 64 {
                    assert!(
                        !hexes.contains(&run[j..j + 64]),
                        "{} holds a hex BLAKE3 hash of backed-up data",
                        path.display()
                    );
                }
            }
            start = i + 1;
        }
        for needle in [&marker[..], b"snapfs-secret-file-name", dirname.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// Flips one byte of `path` at `offset`.
fn flip(path: &Path, offset: usize) {
    let mut b = fs::read(path).unwrap();
    b[offset] ^= 0x40;
    fs::write(path, b).unwrap();
}

/// The largest pack and the end of its blob region (from the plain trailer: header length, "SFPK").
fn largest_pack(repo: &Path) -> (PathBuf, usize) {
    let mut packs = files_under(&repo.join("packs"));
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let pack = packs.pop().expect("no pack files");
    let b = fs::read(&pack).unwrap();
    assert_eq!(&b[b.len() - 4..], b"SFPK", "pack trailer magic");
    let hlen = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap()) as usize;
    assert!(hlen + 8 < b.len(), "header length {hlen} in a {}-byte pack", b.len());
    (pack, b.len() - 8 - hlen)
}

#[test]
fn damaged_data_chunk_fails_that_file_loudly_and_the_rest_restores() {
    let (_tmp, base, s) = new_repo();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    let mut rng = Rng::new(31);
    let big = rng.bytes(6 * MIB as usize);
    fs::write(data.join("victim.bin"), &big).unwrap();
    for i in 0..10 {
        fs::write(data.join(format!("small-{i}")), rng.bytes(1000 + i)).unwrap();
    }
    s.backup([&data]);
    // The middle of the blob region of the biggest pack lies in victim.bin's chunks.
    let (pack, blob_end) = largest_pack(&s.repo);
    flip(&pack, blob_end / 2);

    let target = base.join("restore");
    let mut c = s.command();
    c.arg("restore").arg("latest").arg("--target").arg(&target);
    let out = run_cmd(&mut c);
    assert_eq!(out.status.code(), Some(1), "{}", describe("restore with a damaged chunk", &out));
    assert!(stderr_of(&out).contains("victim.bin"), "{}", describe("stderr must name the damaged file", &out));
    let r = restored(&target, &data);
    if let Ok(got) = fs::read(r.join("victim.bin")) {
        assert!(got != big, "the damaged file was restored complete although its chunk is damaged?");
    }
    for i in 0..10 {
        let want = fs::read(data.join(format!("small-{i}"))).unwrap();
        assert_eq!(fs::read(r.join(format!("small-{i}"))).ok(), Some(want), "small-{i} not restored");
    }
}

#[test]
fn damaged_snapshot_file_fails_loudly() {
    let (_tmp, base, s) = new_repo();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"content").unwrap();
    let id = s.backup([&data]);
    let snap = s.repo.join("snapshots").join(&id);
    let len = fs::metadata(&snap).unwrap().len() as usize;
    flip(&snap, len / 2);
    let target = base.join("restore");
    let out = s.run(["restore".as_ref(), id.as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert_ne!(out.status.code(), Some(0), "{}", describe("restore of a damaged snapshot", &out));
    let err = assert_error_line(&out).to_lowercase();
    assert!(err.contains("snapshot") || err.contains(&id[..8]), "error does not name the snapshot: {err}");
    assert!(files_under(&target).is_empty(), "files restored from a damaged snapshot");
}

#[test]
fn damaged_tree_blob_fails_loudly() {
    let (_tmp, base, s) = new_repo();
    let data = base.join("data");
    // Only empty files, directories and symlinks: the packs hold nothing but trees.
    for i in 0..20 {
        let d = data.join(format!("dir-{i}/sub"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink(format!("target-{i}"), d.join("link")).unwrap();
    }
    s.backup([&data]);
    let (pack, blob_end) = largest_pack(&s.repo);
    flip(&pack, blob_end / 2);
    let target = base.join("restore");
    let out = s.run(["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert_ne!(out.status.code(), Some(0), "{}", describe("restore with a damaged tree blob", &out));
    assert_error_line(&out);
}

#[test]
fn repository_layout_matches_the_spec() {
    let (_tmp, base, s) = new_repo();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    write_random(&data.join("f"), 2 * MIB, &mut Rng::new(41));
    let id = s.backup([&data]);
    let r = &s.repo;
    assert!(r.join("config").is_file(), "no config");
    // The index is a per-client cache, not part of the repository (format-spec §9).
    assert!(!r.join("index.redb").exists(), "an index file inside the repository");
    assert!(index_file(r).is_file(), "no index cache for the repository");
    let epochs: Vec<String> =
        fs::read_dir(r.join("epochs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(epochs, ["00000000"], "one key epoch, named by its number");
    assert_eq!(fs::read_dir(r.join("snapshots")).unwrap().count(), 1);
    assert!(r.join("snapshots").join(&id).is_file(), "snapshot file not named by its id");
    let packs = files_under(&r.join("packs"));
    assert!(!packs.is_empty());
    for p in &packs {
        let name = p.file_name().unwrap().to_str().unwrap();
        let dir = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert!(is_hex(name, 64) && name.starts_with(dir) && dir.len() == 2, "pack path {}", p.display());
        assert_eq!(
            hex(blake3::hash(&fs::read(p).unwrap()).as_bytes()),
            name,
            "pack name is not the BLAKE3 of its bytes"
        );
    }
    // Nothing left behind by a finished command.
    for d in ["locks", "tmp"] {
        let left: Vec<_> =
            fs::read_dir(r.join(d)).map(|rd| rd.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{d}/ not empty after a finished backup: {left:?}");
    }
}
