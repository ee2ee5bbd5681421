//! `backup --stdin` and `--stdin-from-command`: the stream stored as one file at `/NAME`, and
//! a command that fails or does not exist leaves no snapshot.

mod common;
use common::*;
use std::fs::{self, File};

fn snapshot_count(s: &Snapfs) -> usize {
    s.snapshots(Vec::<String>::new()).len()
}

#[test]
fn standard_input_is_stored_as_one_file_named_as_asked() {
    let (_tmp, base, s) = setup();
    let data = base.join("data.bin");
    write_random(&data, 20 * MIB + 3, &mut Rng::new(5));
    for (name, args) in [("db.sql", vec!["--stdin", "--stdin-filename", "db.sql"]), ("stdin", vec!["--stdin"])] {
        let mut c = s.command();
        c.arg("backup").args(&args).stdin(File::open(&data).unwrap());
        let out = run_cmd(&mut c);
        assert!(out.status.success(), "{}", describe("backup --stdin", &out));
        let id = snapshot_id_from(&stdout_of(&out));
        let snap = s.snapshots(Vec::<String>::new()).into_iter().find(|v| v["id"] == id.as_str()).unwrap();
        assert_eq!(snap["paths"], serde_json::json!([format!("/{name}")]));
        assert_eq!(s.ok(["ls", &id[..8]]).lines().collect::<Vec<_>>(), [format!("/{name}")]);
        let dumped = s.run(["dump", &format!("{}:/{name}", &id[..8])]);
        assert!(dumped.stdout == fs::read(&data).unwrap(), "the stored stream differs from the input");
    }
}

#[test]
fn a_command_output_is_backed_up_and_a_failing_command_saves_nothing() {
    let (_tmp, _base, s) = setup();
    let id =
        s.backup(["--stdin-from-command", "--stdin-filename", "gen.txt", "--", "sh", "-c", "seq 1 200000; printf end"]);
    let dumped = s.run(["dump", &format!("{}:/gen.txt", &id[..8])]);
    let want: String = (1..=200_000).map(|i| format!("{i}\n")).collect::<String>() + "end";
    assert!(dumped.stdout == want.as_bytes(), "the command's output was not stored as printed");
    assert_eq!(snapshot_count(&s), 1);

    // Exits non-zero after a lot of output: the backup fails, no snapshot.
    let out = s.run(["backup", "--stdin-from-command", "--", "sh", "-c", "head -c 50M /dev/urandom; exit 3"]);
    assert!(!out.status.success(), "{}", describe("a failing command must fail the backup", &out));
    let line = assert_error_line(&out);
    assert!(line.contains("exit status: 3") && line.contains("no snapshot"), "{line}");
    assert_eq!(snapshot_count(&s), 1, "a snapshot was saved for a failed command");

    // A command that does not exist.
    let out = s.run(["backup", "--stdin-from-command", "--", "/no/such/program"]);
    assert!(!out.status.success(), "{}", describe("a missing command must fail the backup", &out));
    assert!(assert_error_line(&out).contains("/no/such/program"), "{}", describe("names the command", &out));
    assert_eq!(snapshot_count(&s), 1);

    // Nothing to run, or both sources at once: usage errors.
    for args in [vec!["backup", "--stdin-from-command"], vec!["backup", "--stdin", "/tmp"]] {
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&format!("{args:?}"), &out));
    }
}

#[test]
fn a_long_stream_is_not_held_in_memory() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        eprintln!("\n!!!!! WARNING: /usr/bin/time missing: stream memory is NOT tested !!!!!\n");
        return;
    }
    let (_tmp, base, s) = setup();
    // Zeros: cheap to chunk, so the test is fast; held whole they would be 400 MB of memory.
    let mut c = s.command();
    c.args(["backup", "--stdin-from-command", "--", "sh", "-c", "head -c 400M /dev/zero"]);
    let mut outer = std::process::Command::new("/usr/bin/time");
    outer.arg("-o").arg(base.join("rss-snapfs")).args(["-f", "%M"]).arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => outer.env(k, v),
            None => outer.env_remove(k),
        };
    }
    let out = run_cmd(&mut outer);
    assert!(out.status.success(), "{}", describe("backup of a 400 MB stream", &out));
    let kib: u64 = fs::read_to_string(base.join("rss-snapfs")).unwrap().trim().parse().unwrap();
    eprintln!("peak RSS of the backup of a 400 MB stream: {kib} KiB");
    assert!(kib < 300 * 1024, "peak RSS {kib} KiB for a 400 MB stream: it was held in memory");
    let ls = s.ok(["ls", "-l", "latest"]);
    assert!(ls.contains(&(400 * MIB).to_string()), "{ls}");
}
