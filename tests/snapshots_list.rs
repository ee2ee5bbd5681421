//! `snapfs snapshots` with `--group-by`, `--since` and `--until`.

mod common;
use common::*;
use std::fs;

#[test]
fn snapshots_grouped_and_by_time() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let mut s = Snapfs::new(base.join("repo"));
    s.env.push(("TZ".into(), "UTC".into()));
    s.init();
    let (a, b) = (base.join("a"), base.join("b"));
    for d in [&a, &b] {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join("f"), d.to_str().unwrap()).unwrap();
    }
    let mut ids = Vec::new();
    for (day, host, dir, tag) in [(1, "h1", &a, "x"), (2, "h2", &a, ""), (3, "h1", &b, ""), (4, "h1", &a, "x")] {
        let mut args: Vec<String> =
            vec!["--host".into(), host.into(), "--time".into(), format!("2026-01-0{day}T12:00:00Z")];
        if !tag.is_empty() {
            args.extend(["--tag".into(), tag.into()]);
        }
        args.push(dir.display().to_string());
        ids.push(s.backup(&args));
    }
    let group_ids = |args: &[&str]| -> Vec<(serde_json::Value, Vec<String>)> {
        s.snapshots(args)
            .iter()
            .map(|g| {
                let members = g["snapshots"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string());
                (g["group_key"].clone(), members.collect())
            })
            .collect()
    };
    let by_host = group_ids(&["--group-by", "host"]);
    assert_eq!(
        by_host,
        [
            (serde_json::json!({"hostname": "h1"}), vec![ids[0].clone(), ids[2].clone(), ids[3].clone()]),
            (serde_json::json!({"hostname": "h2"}), vec![ids[1].clone()]),
        ]
    );
    let (pa, pb) = (a.display().to_string(), b.display().to_string());
    let by_both = group_ids(&["--group-by", "host,paths"]);
    assert_eq!(by_both.len(), 3);
    assert_eq!(
        by_both[0],
        (serde_json::json!({"hostname": "h1", "paths": [pa]}), vec![ids[0].clone(), ids[3].clone()])
    );
    assert_eq!(by_both[2].0, serde_json::json!({"hostname": "h1", "paths": [pb]}));
    let by_tags = group_ids(&["--group-by", "tags", "--last", "1"]);
    assert_eq!(
        by_tags,
        [
            (serde_json::json!({"tags": ["x"]}), vec![ids[3].clone()]),
            (serde_json::json!({"tags": []}), vec![ids[2].clone()])
        ]
    );

    let ids_of = |args: &[&str]| -> Vec<String> {
        s.snapshots(args).iter().map(|v| v["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids_of(&["--since", "2026-01-02", "--until", "2026-01-03"]), [ids[1].clone(), ids[2].clone()]);
    assert_eq!(ids_of(&["--since", "2026-01-03T12:00:00Z"]), [ids[2].clone(), ids[3].clone()]);
    assert_eq!(ids_of(&["--until", "2026-01-01T12:00:00Z"]), [ids[0].clone()]);

    let text = s.ok(["snapshots", "--group-by", "host"]);
    assert!(
        text.contains("snapshots for hostname \"h1\":") && text.contains("snapshots for hostname \"h2\":"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("id ") && l.contains("added")), "{text}");
    assert!(text.trim_end().lines().last().unwrap().starts_with("4 snapshots; times in the local zone ("), "{text}");
}
