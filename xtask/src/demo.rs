//! `cargo xtask demo`: builds snapfs and walks through init → backup → change → backup →
//! snapshots → restore on a generated sample tree, then checks the restore with `diff -r`.
//!
//! Everything lives under `target/demo/` (wiped first): `sample/` (the data), `repo/` (the
//! repository) and `restore/` (where the latest snapshot is restored).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

const PASSWORD: &str = "demo-password";

pub fn run() -> Result<()> {
    heading("Building snapfs");
    crate::run(crate::cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = crate::target_dir()?;
    let demo = target.join("demo");
    let snapfs = Snapfs { bin: target.join("release").join("snapfs"), repo: demo.join("repo") };
    let sample = demo.join("sample");
    let restore = demo.join("restore");

    heading("Generating a sample tree");
    if demo.exists() {
        fs::remove_dir_all(&demo).with_context(|| format!("removing {}", demo.display()))?;
    }
    let (files, bytes) = generate(&sample)?;
    println!(
        "{files} files, {:.1} MB in {} (nested directories, text and random data, a symlink, a hardlink)",
        bytes as f64 / 1e6,
        sample.display()
    );

    heading("Creating a repository and backing up");
    println!("$ export SNAPFS_PASSWORD={PASSWORD}");
    snapfs.run(&[&"init"])?;
    snapfs.run(&[&"backup", &sample])?;

    heading("Changing a few files and backing up again (only the changes are added)");
    modify(&sample)?;
    snapfs.run(&[&"backup", &sample])?;

    heading("Listing snapshots");
    snapfs.run(&[&"snapshots"])?;

    heading("Restoring the latest snapshot");
    snapfs.run(&[&"restore", &"latest", &"--target", &restore])?;

    heading("Comparing the restored tree with the original");
    // Snapshots mirror absolute paths, so the sample comes back under restore/<its absolute path>.
    let restored = restore.join(sample.strip_prefix("/").unwrap_or(&sample));
    let mut diff = Command::new("diff");
    diff.args(["-r", "--no-dereference"]).arg(&sample).arg(&restored);
    println!("$ {}", crate::display(&diff));
    let status = diff.status().context("could not run `diff` (from diffutils)")?;
    if !status.success() {
        bail!("the restored tree differs from the original (`diff` {status})");
    }
    let (a, b) = (HARDLINK.0, HARDLINK.1);
    let inode = |p: &Path| fs::symlink_metadata(p).map(|m| m.ino());
    if inode(&restored.join(a))? != inode(&restored.join(b))? {
        bail!("{a} and {b} are hard links in the original but not in the restored tree");
    }
    println!("demo ok: restored tree is identical");
    Ok(())
}

/// Runs the snapfs binary on the demo repository, printing each command like a tutorial.
struct Snapfs {
    bin: PathBuf,
    repo: PathBuf,
}

impl Snapfs {
    /// Runs `snapfs <command> --repo REPO <args>...`: `args[0]` is the command.
    fn run(&self, args: &[&dyn AsRef<OsStr>]) -> Result<()> {
        let (command, rest) = args.split_first().expect("a snapfs command");
        let mut cmd = Command::new(&self.bin);
        cmd.arg(command).arg("--repo").arg(&self.repo);
        cmd.args(rest);
        cmd.env("SNAPFS_PASSWORD", PASSWORD).stdin(Stdio::null());
        println!("$ {}", crate::display(&cmd));
        crate::run(&mut cmd)
    }
}

fn heading(text: &str) {
    println!("\n### {text}\n");
}

/// Two paths (relative to the sample) that are hard links to the same file.
const HARDLINK: (&str, &str) = ("data/archive.bin", "backup-copy/archive.bin");

/// Writes the sample tree (about 30 MB, a few hundred files) and returns (files, bytes).
fn generate(root: &Path) -> Result<(u64, u64)> {
    let mut rng = Rng(0x5eed_5a4f_f5de_0001);
    let mut tree = Tree { root, files: 0, bytes: 0 };
    // Text: five projects with notes and drafts, some nested deeper.
    for project in 1..=5 {
        for (dir, count) in [("notes", 20), ("drafts", 12), ("src/lib/util", 8)] {
            for i in 0..count {
                let len = rng.range(1_000, 60_000);
                let ext = if dir.starts_with("src") { "rs" } else { "txt" };
                let path = format!("documents/project-{project}/{dir}/file-{i:03}.{ext}");
                tree.write(&path, text(&mut rng, len).as_bytes())?;
            }
        }
    }
    // Incompressible data: photos spread over months, plus one larger archive.
    for i in 0..PHOTOS {
        let len = rng.range(60_000, 260_000);
        tree.write(&photo(i), &rng.bytes(len))?;
    }
    tree.write(HARDLINK.0, &rng.bytes(6_000_000))?;
    // A disk image made of one random 64 KiB block repeated: deduplicates within itself.
    tree.write("data/disk.img", &rng.bytes(65_536).repeat(64))?;
    tree.write("data/empty.txt", b"")?;
    fs::create_dir_all(root.join("empty-dir"))?;
    fs::create_dir_all(root.join("backup-copy"))?;
    fs::hard_link(root.join(HARDLINK.0), root.join(HARDLINK.1)).context("creating a hard link")?;
    symlink("documents/project-1/notes/file-000.txt", root.join("README.txt")).context("creating a symlink")?;
    Ok((tree.files, tree.bytes))
}

const PHOTOS: usize = 90;

fn photo(i: usize) -> String {
    format!("photos/2024-{:02}/IMG_{:04}.jpg", i % 12 + 1, 1000 + i)
}

/// Edits that a day of work might bring: an append, an edit inside a large file, a new file and a
/// deleted one.
fn modify(root: &Path) -> Result<()> {
    let mut rng = Rng(0x5eed_5a4f_f5de_0002);
    let path = "documents/project-1/notes/file-003.txt";
    println!("append a paragraph to {path}");
    let mut file = OpenOptions::new().append(true).open(root.join(path))?;
    file.write_all(text(&mut rng, 2_000).as_bytes())?;

    println!("overwrite 4 KiB in the middle of {} (a 6 MB file)", HARDLINK.0);
    let mut file = OpenOptions::new().write(true).open(root.join(HARDLINK.0))?;
    file.seek(SeekFrom::Start(3_000_000))?;
    file.write_all(&rng.bytes(4096))?;

    let path = "documents/project-2/drafts/new-draft.txt";
    println!("add {path}");
    fs::write(root.join(path), text(&mut rng, 20_000))?;

    let path = photo(42);
    println!("delete {path}");
    fs::remove_file(root.join(&path))?;
    Ok(())
}

struct Tree<'a> {
    root: &'a Path,
    files: u64,
    bytes: u64,
}

