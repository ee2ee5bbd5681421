//! Backup jobs as a user runs them: a config file, `snapfs job run/status/retry/cancel/
//! schedule/drill`, checked through the repository (`snapshots --json`, `restore`), the status
//! file's JSON, the generated systemd units (with `systemd-analyze` where it exists) and the
//! metrics file (against the exposition format, with `promtool` where it exists).

mod common;
use common::*;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A repository, a state directory and a config file in one temporary directory.
struct Jobs {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    s: Snapfs,
    config: PathBuf,
}

impl Jobs {
    fn new() -> Jobs {
        let (tmp, base, s) = setup();
        let config = base.join("snapfs.toml");
        Jobs { _tmp: tmp, base, s, config }
    }

    /// Writes the config: `rest`, then the repository `main`.
    fn config(&self, rest: &str) {
        let text = format!("{rest}\n[repositories.main]\nrepository = '{}'\n", self.s.repo.display());
        fs::write(&self.config, text).unwrap();
    }

    fn command(&self) -> Command {
        let mut c = self.s.command();
        // UTC, as systemd-analyze is asked for in the timer test.
        c.env("XDG_STATE_HOME", self.base.join("state")).env("TZ", "UTC").env_remove("SNAPFS_CONFIG").arg("job");
        c.arg("--config").arg(&self.config);
        c
    }

    fn job(&self, args: &[&str]) -> Output {
        let mut c = self.command();
        c.args(args);
        run_cmd(&mut c)
    }

    fn job_ok(&self, args: &[&str]) -> String {
        let out = self.job(args);
        assert!(out.status.success(), "{}", describe(&format!("job {args:?}"), &out));
        stdout_of(&out)
    }

