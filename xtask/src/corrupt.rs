//! `cargo xtask corrupt`: the corruption matrix of `tests/corruption.rs` at any size. The test
//! runs a few dozen damages in CI; this runs it with `--count N --seed S` and prints its tally.

use anyhow::{Context, Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    let (mut count, mut seed, mut mount_every) = (1000u64, None::<u64>, 25u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64> {
            it.next().with_context(|| format!("{name} needs a value"))?.parse().with_context(|| name.to_string())
        };
        match a.as_str() {
            "--count" => count = value("--count")?,
            "--seed" => seed = Some(value("--seed")?),
            "--mount-every" => mount_every = value("--mount-every")?,
            other => bail!("unexpected argument {other:?} (corrupt takes --count N --seed S [--mount-every K])"),
        }
    }
    let seed = seed.unwrap_or_else(|| std::process::id() as u64 ^ 0x5eed);
    let mut cmd = super::cargo();
    cmd.args(["test", "--test", "corruption", "--", "--nocapture", "--test-threads=1"])
        .env("SNAPFS_CORRUPT_COUNT", count.to_string())
        .env("SNAPFS_CORRUPT_SEED", seed.to_string())
        .env("SNAPFS_CORRUPT_MOUNT_EVERY", mount_every.to_string());
    eprintln!("==> corruption matrix: {count} damages, seed {seed}, a mount every {mount_every}");
    super::run(&mut cmd)
}
