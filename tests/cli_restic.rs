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
    // The bar's message, not its unfilled part: a fast run may be drawn only empty or full.
    assert!(screen.contains(" restoring ") && screen.contains("entries"), "no restore progress:\n{screen}");
    let Some(check) = on_a_terminal(&s, 70, "check --read-data") else { return };
    assert!(check.contains(" reading ") && check.contains("packs"), "no check progress:\n{check}");
    let progress =
        screen.split(['\r', '\n']).chain(check.split(['\r', '\n'])).filter(|l| l.contains('░') || l.contains('█'));
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

#[test]
fn backup_compression_off_max_and_levels() {
    let (_tmp, base, s) = setup();
    let text: Vec<u8> = b"the same words again and again ".iter().copied().cycle().take(4 * MIB as usize).collect();
    let added = |dir: &str, level: &str| {
        let d = base.join(dir);
        make_files(&d, &[("t", &text)]);
        let v = s.backup_json(["--compression".as_ref(), level.as_ref(), d.as_os_str()]);
        num(&v, "bytes_added")
    };
    // Each its own content (a distinct name in the tree), the same data blob: only the
    // first stores it, so compare off with a fresh repository's auto.
    let off = added("a", "off");
    assert!(off >= 4 * MIB, "--compression off stored {off} bytes of 4 MiB");
    let (_tmp2, base2, s2) = setup();
    let d = base2.join("b");
    make_files(&d, &[("t", &text)]);
    let max = num(&s2.backup_json(["--compression".as_ref(), "max".as_ref(), d.as_os_str()]), "bytes_added");
    assert!(max < MIB / 4, "--compression max stored {max} bytes");
    for bad in ["23", "fast", "-1"] {
        let out = s.run(["backup".as_ref(), "--compression".as_ref(), bad.as_ref(), base.join("a").as_os_str()]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&format!("--compression {bad}"), &out));
    }
    s.ok(["check", "--read-data"]);
}

#[test]
fn cat_and_list_show_objects_decrypted() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    make_files(&data, &[("f", b"file contents")]);
    s.backup([&data]);
    let config: serde_json::Value = serde_json::from_str(&s.ok(["cat", "config"])).unwrap();
    assert_eq!(config["version"], 2, "{config}");
    let snap: serde_json::Value = serde_json::from_str(&s.ok(["cat", "snapshot", "latest"])).unwrap();
    let listed = s.ok(["list", "snapshots"]);
    assert_eq!(listed.trim(), snap["id"].as_str().unwrap());
    let tree: serde_json::Value = serde_json::from_str(&s.ok(["cat", "tree", snap["tree"].as_str().unwrap()])).unwrap();
    assert!(tree["nodes"][0]["name"].is_string(), "{tree}");

    let blobs = s.ok(["list", "blobs"]);
    assert!(blobs.lines().any(|l| l.starts_with("tree ")) && blobs.lines().any(|l| l.starts_with("data ")), "{blobs}");
    let data_blob = blobs.lines().find_map(|l| l.strip_prefix("data ")).unwrap();
    let out = s.run(["cat", "blob", data_blob]);
    assert_eq!(out.stdout, b"file contents", "{}", describe("cat blob", &out));

    let keys = s.ok(["list", "keys"]);
    let key: serde_json::Value = serde_json::from_str(&s.ok(["cat", "key", &keys.trim()[..6]])).unwrap();
    assert_eq!(key["kdf"]["algorithm"], "argon2id", "{key}");
    assert!(!s.ok(["list", "packs"]).trim().is_empty());
    assert_eq!(s.ok(["list", "locks"]).trim(), "", "list takes no lock, and none is left");
    // A missing blob is a runtime error naming it.
    let out = s.run(["cat", "blob", &"0".repeat(64)]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("cat blob of a missing id", &out));
    assert!(stderr_of(&out).contains("not in the index"), "{}", stderr_of(&out));
}

#[test]
fn check_names_staging_files() {
    let (_tmp, _base, s) = setup();
    fs::create_dir_all(s.repo.join("tmp")).unwrap();
    fs::write(s.repo.join("tmp/0123abcd.tmp"), b"half a pack").unwrap();
    let text = s.ok(["check"]);
    assert!(text.contains("tmp/0123abcd.tmp is a staging file"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&s.ok(["check", "--json"])).unwrap();
    assert_eq!(v["staging_files"][0]["name"], "tmp/0123abcd.tmp", "{v}");
}

/// Sends SIGINT to `snapfs ARGS` once it holds its lock; returns its exit code and stderr, or
/// None when it finished before the lock was seen.
fn interrupt_once_locked(s: &Snapfs, args: &[&std::ffi::OsStr]) -> Option<(Option<i32>, String)> {
    let mut c = s.command();
    c.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let locks = s.repo.join("locks");
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if fs::read_dir(&locks).map(|d| d.count()).unwrap_or(0) > 0 {
            break;
        }
        assert!(started.elapsed() < COMMAND_TIMEOUT, "no lock appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    sh("kill", &["-INT", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    Some((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn ctrl_c_in_restore_and_check_removes_the_lock() {
    let (_tmp, base, s) = setup();
    let data = base.join("data");
    fs::create_dir(&data).unwrap();
    for i in 0..6 {
        write_random(&data.join(format!("f{i}")), 32 * MIB, &mut Rng::new(10 + i));
    }
    s.backup([&data]);
    let target = base.join("r");
    let runs: [Vec<&std::ffi::OsStr>; 2] = [
        vec!["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()],
        vec!["check".as_ref(), "--read-data".as_ref()],
    ];
    for args in runs {
        let Some((code, err)) = interrupt_once_locked(&s, &args) else {
            eprintln!("{args:?} finished before its lock was seen; nothing to interrupt");
            continue;
        };
        assert_eq!(code, Some(130), "{args:?} after SIGINT:\n{err}");
        let left = fs::read_dir(s.repo.join("locks")).unwrap().count();
        assert_eq!(left, 0, "{args:?} left its lock after SIGINT:\n{err}");
    }
    s.ok(["check"]);
}

#[test]
fn usage_lines_show_only_what_is_required() {
    let help = |args: &[&str]| {
        let out = run_cmd(std::process::Command::new(bin()).args(args).env("SNAPFS_REPOSITORY", "/srv/r"));
        stdout_of(&out)
    };
    for cmd in ["restore", "backup", "check", "cat", "list", "snapshots"] {
        let text = help(&[cmd, "--help"]);
        let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap_or_else(|| panic!("{text}"));
        assert!(!usage.contains("--repo"), "{cmd}: {usage}");
        assert!(text.contains("Global options:") && !text.contains("[default: ]"), "{cmd}:\n{text}");
    }
    let restore = help(&["restore", "--help"]);
    assert!(
        restore.contains("[SNAPSHOT[:PATH]]"),
        "SNAPSHOT shown as required although --timestamp replaces it:\n{restore}"
    );
    assert!(help(&["--help"]).contains("-v, --verbose"), "no -v in the global options");
}