impl Tree<'_> {
    fn write(&mut self, rel: &str, data: &[u8]) -> Result<()> {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(data).and_then(|()| out.flush()).with_context(|| format!("writing {}", path.display()))?;
        self.files += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// Prose-like text of about `len` bytes.
fn text(rng: &mut Rng, len: usize) -> String {
    const WORDS: &[&str] = &[
        "backup",
        "snapshot",
        "restore",
        "chunk",
        "tree",
        "index",
        "pack",
        "the",
        "a",
        "of",
        "and",
        "to",
        "in",
        "is",
        "data",
        "file",
        "directory",
        "repository",
        "every",
        "never",
        "once",
        "key",
        "password",
        "mount",
        "archive",
        "deduplicated",
        "encrypted",
        "with",
        "from",
        "which",
        "content",
        "address",
        "change",
        "small",
        "large",
        "quietly",
        "fast",
        "safe",
    ];
    let mut out = String::with_capacity(len + 16);
    let mut words_in_line = 0;
    while out.len() < len {
        out.push_str(WORDS[rng.below(WORDS.len())]);
        words_in_line += 1;
        match rng.below(12) {
            0 => out.push_str(". "),
            1 => out.push_str(", "),
            _ if words_in_line >= 12 => {
                out.push('\n');
                words_in_line = 0;
            }
            _ => out.push(' '),
        }
    }
    out.push('\n');
    out
}

/// SplitMix64: a tiny seeded PRNG, so the sample tree is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}
