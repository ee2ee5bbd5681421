//! `cargo xtask`: developer tasks for snapfs, written in Rust so they run wherever cargo does.
//!
//! The alias in `.cargo/config.toml` builds and runs this binary. It depends only on `anyhow`
//! and std, and every task runs from the workspace root whatever the current directory is.

mod bench;
mod browsebench;
mod coldbench;
mod copybench;
mod corrupt;
mod demo;
mod fuzz;
mod mountbench;
mod prunebench;
mod prunescale;
mod rotatebench;
mod s3bench;
mod servebench;

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
Usage: cargo xtask <TASK>

Tasks:
  demo   build snapfs (release) and run a backup -> restore round trip on a sample tree
  man    build snapfs and write its man pages into target/man (install: cp target/man/*.1
         /usr/local/share/man/man1/)
  fuzz   every decoder of on-disk data under cargo-fuzz (nightly), one target after the
         other  [--seconds S (30)] [--target T]...
  corrupt  the corruption matrix at scale: seeded damages of every object kind, each checked,
         restored and (a share) mounted  [--count N (1000)] [--seed S] [--mount-every K]
  ci     run what CI runs: cargo fmt --check, clippy -D warnings, cargo test --workspace
  bench  snapfs against restic, borg and rustic (when installed) on the same data, in one
         run; writes benches/results/latest.md  [--quick] [--rounds N]; --limits prints
         only what the machine allows on that data
         with --scale: backup cost from 10k to 1M files and over 50 snapshots  [--max N]
         with --cold: backups from a cold disk (caches dropped before every step, as
         root) against restic and borg, with the disk's read and stat limits; writes
         benches/results/cold.md  [--rounds N] [--data DIR] [--no-borg]
         with --mount: snapfs mount against restic mount (find, cat, tar, RSS); writes
         benches/results/mount.md  [--quick] [--rounds N]
         with --prune: forget half of a 20-snapshot history and prune, against restic
         forget --prune and borg prune + compact; writes benches/results/prune.md
         [--quick] [--rounds N] [--snapshots N]
         with --prune-scale: prune's peak RSS against restic's as the number of blobs
         grows; writes benches/results/prune-scale.md  [--rounds N] [--files N,N,…]
         with --browse: ls, find, diff and history over 50 snapshots against restic's;
         writes benches/results/browse.md  [--rounds N] [--files N]
         with --rotate: key rotate --rewrite against check --read-data and a copy of the
         packs; writes benches/results/rotate.md  [--quick] [--rounds N]
         with --copy: copy one snapshot between local repositories against restic copy;
         writes benches/results/copy.md  [--quick] [--rounds N] [--snapfs PATH]
         with --server: backup and restore through snapfs serve on loopback against local
         disk, restic sftp and borg serve --append-only over ssh; writes
         benches/results/server.md (restores to /dev/shm unless --restore-on-disk)
         [--quick] [--rounds N] [--snapfs PATH] [--restore-on-disk]
         with --s3: backup, re-backup, restore, check --read-data, forget + prune on a
         3-node Garage cluster against restic's s3 backend, with requests/GB; writes
         benches/results/s3.md (restores to /dev/shm unless --restore-on-disk)
         [--quick] [--rounds N] [--snapfs PATH] [--restore-on-disk]
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let (task, rest) = args.split_first().map_or(("", &[][..]), |(t, r)| (t.as_str(), r));
    if !matches!(task, "bench" | "fuzz" | "corrupt") && !rest.is_empty() {
        eprintln!("error: unexpected argument {:?}\n", rest[0]);
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let result = match task {
        "bench" if rest.iter().any(|a| a == "--scale") => bench::scale(rest),
        "bench" if rest.iter().any(|a| a == "--mount") => mountbench::run(rest),
        "bench" if rest.iter().any(|a| a == "--cold") => coldbench::run(rest),
        "bench" if rest.iter().any(|a| a == "--prune") => prunebench::run(rest),
        "bench" if rest.iter().any(|a| a == "--prune-scale") => prunescale::run(rest),
        "bench" if rest.iter().any(|a| a == "--browse") => browsebench::run(rest),
        "bench" if rest.iter().any(|a| a == "--rotate") => rotatebench::run(rest),
        "bench" if rest.iter().any(|a| a == "--copy") => copybench::run(rest),
        "bench" if rest.iter().any(|a| a == "--server") => servebench::run(rest),
        "bench" if rest.iter().any(|a| a == "--s3") => s3bench::run(rest),
        "bench" => bench::run(rest),
        "demo" => demo::run(),
        "fuzz" => fuzz::run(rest),
        "corrupt" => corrupt::run(rest),
        "man" => man(),
        "ci" => ci(),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            if !other.is_empty() {
                eprintln!("error: unknown task `{other}`\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask man`: the man pages, from the command-line definition, into target/man.
fn man() -> Result<()> {
    run(cargo().args(["build", "--release", "--bin", "snapfs"]))?;
    let target = target_dir()?;
    let dir = target.join("man");
    run(Command::new(target.join("release/snapfs")).arg("man-pages").arg(&dir))?;
    eprintln!("man pages written to {}", dir.display());
    Ok(())
}

/// The checks CI runs, in the same order, stopping at the first failure.
fn ci() -> Result<()> {
    let steps: [&[&str]; 3] = [
        &["fmt", "--all", "--", "--check"],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        &["test", "--workspace"],
    ];
    for args in steps {
        eprintln!("==> cargo {}", args.join(" "));
        run(cargo().args(args))?;
    }
    eprintln!("==> ci ok");
    Ok(())
}

/// The workspace root (the parent of `xtask/`).
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the workspace root")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set, else `target/` in the workspace.
fn target_dir() -> Result<PathBuf> {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => Ok(env::current_dir().context("reading the current directory")?.join(dir)),
        None => Ok(workspace_root().join("target")),
    }
}

/// The cargo that runs us (`$CARGO`), started in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd` with inherited output and fails unless it exits with status 0.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    let status = cmd.status().with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// A command line as a user would type it, quoting arguments that need it.
fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program());
    std::iter::once(program).chain(cmd.get_args()).map(quote).collect::<Vec<_>>().join(" ")
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