    fn status(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.job_ok(&["status", name, "--json"])).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        v[0].clone()
    }

    /// The source's entry in `job status --json`.
    fn source(&self, name: &str, source: &str) -> Value {
        let v = self.status(name);
        let found = v["sources"].as_array().unwrap().iter().find(|s| s["source"] == source).cloned();
        found.unwrap_or_else(|| panic!("no source {source} in {v}"))
    }

    /// Snapshots by their single path.
    fn snapshots_by_path(&self) -> BTreeMap<String, Vec<Value>> {
        let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for s in self.s.snapshots(Vec::<String>::new()) {
            let paths = s["paths"].as_array().unwrap();
            assert_eq!(paths.len(), 1, "a job's snapshot holds one source: {s}");
            m.entry(paths[0].as_str().unwrap().to_string()).or_default().push(s);
        }
        m
    }

    /// Starts `job run NAME` in the background, its output in files.
    fn spawn_run(&self, name: &str) -> std::process::Child {
        let mut c = self.command();
        c.args(["run", name]).stdout(Stdio::null()).stderr(fs::File::create(self.base.join("run.err")).unwrap());
        c.spawn().unwrap()
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the run did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_runs_keep_two_snapshots_per_source_with_the_hooks_output_in_them() {
    let j = Jobs::new();
    let (a, b) = (j.base.join("www"), j.base.join("etc"));
    make_files(&a, &[("index.html", b"<html>"), ("img/logo.png", &Rng::new(1).bytes(300_000))]);
    make_files(&b, &[("nginx.conf", b"server {}")]);
    let hook_log = j.base.join("hook.log");
    let metrics = j.base.join("metrics/snapfs.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    j.config(&format!(
        "metrics-file = '{metrics}'\n\n[jobs.web]\nrepository = \"main\"\nsources = ['{a}', '{b}']\n\
         tags = [\"web\"]\nkeep = {{ last = 2 }}\nexclude = [\"*.tmp\"]\n\
         before = \"date +%s%N > '{a}/state.dump'; echo $SNAPFS_JOB >> '{log}'\"\n\n\
         [[jobs.web.commands]]\nname = \"db.sql\"\ncommand = \"echo 'CREATE TABLE t;'; cat '{a}/state.dump'\"\n",
        metrics = metrics.display(),
        a = a.display(),
        b = b.display(),
        log = hook_log.display()
    ));
    fs::write(a.join("junk.tmp"), b"left out").unwrap();
    let mut dumps = Vec::new();
    for run in 1..=3 {
        let out = j.job_ok(&["run", "web"]);
        assert!(out.contains("job web: ok"), "run {run}: {out}");
        dumps.push(fs::read_to_string(a.join("state.dump")).unwrap());
    }
    assert_eq!(fs::read_to_string(&hook_log).unwrap(), "web\nweb\nweb\n", "the before hook runs once a run");
    assert_eq!(dumps.iter().collect::<HashSet<_>>().len(), 3, "each run dumps anew: {dumps:?}");

    let by_path = j.snapshots_by_path();
    let keys: Vec<&str> = by_path.keys().map(String::as_str).collect();
    let (sa, sb) = (a.display().to_string(), b.display().to_string());
    let mut want = vec!["/db.sql", sa.as_str(), sb.as_str()];
    want.sort();
    assert_eq!(keys, want, "one snapshot series per source");
    for (path, snaps) in &by_path {
        assert_eq!(snaps.len(), 2, "keep last 2 for {path}: {snaps:?}");
        for s in snaps {
            let tags: Vec<&str> = s["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            assert!(tags.contains(&"web") && tags.contains(&"job:web"), "{tags:?}");
        }
    }

    // The newest snapshots hold what the last run's hook wrote, and nothing excluded.
    let status = j.status("web");
    let latest = |path: &str| {
        by_path[path].iter().max_by_key(|s| s["time"].as_str().unwrap().to_string()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let restored = j.base.join("restored");
    j.s.restore(&format!("{}:{}", latest(&sa), sa), &restored.join("www"), &[]);
    assert_eq!(fs::read_to_string(restored.join("www/state.dump")).unwrap(), dumps[2]);
    assert!(!restored.join("www/junk.tmp").exists(), "exclude *.tmp");
    sh("diff", &[a.join("img"), restored.join("www/img")]);
    j.s.restore(&format!("{}:/db.sql", latest("/db.sql")), &restored.join("db"), &[]);
    assert_eq!(fs::read_to_string(restored.join("db/db.sql")).unwrap(), format!("CREATE TABLE t;\n{}", dumps[2]));

    // The status names those snapshots, in config order.
    let sources = status["sources"].as_array().unwrap();
    let names: Vec<&str> = sources.iter().map(|s| s["source"].as_str().unwrap()).collect();
    assert_eq!(names, [sa.as_str(), sb.as_str(), "command:db.sql"]);
    for (s, path) in sources.iter().zip([sa.as_str(), sb.as_str(), "/db.sql"]) {
        assert_eq!(s["state"], "updated", "{s}");
        assert_eq!(s["snapshot"].as_str().unwrap(), latest(path), "{s}");
        assert!(s["duration_s"].as_f64().is_some() && s["last_run"].is_string(), "{s}");
        assert!(s["error"].is_null(), "{s}");
    }
    assert_eq!(status["result"], "ok");

    let text = fs::read_to_string(&metrics).unwrap();
    let samples = check_exposition(&text);
    let get = |name: &str, labels: &str| samples.get(&(name.to_string(), labels.to_string())).copied();
    let l = format!("job=\"web\",source=\"{sa}\"");
    assert_eq!(get("snapfs_job_success", "job=\"web\""), Some(1.0), "{text}");
    assert_eq!(get("snapfs_source_errors", &l), Some(0.0), "{text}");
    assert_eq!(get("snapfs_source_state", &format!("{l},state=\"updated\"")), Some(1.0), "{text}");
    assert_eq!(get("snapfs_repository_snapshots", "repository=\"main\""), Some(6.0), "{text}");
    assert!(get("snapfs_repository_size_bytes", "repository=\"main\"").unwrap() > 300_000.0, "{text}");
    if have_tool("promtool") {
        let out = run_cmd(Command::new("promtool").args(["check", "metrics"]).stdin(fs::File::open(&metrics).unwrap()));
        assert!(out.status.success(), "{}", describe("promtool check metrics", &out));
    } else {
        eprintln!("promtool not installed: the metrics were checked against the exposition format by hand only");
    }
}

/// Parses a Prometheus text exposition strictly (HELP/TYPE before samples, one family's samples
/// together, names and labels by the grammar, no duplicate series); returns every sample.
fn check_exposition(text: &str) -> BTreeMap<(String, String), f64> {
    let is_name = |s: &str, colon: bool| {
        let mut c = s.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || (colon && f == ':'))
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || (colon && ch == ':'))
    };
    let mut typed: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current = String::new();
    let mut out = BTreeMap::new();
    assert!(text.ends_with('\n'), "the file must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let (kind, name) = (w.next().unwrap(), w.next().unwrap_or(""));
            assert!(is_name(name, true), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let t = w.next().unwrap_or("");
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&t), "{line:?}");
                assert!(typed.insert(name.to_string()), "TYPE given twice: {line:?}");
                assert!(!finished.contains(name), "TYPE after samples: {line:?}");
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.trim().is_empty(), "stray line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"))),
            None => (series, ""),
        };
        assert!(is_name(name, true), "bad name {name:?}");
        assert!(typed.contains(name), "sample before its TYPE: {line:?}");
        if name != current {
            assert!(finished.insert(name.to_string()), "samples of {name} are not together");
            current = name.to_string();
        }
        // label="value" pairs, values with \\ \" \n escapes only.
        let mut rest = labels;
        while !rest.is_empty() {
            let (lname, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
            assert!(is_name(lname, false), "bad label name {lname:?}");
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n'))), "{line:?}"),
                    Some((i, '"')) => break i,
                    Some(_) => {}
                    None => panic!("unterminated label value in {line:?}"),
                }
            };
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        assert!(out.insert((name.to_string(), labels.to_string()), value).is_none(), "duplicate series {line:?}");
    }
    out
}

