//! Shell completion and man pages come from the command-line definition itself.

mod common;
use common::*;
use std::process::Command;

#[test]
fn completion_scripts_know_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish"] {
        let out = run_cmd(Command::new(bin()).args(["completion", shell]));
        assert!(out.status.success(), "{}", describe(shell, &out));
        let script = stdout_of(&out);
        for cmd in ["backup", "forget", "prune", "history", "restore"] {
            assert!(script.contains(cmd), "{shell} completion lacks {cmd}");
        }
    }
    let out = run_cmd(Command::new(bin()).args(["completion", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_pages_are_written_for_every_command() {
    let tmp = tempdir();
    let dir = tmp.path().join("man");
    let out = run_cmd(Command::new(bin()).arg("man-pages").arg(&dir));
    assert!(out.status.success(), "{}", describe("man-pages", &out));
    for page in ["snapfs.1", "snapfs-backup.1", "snapfs-forget.1", "snapfs-prune.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is not a man page");
    }
    let forget = std::fs::read_to_string(dir.join("snapfs-forget.1")).unwrap();
    assert!(forget.contains("keep\\-daily"), "the forget page lacks its options");
}
