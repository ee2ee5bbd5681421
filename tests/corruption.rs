//! The corruption matrix (issue 20): seeded damages of every kind of repository object — bit
//! flips, truncations, deletions, a pack swapped with another, a forgotten snapshot replayed
//! from an older copy of the repository, a snapshot copied from another repository, an edited
//! key slot — each applied to a fresh copy of one repository. After each:
//! - the full check (`check --read-data`, run through the library: one key derivation a trial)
//!   must find damage, or the repository must refuse to open; the report should name the
//!   damaged object or the files it affects (counted: "attributed");
//! - every snapshot restored must hold exactly its files' bytes or fail loudly: a wrong byte
//!   in a restored file, or a restore that says it succeeded without all its files, is the
//!   worst failure there is, and both are counted and must be zero;
//! - for a share of them the mount serves every file, and the same count applies to it.
//!
//! SNAPFS_CORRUPT_COUNT (default 20) and SNAPFS_CORRUPT_SEED replay a run; `cargo xtask corrupt
//! --count N --seed S` runs a long one. SNAPFS_CORRUPT_MOUNT_EVERY sets the mount share.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's second password.
const OTHER_PASSWORD: &str = "another password entirely";

/// Relative path → bytes: what a snapshot must restore to.
type Model = BTreeMap<PathBuf, Vec<u8>>;