#[test]
fn a_missing_source_is_in_error_and_retry_backs_up_only_it() {
    let j = Jobs::new();
    let (here, missing) = (j.base.join("here"), j.base.join("later"));
    make_files(&here, &[("a", b"a")]);
    let alert = j.base.join("alert.env");
    j.config(&format!(
        "[jobs.two]\nrepository = \"main\"\nsources = ['{}', '{}']\n\
         on-failure = \"env | grep ^SNAPFS_ | sort > '{}'\"\n",
        here.display(),
        missing.display(),
        alert.display()
    ));
    let out = j.job(&["run", "two"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe("a run with a missing source", &out));
    let err = j.source("two", &missing.display().to_string());
    assert_eq!(err["state"], "error", "{err}");
    assert!(err["error"].as_str().unwrap().contains("does not exist"), "{err}");
    assert_eq!(j.source("two", &here.display().to_string())["state"], "updated");
    let env = fs::read_to_string(&alert).expect("the on-failure hook ran");
    assert!(env.contains("SNAPFS_JOB=two\n"), "{env}");
    assert!(!env.contains("SNAPFS_PASSWORD"), "hooks do not see the password: {env}");
    assert!(env.contains(&format!("SNAPFS_SOURCE={}\n", missing.display())), "{env}");
    assert!(env.lines().any(|l| l.starts_with("SNAPFS_ERROR=") && l.contains("does not exist")), "{env}");
    let text = j.job_ok(&["status", "two"]);
    assert!(text.contains("  error:\n") && text.contains("  updated:\n"), "{text}");

    make_files(&missing, &[("b", b"b")]);
    fs::remove_file(&alert).unwrap();
    let out = j.job_ok(&["retry", "two"]);
    assert!(!out.contains(&format!("{}:", here.display())), "retry touches only the source in error: {out}");
    let by_path = j.snapshots_by_path();
    assert_eq!(by_path[&here.display().to_string()].len(), 1, "{by_path:?}");
    assert_eq!(by_path[&missing.display().to_string()].len(), 1, "{by_path:?}");
    assert_eq!(j.source("two", &missing.display().to_string())["state"], "updated");
    assert!(!alert.exists(), "no alert for a run that succeeded");
    assert!(j.job_ok(&["retry", "two"]).contains("nothing to retry"));
    assert_eq!(j.s.snapshots(Vec::<String>::new()).len(), 2, "a retry with nothing in error backs up nothing");
}

#[test]
fn a_failing_before_hook_backs_up_nothing() {
    let j = Jobs::new();
    let src = j.base.join("src");
    make_files(&src, &[("a", b"a")]);
    j.config(&format!(
        "[jobs.x]\nrepository = \"main\"\nsources = ['{}']\nbefore = \"echo dump failed >&2; exit 7\"\n",
        src.display()
    ));
    let out = j.job(&["run", "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("a failing before hook", &out));
    assert!(
        stderr_of(&out).contains("before hook") && stderr_of(&out).contains("exit status: 7"),
        "{}",
        stderr_of(&out)
    );
    assert!(j.s.snapshots(Vec::<String>::new()).is_empty());
    let s = j.source("x", &src.display().to_string());
    assert_eq!(s["state"], "error", "{s}");
    assert!(s["error"].as_str().unwrap().contains("before hook"), "{s}");
}

/// A job whose second source streams zeros until stopped; the first is saved before it.
fn streaming_job(j: &Jobs) -> (PathBuf, PathBuf) {
    let (src, mark) = (j.base.join("src"), j.base.join("streaming"));
    make_files(&src, &[("a", b"a")]);
    j.config(&format!(
        "[jobs.slow]\nrepository = \"main\"\nsources = ['{}']\n\n[[jobs.slow.commands]]\nname = \"zeros\"\n\
         command = \"touch '{}'; exec cat /dev/zero\"\n",
        src.display(),
        mark.display()
    ));
    (src, mark)
}

#[test]
fn a_killed_run_is_reported_interrupted_not_ongoing() {
    let j = Jobs::new();
    let (src, mark) = streaming_job(&j);
    let mut child = j.spawn_run("slow");
    wait_for(&mark);
    let during = j.source("slow", "command:zeros");
    assert_eq!(during["state"], "ongoing", "{during}");
    child.kill().unwrap();
    child.wait().unwrap();
    let after = j.source("slow", "command:zeros");
    assert_eq!(after["state"], "error", "{after}");
    assert_eq!(after["error"], "interrupted", "{after}");
    assert_eq!(j.source("slow", &src.display().to_string())["state"], "updated");
    assert_eq!(j.status("slow")["result"], "interrupted");
    assert!(j.job_ok(&["status", "slow"]).contains("error: interrupted"));
    let paths: Vec<String> = j.snapshots_by_path().into_keys().collect();
    assert_eq!(paths, [src.display().to_string()], "no snapshot of the killed source");
}

#[test]
fn cancel_stops_a_running_job_without_a_partial_snapshot() {
    let j = Jobs::new();
    let (src, mark) = streaming_job(&j);
    let out = j.job(&["cancel", "slow"]);
    assert_eq!(out.status.code(), Some(1), "cancel of a job not running fails");
    assert!(stderr_of(&out).contains("not running"), "{}", stderr_of(&out));
    let mut child = j.spawn_run("slow");
    wait_for(&mark);
    assert!(j.job_ok(&["cancel", "slow"]).contains("asked job slow"));
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(130), "{}", fs::read_to_string(j.base.join("run.err")).unwrap());
    let s = j.source("slow", "command:zeros");
    assert_eq!(s["state"], "error", "{s}");
    assert_eq!(s["error"], "cancelled", "{s}");
    assert_eq!(j.status("slow")["result"], "cancelled");
    let paths: Vec<String> = j.snapshots_by_path().into_keys().collect();
    assert_eq!(paths, [src.display().to_string()], "the cancelled source left no snapshot");
    j.s.ok(["check"]);
}

#[test]
fn parallel_jobs_overlap_and_priority_orders_runs() {
    let j = Jobs::new();
    let (a, b) = (j.base.join("a.started"), j.base.join("b.started"));
    // Each command waits (up to 20 s) for the other to start: only a parallel run finishes both.
    let wait = |me: &Path, other: &Path| {
        format!(
            "touch '{}'; for i in $(seq 400); do [ -e '{}' ] && echo ok && exit 0; sleep 0.05; done; exit 1",
            me.display(),
            other.display()
        )
    };
    j.config(&format!(
        "max-parallel = 2\n\n[jobs.low]\nrepository = \"main\"\npriority = 1\nexecution = \"parallel\"\n\n\
         [[jobs.low.commands]]\nname = \"a\"\ncommand = \"{}\"\n\n[[jobs.low.commands]]\nname = \"b\"\ncommand = \"{}\"\n\n\
         [jobs.high]\nrepository = \"main\"\npriority = 90\n\n[[jobs.high.commands]]\nname = \"c\"\ncommand = \"echo c\"\n",
        wait(&a, &b),
        wait(&b, &a)
    ));
    let out = j.job_ok(&["run", "low", "high"]);
    let (high, low) = (out.find("job high:").unwrap(), out.find("job low:").unwrap());
    assert!(high < low, "the higher priority runs first: {out}");
    assert!(out.contains("job low: ok"), "{out}");
    assert_eq!(j.snapshots_by_path().len(), 3);
}

#[test]
fn the_timer_carries_the_schedule_and_next_runs_agree_with_systemd() {
    let j = Jobs::new();
    let src = j.base.join("src");
    make_files(&src, &[("a", b"a")]);
    j.config(&format!(
        "[jobs.web]\nrepository = \"main\"\nsources = ['{s}']\nschedule = [\"Mon,Fri 15:00\", \"*-*-01 03:30:15\"]\n\n\
         [jobs.manual]\nrepository = \"main\"\nsources = ['{s}']\n",
        s = src.display()
    ));
    let units = j.base.join("units");
    fs::create_dir_all(&units).unwrap();
    fs::write(units.join("snapfs-job-mine.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();
    let out = j.job_ok(&["schedule", "--install", "--unit-dir", units.to_str().unwrap()]);
    assert!(out.contains("job manual has no schedule"), "{out}");
    let timer = fs::read_to_string(units.join("snapfs-job-web.timer")).unwrap();
    let service = fs::read_to_string(units.join("snapfs-job-web.service")).unwrap();
    let values = |text: &str, key: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(String::from).collect()
    };
    assert_eq!(values(&timer, "OnCalendar"), ["Mon,Fri 15:00", "*-*-01 03:30:15"], "{timer}");
    assert_eq!(values(&timer, "Persistent"), ["true"], "{timer}");
    assert_eq!(values(&timer, "WantedBy"), ["timers.target"], "{timer}");
    let exec = values(&service, "ExecStart").pop().unwrap();
    assert_eq!(exec, format!("{} job --config {} run web", bin(), j.config.display()), "{service}");
    assert_eq!(values(&service, "Type"), ["oneshot"]);
    assert!(!units.join("snapfs-job-manual.timer").exists());
    if have_tool("systemd-analyze") {
        let out = run_cmd(
            Command::new("systemd-analyze")
                .arg("verify")
                .arg("--man=no")
                .arg(units.join("snapfs-job-web.timer"))
                .arg(units.join("snapfs-job-web.service")),
        );
        assert!(out.status.success(), "{}", describe("systemd-analyze verify", &out));
        // The next run `job show` computes is the one systemd computes.
        let show: Value = serde_json::from_str(&j.job_ok(&["show", "web", "--json"])).unwrap();
        let ours: jiff::Timestamp = show["next_run"].as_str().unwrap().parse().unwrap();
        let mut theirs = Vec::new();
        for expr in ["Mon,Fri 15:00", "*-*-01 03:30:15"] {
            let out = run_cmd(Command::new("systemd-analyze").args(["calendar", expr]).env("TZ", "UTC"));
            let text = stdout_of(&out);
            let line = text.lines().find_map(|l| l.trim().strip_prefix("Next elapse: ")).unwrap().to_string();
            // "Fri 2026-12-04 15:00:00 UTC"
            let civil: jiff::civil::DateTime = line[4..23].parse().unwrap();
            theirs.push(civil.to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp());
        }
        assert_eq!(ours, theirs.into_iter().min().unwrap(), "{show}");
    } else {
        eprintln!("systemd-analyze not installed: the units were checked by parsing only");
    }
    let out = j.job_ok(&["schedule", "--uninstall", "--unit-dir", units.to_str().unwrap()]);
    assert_eq!(out.matches("removed").count(), 2, "{out}");
    let left: Vec<String> =
        fs::read_dir(&units).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["snapfs-job-mine.timer"], "a unit snapfs did not write stays");
}

#[test]
fn bad_configs_name_the_file_line_and_key_before_anything_runs() {
    let j = Jobs::new();
    let ran = j.base.join("ran");
    let head = format!("[jobs.x]\nrepository = \"main\"\nsources = ['/']\nbefore = \"touch '{}'\"\n", ran.display());
    for (body, line, key, words) in [
        ("schedul = \"daily\"\n", 5, "jobs.x.schedul", "unknown field"),
        ("schedule = [\"daily\", \"Mon,Fry 15:00\"]\n", 5, "jobs.x.schedule", "Fry"),
        ("schedule = \"25:00\"\n", 5, "jobs.x.schedule", "hour 25"),
        ("keep = { last = 2, dayly = 1 }\n", 5, "jobs.x.keep.dayly", "unknown field"),
        ("priority = 100\n", 5, "jobs.x.priority", "0-99"),
        ("check = \"five percent\"\n", 5, "jobs.x.check", "N%"),
        (
            "\n[jobs.y]\nrepository = \"backup\"\nsources = ['/']\n",
            7,
            "jobs.y.repository",
            "no repository named \"backup\"",
        ),
        ("\n[[jobs.x.commands]]\nname = \"a\"\ncmd = \"b\"\n", 8, "jobs.x.commands.0.cmd", "unknown field"),
    ] {
        j.config(&format!("{head}{body}"));
        let out = j.job(&["run", "x"]);
        let err = stderr_of(&out);
        let want = format!("{}:{line}: {key}: ", j.config.display());
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&want) && err.contains(words), "want {want:?} … {words:?}, got: {err}");
        assert!(!ran.exists(), "nothing runs with a bad config: {body}");
    }
    // Found through SNAPFS_CONFIG, then XDG_CONFIG_HOME, when --config is not given.
    j.config(&head);
    let mut c = j.s.command();
    c.env("XDG_STATE_HOME", j.base.join("state")).env("SNAPFS_CONFIG", &j.config).args(["job", "list"]);
    assert!(stdout_of(&run_cmd(&mut c)).contains("\nx "));
    let xdg = j.base.join("xdg");
    fs::create_dir_all(xdg.join("snapfs")).unwrap();
    fs::copy(&j.config, xdg.join("snapfs/snapfs.toml")).unwrap();
    let mut c = j.s.command();
    c.env("XDG_STATE_HOME", j.base.join("state")).env_remove("SNAPFS_CONFIG").env("XDG_CONFIG_HOME", &xdg);
    let out = run_cmd(c.args(["job", "list"]));
    assert!(stdout_of(&out).contains("\nx "), "{}", describe("job list from XDG_CONFIG_HOME", &out));
}

