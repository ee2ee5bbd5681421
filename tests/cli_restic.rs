//! The rest of what a restic user reaches for (issue 19): `snapshots --latest/--compact`,
//! `backup --compression` and `-v`, `cat` and `list`, progress that stays off a pipe, and
//! interrupted or damaged runs that clean up and say what they left.

mod common;
use common::*;
use std::fs;

#[test]
fn snapshots_latest_per_group_and_compact() {
    let (_tmp, base, s) = setup();
    let (a, b) = (base.join("a"), base.join("b"));
    make_files(&a, &[("f", b"a")]);
    make_files(&b, &[("f", b"b")]);
    for _ in 0..2 {
        s.backup([&a]);
        s.backup([&b]);
    }
    let text = s.ok(["snapshots", "--group-by", "paths", "--latest", "1"]);
    assert_eq!(text.lines().filter(|l| l.contains("/a") || l.contains("/b")).count(), 4, "{text}");
    assert!(text.contains("2 snapshots; times in the local zone ("), "the table names no zone:\n{text}");
    let json = s.snapshots(["--latest", "1"]);
    assert_eq!(json.len(), 1);

    let compact = s.ok(["snapshots", "--compact"]);
    let header = compact.lines().next().unwrap();
    assert!(header.starts_with("id") && !header.contains("paths") && !header.contains("size"), "{compact}");
    assert_eq!(compact.lines().filter(|l| is_hex(&l[..8.min(l.len())], 8)).count(), 4, "{compact}");
}

/// Runs `snapfs ARGS` under `script`, on a pseudo-terminal `cols` wide, and returns what the
/// terminal got; None without `script` (util-linux).
fn on_a_terminal(s: &Snapfs, cols: u32, args: &str) -> Option<String> {
    if !have_tool("script") {
        eprintln!("SKIPPED: no `script` to give snapfs a terminal");
        return None;
    }
    let line = format!("stty rows 24 cols {cols}; {} --repo {} {args}", bin(), s.repo.display());
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &line, "/dev/null"]).env("SNAPFS_PASSWORD", PASSWORD).env("SNAPFS_CACHE_DIR", cache_dir(&s.repo));
    let out = run_cmd(&mut c);
    assert!(out.status.success(), "{}", describe(&format!("{args} on a terminal"), &out));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The visible width of one redrawn terminal line: escape sequences take no columns.
fn visible_width(line: &str) -> usize {
    let mut n = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if !c.is_control() {
            n += 1;
        }
    }
    n
}

#[test]
fn restore_and_check_show_progress_on_a_terminal_only() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    for i in 0..4 {
        write_random(&data.join(format!("f{i}")), 40 * MIB, &mut Rng::new(i));
    }
    s.backup([&data]);
    // Piped stderr: no progress at all.
    for args in
        [vec!["restore", "latest", "--target", base.join("piped").to_str().unwrap()], vec!["check", "--read-data"]]
    {
        let out = s.run(&args);
        assert!(out.status.success(), "{}", describe(&args.join(" "), &out));
        let err = stderr_of(&out);
        assert!(!err.contains('\r') && !err.contains("ETA"), "progress drawn on a pipe by {args:?}:\n{err}");
    }
    let target = base.join("tty");
    let Some(screen) = on_a_terminal(&s, 70, &format!("restore latest --target {}", target.display())) else {
        return;
    };
    assert!(screen.contains("░ restoring ") && screen.contains("entries"), "no restore progress:\n{screen}");
    let Some(check) = on_a_terminal(&s, 70, "check --read-data") else { return };
    assert!(check.contains("░ reading ") && check.contains("packs"), "no check progress:\n{check}");
    let progress = screen.split(['\r', '\n']).chain(check.split(['\r', '\n'])).filter(|l| l.contains('░'));
    for line in progress {
        assert!(visible_width(line) <= 70, "a line wider than the 70-column terminal: {line:?}");
    }
}

#[test]
fn verbose_lists_files_as_backed_up_and_restored() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("a", b"a"), ("sub/b", b"b")]);
    s.backup([&data]);
    make_files(&data, &[("c", b"c")]);
    let out = s.ok(["backup".as_ref(), "-v".as_ref(), data.as_os_str()]);
    let c = data.join("c");
    assert!(out.contains(&format!("new       {}", c.display())), "{out}");
    assert!(!out.contains("unchanged "), "-v lists unchanged files:\n{out}");
    let out = s.ok(["backup".as_ref(), "-vv".as_ref(), data.as_os_str()]);
    assert!(out.contains(&format!("unchanged {}", data.join("sub/b").display())), "{out}");
    let out = s.ok(["backup".as_ref(), "-v".as_ref(), "--json".as_ref(), "--force".as_ref(), data.as_os_str()]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["message_type"], "verbose_status", "{out}");

    let target = base.join("r");
    let out = s.ok(["restore".as_ref(), "latest".as_ref(), "-v".as_ref(), "--target".as_ref(), target.as_os_str()]);
    let restored = out.lines().filter(|l| l.starts_with("restored ") && l.contains(&*target.to_string_lossy())).count();
    assert_eq!(restored, 3, "{out}");
}