fn model_of(root: &Path) -> Model {
    files_under(root)
        .into_iter()
        .map(|p| (p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap()))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// One repository and what it holds, built once; each damage works on a copy.
struct Base {
    dir: PathBuf,
    /// The source directory every backup read (the same absolute path for each).
    src: PathBuf,
    /// The live snapshots, by id, with what they must restore to.
    live: Vec<(String, Model)>,
    /// A snapshot forgotten and pruned, its file kept from before: replayed, it names data gone.
    forgotten: (String, Vec<u8>, Model),
    /// A snapshot file of another repository.
    foreign: (String, Vec<u8>),
}

fn edit_tree(src: &Path, rng: &mut Rng, round: u64) {
    for i in 0..10 {
        match rng.below(4) {
            0 => {
                let _ = fs::remove_file(src.join(format!("d{}/f{i}", i % 3)));
            }
            _ => {
                let len = [0, 1, 4096, 300_000, 1_500_000][rng.below(5) as usize] + rng.below(50_000);
                write_random(&src.join(format!("d{}/f{i}", i % 3)), len, rng);
            }
        }
    }
    // Some text (compressible) and a copy (deduplicated) in every round.
    fs::write(src.join(format!("d0/text{round}")), text_bytes(200_000, rng)).unwrap();
    let _ = fs::copy(src.join("d1/f1"), src.join(format!("d2/copy{round}")));
}

fn build_base(root: &Path, seed: u64) -> Base {
    let dir = root.join("base");
    fs::create_dir_all(&dir).unwrap();
    let s = Snapfs::new(dir.join("repo"));
    s.init();
    let src = dir.join("src");
    for d in 0..3 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
    }
    let mut rng = Rng::new(seed);
    let mut snaps = Vec::new();
    for round in 0..3 {
        edit_tree(&src, &mut rng, round);
        let id = s.backup([&src]);
        let file = fs::read(dir.join("repo/snapshots").join(&id)).unwrap();
        snaps.push((id, file, model_of(&src)));
    }
    let (old_id, old_file, old_model) = snaps.remove(0);
    s.ok(["forget", &old_id]);
    s.ok(["prune"]);
    // A second password: a damaged slot of one is not the other's problem.
    let mut c = s.command();
    c.env("SNAPFS_NEW_PASSWORD", OTHER_PASSWORD).args(["key", "add"]);
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe("key add", &out));
    s.ok(["check", "--read-data"]);

    let other = Snapfs::new(dir.join("other"));
    other.init();
    let foreign = other.backup([&src]);
    let foreign_file = fs::read(dir.join("other/snapshots").join(&foreign)).unwrap();
    Base {
        dir,
        src,
        live: snaps.into_iter().map(|(id, _, m)| (id, m)).collect(),
        forgotten: (old_id, old_file, old_model),
        foreign: (foreign, foreign_file),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Damage {
    BitFlip,
    Truncate,
    Delete,
    SwapPacks,
    ReplayForgotten,
    ForeignSnapshot,
    EditKeySlot,
}

/// The repository's files a damage may hit, but for locks (not repository data) and snapshot
/// deletions (nothing references a snapshot: its absence is indistinguishable from a forget).
fn objects(repo: &Path) -> Vec<PathBuf> {
    files_under(repo).into_iter().filter(|p| !p.strip_prefix(repo).unwrap().starts_with("locks")).collect()
}

fn class(repo: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(repo).unwrap();
    rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned()
}

/// Applies a damage chosen by `rng`; returns its kind and a description naming the object.
fn damage(repo: &Path, base: &Base, rng: &mut Rng) -> (Damage, String, String) {
    let all = objects(repo);
    let packs: Vec<&PathBuf> = all.iter().filter(|p| class(repo, p) == "packs").collect();
    let pick = |rng: &mut Rng, v: &[&PathBuf]| v[rng.below(v.len() as u64) as usize].clone();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let kind = match rng.below(100) {
        0..40 => Damage::BitFlip,
        40..60 => Damage::Truncate,
        60..70 => Damage::Delete,
        70..80 => Damage::SwapPacks,
        80..87 => Damage::ReplayForgotten,
        87..94 => Damage::ForeignSnapshot,
        _ => Damage::EditKeySlot,
    };
    match kind {
        Damage::BitFlip | Damage::Truncate => {
            // Packs hold nearly all the bytes; every other kind of file still gets its share.
            let victim = if rng.below(3) > 0 {
                pick(rng, &packs)
            } else {
                let v: Vec<&PathBuf> = all.iter().collect();
                pick(rng, &v)
            };
            let mut bytes = fs::read(&victim).unwrap();
            let at = rng.below(bytes.len() as u64) as usize;
            let what = if kind == Damage::BitFlip {
                bytes[at] ^= 1 << rng.below(8);
                format!("bit flip at {at} of {}", victim.strip_prefix(repo).unwrap().display())
            } else {
                bytes.truncate(at);
                format!("truncated to {at} bytes: {}", victim.strip_prefix(repo).unwrap().display())
            };
            set_contents(&victim, &bytes);
            (kind, what, name(&victim))
        }
        Damage::Delete => {
            let victim = if rng.below(8) == 0 { repo.join("config") } else { pick(rng, &packs) };
            fs::remove_file(&victim).unwrap();
            (kind, format!("deleted {}", victim.strip_prefix(repo).unwrap().display()), name(&victim))
        }
        Damage::SwapPacks => {
            let a = pick(rng, &packs);
            let b = loop {
                let b = pick(rng, &packs);
                if b != a {
                    break b;
                }
            };
            let (ba, bb) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
            set_contents(&a, &bb);
            set_contents(&b, &ba);
            (kind, format!("swapped packs {} and {}", name(&a), name(&b)), name(&a))
        }
        Damage::ReplayForgotten => {
            let (id, file, _) = &base.forgotten;
            fs::write(repo.join("snapshots").join(id), file).unwrap();
            (kind, format!("replayed forgotten snapshot {id}"), id.clone())
        }
        Damage::ForeignSnapshot => {
            let (id, file) = &base.foreign;
            fs::write(repo.join("snapshots").join(id), file).unwrap();
            (kind, format!("snapshot {id} copied from another repository"), id.clone())
        }
        Damage::EditKeySlot => {
            let slots: Vec<&PathBuf> = all.iter().filter(|p| class(repo, p) == "keys").collect();
            let victim = pick(rng, &slots);
            let mut bytes = fs::read(&victim).unwrap();
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = bytes[at].wrapping_add(1 + rng.below(255) as u8);
            set_contents(&victim, &bytes);
            (kind, format!("key slot {} edited at byte {at}", name(&victim)), name(&victim))
        }
    }
}

/// Writes a read-only file (key slots are 0400) as its owner would after a chmod.
fn set_contents(p: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(p).unwrap().permissions().mode();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Bytes of `target` that differ from `model` (a file that should not be there counts whole),
/// and whether every file of the model is there.
fn compare(target: &Path, model: &Model) -> (u64, bool) {
    let got = if target.exists() { model_of(target) } else { Model::new() };
    let mut wrong = 0u64;
    for (path, bytes) in &got {
        match model.get(path) {
            None => wrong += bytes.len() as u64,
            Some(want) => {
                let common = want.len().min(bytes.len());
                wrong += (0..common).filter(|&i| want[i] != bytes[i]).count() as u64;
                wrong += (want.len().max(bytes.len()) - common) as u64;
            }
        }
    }
    (wrong, model.keys().all(|p| got.contains_key(p)))
}

#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<String, (u64, u64, u64)>,
    detected: u64,
    attributed: u64,
    restores: u64,
    restores_failed_loudly: u64,
    wrong_bytes: u64,
    silent: u64,
    mounts: u64,
    mount_files_read: u64,
    mount_eio: u64,
    mount_wrong_bytes: u64,
    failures: Vec<String>,
    /// Examples of damage found but not named, for the report.
    unattributed: Vec<String>,
}

fn run_trial(root: &Path, base: &Base, n: u64, seed: u64, mount: bool, t: &mut Tally) {
    let trial = root.join(format!("t{n}"));
    fs::create_dir_all(&trial).unwrap();
    copy_dir(&base.dir.join("repo"), &trial.join("repo"));
    copy_dir(&cache_dir(&base.dir.join("repo")), &cache_dir(&trial.join("repo")));
    let repo = trial.join("repo");
    let s = Snapfs::new(&repo);
    let mut rng = Rng::new(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (kind, what, object) = damage(&repo, base, &mut rng);
    let damaged_class = if kind == Damage::EditKeySlot || what.contains(" keys/") { "keys" } else { "" };
    let label = format!("#{n} {kind:?}: {what}");

    // Through the library, one key derivation a trial (the command line costs one a command,
    // which makes a thousand trials take an hour); the mount share below is the real binary.
    let (mut detected, mut text, opened) = check_with(&repo, PASSWORD);
    if damaged_class == "keys" && !detected {
        // A slot opens only with its own password: the other password cannot tell it from
        // any other slot, so the check that must notice is the one run by its holder.
        let (d, t, _) = check_with(&repo, OTHER_PASSWORD);
        (detected, text) = (d, t);
    }
    let attributed = text.contains(&object) || (object == "config" && text.contains("config"));
    let entry = t.by_kind.entry(format!("{kind:?}")).or_default();
    entry.0 += 1;
    entry.1 += detected as u64;
    entry.2 += attributed as u64;
    t.detected += detected as u64;
    t.attributed += attributed as u64;
    if !detected {
        t.failures.push(format!("{label}: check --read-data passed"));
    } else if !attributed && t.unattributed.len() < 12 {
        t.unattributed.push(format!("{label}: {}", text.lines().take(3).collect::<Vec<_>>().join(" | ")));
    }

    let mut restorable: Vec<(&str, &Model)> = base.live.iter().map(|(id, m)| (id.as_str(), m)).collect();
    if kind == Damage::ReplayForgotten {
        restorable.push((&base.forgotten.0, &base.forgotten.2));
    }
    for (i, (id, model)) in restorable.iter().enumerate() {
        let target = trial.join(format!("restore{i}"));
        fs::create_dir_all(&target).unwrap();
        // Loud: the repository did not open, the snapshot did not load, or the restore said so.
        let loud = match &opened {
            None => true,
            Some(r) => match r.load_snapshot(&snapfs::Id::from_hex(id).unwrap()) {
                Err(_) => true,
                Ok(snap) => {
                    match snapfs::restore::restore(r, snap.tree, &snapfs::restore::RestoreOptions::new(target.clone()))
                    {
                        Err(_) => true,
                        Ok(out) => !out.errors.is_empty() || !out.damaged.is_empty() || out.counts.failed.files > 0,
                    }
                }
            },
        };
        let (wrong, complete) = compare(&restored(&target, &base.src), model);
        t.restores += 1;
        t.wrong_bytes += wrong;
        if wrong > 0 {
            t.failures.push(format!("{label}: restore of {id} wrote {wrong} wrong bytes"));
        }
        if !loud && !complete {
            t.silent += 1;
            t.failures.push(format!("{label}: restore of {id} reported success without all its files"));
        }
        t.restores_failed_loudly += loud as u64;
    }
    drop(opened);
    if mount {
        mount_trial(&s, &trial, base, &restorable, &label, t);
    }
    fs::remove_dir_all(&trial).unwrap();
}

/// Opens the repository (its index through its own cache, as the command line does) and runs
/// the full check: whether damage was found, the text of what was reported, and the open
/// repository for the restores.
fn check_with(repo: &Path, password: &str) -> (bool, String, Option<snapfs::repo::Repository>) {
    let backend: std::sync::Arc<dyn snapfs::backend::Backend> =
        std::sync::Arc::new(snapfs::backend::LocalBackend::new(repo));
    let cache = snapfs::repo::Cache::dir(cache_dir(repo));
    let mut how = snapfs::repo::Opening::new(snapfs::repo::LockMode::None, "corruption matrix");
    how.cache = Some(&cache);
    let r = match snapfs::repo::Repository::open_with(backend, password.as_bytes(), &how)
        .and_then(|r| r.load_index(&cache))
    {
        Ok((r, _)) => r,
        Err(e) => return (true, e.to_string(), None),
    };
    let mut text: String = r.damaged_epochs().iter().map(|(n, e)| format!("epoch {n}: {e}\n")).collect();
    let opts = snapfs::check::CheckOptions { read_data: Some(snapfs::check::Subset::All), ..Default::default() };
    let detected = match snapfs::check::check(&r, &opts) {
        Err(e) => {
            text.push_str(&e.to_string());
            true
        }
        Ok(report) => {
            for p in &report.problems {
                let pack = p.pack.map(|id| id.hex()).unwrap_or_default();
                let blob = p.blob.map(|(id, _)| id.hex()).unwrap_or_default();
                text.push_str(&format!("{} pack {pack} blob {blob}: {}\n", p.kind, p.detail));
            }
            for (pack, blobs) in &report.index.gone_packs {
                text.push_str(&format!("index: pack {} with {blobs} blobs is gone\n", pack.hex()));
            }
            for line in &report.index.problems {
                text.push_str(&format!("index: {line}\n"));
            }
            for a in &report.affected {
                for p in &a.paths {
                    text.push_str(&format!("affected {} {}\n", a.snapshot.hex(), p.path));
                }
            }
            !report.is_clean() || !r.damaged_epochs().is_empty()
        }
    };
    (detected, text, Some(r))
}

/// Reads every file of every snapshot through a real mount: EIO is an answer, a wrong byte is not.
fn mount_trial(s: &Snapfs, trial: &Path, base: &Base, snaps: &[(&str, &Model)], label: &str, t: &mut Tally) {
    let mp = trial.join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut c = s.command();
    c.arg("mount").arg(&mp).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    let up = loop {
        if mp.join("snapshots").is_dir() {
            break true;
        }
        // A repository that does not open is not mounted: nothing served, nothing wrong.
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if up {
        t.mounts += 1;
        for (id, model) in snaps {
            let view = mp.join("ids").join(id).join(base.src.strip_prefix("/").unwrap());
            for (rel, want) in model.iter() {
                match fs::read(view.join(rel)) {
                    Ok(got) => {
                        t.mount_files_read += 1;
                        if &got != want {
                            let wrong = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count()
                                + got.len().abs_diff(want.len());
                            t.mount_wrong_bytes += wrong as u64;
                            t.failures.push(format!("{label}: mount served {wrong} wrong bytes of {}", rel.display()));
                        }
                    }
                    Err(_) => t.mount_eio += 1,
                }
            }
        }
    }
    if up {
        let _ = Command::new("fusermount3").arg("-u").arg(&mp).status();
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&mp).status();
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn every_seeded_damage_is_detected_and_no_wrong_byte_is_restored_or_served() {
    let count = env_u64("SNAPFS_CORRUPT_COUNT", 20);
    let seed = env_u64("SNAPFS_CORRUPT_SEED", 0xc0_441);
    let mount_every = env_u64("SNAPFS_CORRUPT_MOUNT_EVERY", 5).max(1);
    let fuse = Path::new("/dev/fuse").exists() && have_tool("fusermount3");
    assert!(fuse || std::env::var_os("CI").is_none(), "CI must have FUSE for the corruption matrix's mounts");
    eprintln!("corruption matrix: {count} damages, seed {seed} (SNAPFS_CORRUPT_SEED={seed} replays it)");
    let tmp = tempdir();
    let root = canonical(tmp.path());
    let started = Instant::now();
    let base = build_base(&root, seed);
    let mut t = Tally::default();
    for n in 0..count {
        run_trial(&root, &base, n, seed, fuse && n % mount_every == 0, &mut t);
        if (n + 1) % 50 == 0 && n + 1 < count {
            eprintln!(
                "  after {} damages ({} s): {} detected, {} attributed, {} wrong bytes restored, {} served, {} failures",
                n + 1,
                started.elapsed().as_secs(),
                t.detected,
                t.attributed,
                t.wrong_bytes,
                t.mount_wrong_bytes,
                t.failures.len()
            );
        }
    }
    let secs = started.elapsed().as_secs();
    eprintln!(
        "corruption matrix: {count} damages (seed {seed}) in {secs} s: {} detected by check --read-data, {} attributed to the damaged object; {} restores ({} failed loudly), {} wrong bytes restored, {} silent failures; {} mounts read {} files ({} EIO), {} wrong bytes served",
        t.detected,
        t.attributed,
        t.restores,
        t.restores_failed_loudly,
        t.wrong_bytes,
        t.silent,
        t.mounts,
        t.mount_files_read,
        t.mount_eio,
        t.mount_wrong_bytes
    );
    for (kind, (n, d, a)) in &t.by_kind {
        eprintln!("  {kind}: {n} damages, {d} detected, {a} attributed");
    }
    for u in &t.unattributed {
        eprintln!("  not named: {u}");
    }
    for f in t.failures.iter().take(40) {
        eprintln!("  FAIL {f}");
    }
    assert!(t.failures.is_empty(), "{} failures (first: {})", t.failures.len(), t.failures[0]);
    assert_eq!(t.detected, count);
    assert_eq!(t.wrong_bytes + t.mount_wrong_bytes, 0);
}