#[test]
fn a_drill_restores_verifies_and_times_every_source() {
    let j = Jobs::new();
    let src = j.base.join("src");
    make_files(&src, &[("a", b"alpha"), ("d/b", &Rng::new(7).bytes(200_000))]);
    j.config(&format!(
        "[jobs.d]\nrepository = \"main\"\nsources = ['{}']\n\n[[jobs.d.commands]]\nname = \"list\"\ncommand = \"echo one two\"\n",
        src.display()
    ));
    j.job_ok(&["run", "d"]);
    let scratch = j.base.join("scratch");
    let out = j.job_ok(&["drill", "d", "--target", scratch.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["sources"][0]["files"], 2, "{v}");
    assert_eq!(v["sources"][0]["verified"], 2, "{v}");
    assert_eq!(v["sources"][1]["verified"], 1, "{v}");
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "the scratch copy is removed");
    let drill = &j.status("d")["last_drill"];
    assert_eq!(drill["ok"], true, "{drill}");
    assert!(drill["duration_s"].as_f64().unwrap() > 0.0, "{drill}");
    assert!(j.job_ok(&["status", "d"]).contains("last drill:"));

    fs::write(src.join("a"), b"changed").unwrap();
    let out = j.job(&["drill", "d", "--target", scratch.to_str().unwrap(), "--compare-source"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("a drill against a changed source", &out));
    assert!(stderr_of(&out).contains(&format!("M {}", src.join("a").display())), "{}", stderr_of(&out));
    assert_eq!(j.status("d")["last_drill"]["ok"], false);
}

#[test]
fn the_readme_example_config_is_accepted_key_for_key() {
    let j = Jobs::new();
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("### The config file").expect("a config section in the README")..];
    let start = section.find("```toml\n").unwrap() + 8;
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let list = j.base.join("web.list");
    fs::write(&list, "/srv/extra\n# a comment\n").unwrap();
    let text = example
        .replace("/etc/snapfs/web.list", list.to_str().unwrap())
        .replace("\"/var/lib/snapfs\"", &format!("'{}'", j.base.join("state").display()));
    fs::write(&j.config, text).unwrap();
    let v: Value = serde_json::from_str(&j.job_ok(&["show", "web", "--json"])).unwrap();
    assert_eq!(v["priority"], 7, "{v}");
    assert_eq!(v["schedule"], serde_json::json!(["Mon,Fri 15:00"]), "{v}");
    assert_eq!(v["repository"]["location"], "/srv/backup", "{v}");
    let sources: Vec<&str> = v["sources"].as_array().unwrap().iter().map(|s| s["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["/srv/www", "/etc/nginx", "/srv/extra", "command:db.sql"], "{v}");
    assert!(v["next_run"].is_string(), "{v}");
}
