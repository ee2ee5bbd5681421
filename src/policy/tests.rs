//! Cases worked out by hand from restic's rules (its `snapshot_policy.go`), in UTC.

use super::*;

fn snap(time: &str, tags: &[&str]) -> Snapshot {
    let t: Timestamp = time.parse().unwrap();
    Snapshot {
        time_ns: t.as_nanosecond() as i64,
        tree: Id::ZERO,
        parent: None,
        original: None,
        hostname: "h".into(),
        username: "u".into(),
        uid: 0,
        gid: 0,
        paths: vec!["/data".into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        description: String::new(),
        program_version: String::new(),
        summary: Default::default(),
    }
}

/// Snapshots named by their index: id = [i; 32].
fn list(times: &[&str]) -> Vec<(Id, Snapshot)> {
    times.iter().enumerate().map(|(i, t)| (Id([i as u8; 32]), snap(t, &[]))).collect()
}

fn kept(d: &Decision) -> Vec<u8> {
    d.keep.iter().map(|k| k.id.0[0]).collect()
}

fn run(snaps: &[(Id, Snapshot)], p: Policy) -> Decision {
    apply(snaps, &p, &TimeZone::UTC, "2030-01-01T00:00:00Z".parse().unwrap())
}

#[test]
fn keep_last_keeps_the_newest() {
    let s = list(&["2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z", "2026-01-03T10:00:00Z", "2026-01-04T10:00:00Z"]);
    let d = run(&s, Policy { last: 2, ..Default::default() });
    assert_eq!(kept(&d), [3, 2]);
    assert_eq!(d.remove.iter().map(|i| i.0[0]).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(d.keep[0].matches, ["last snapshot"]);
    assert_eq!(d.keep[1].counters[0], 0);
}

#[test]
fn daily_keeps_the_newest_of_each_day_and_the_oldest_while_counts_last() {
    let s = list(&[
        "2026-01-01T08:00:00Z",
        "2026-01-01T20:00:00Z",
        "2026-01-02T09:00:00Z",
        "2026-01-02T21:00:00Z",
        "2026-01-03T12:00:00Z",
    ]);
    // Two days' worth: the 3rd, then the newest of the 2nd; the count is spent, so not the oldest.
    assert_eq!(kept(&run(&s, Policy { daily: 2, ..Default::default() })), [4, 3]);
    // Ten: one per day (4, 3, 1), and the oldest snapshot (0) too, since counts are left.
    let d = run(&s, Policy { daily: 10, ..Default::default() });
    assert_eq!(kept(&d), [4, 3, 1, 0]);
    assert_eq!(d.keep[3].matches, ["oldest daily snapshot"]);
    assert_eq!(d.keep[2].counters[2], 7);
}

#[test]
fn unlimited_keeps_every_bucket() {
    let s = list(&["2026-01-01T08:00:00Z", "2026-01-01T20:00:00Z", "2026-02-02T09:00:00Z", "2026-03-01T00:00:00Z"]);
    assert_eq!(kept(&run(&s, Policy { monthly: UNLIMITED, ..Default::default() })), [3, 2, 1, 0]);
}

#[test]
fn weeks_are_iso_weeks_across_the_new_year() {
    // Thursday 2026-12-31 and Friday 2027-01-01 are both in ISO week 53 of 2026.
    let s = list(&["2026-12-31T10:00:00Z", "2027-01-01T10:00:00Z", "2027-01-04T10:00:00Z"]);
    assert_eq!(kept(&run(&s, Policy { weekly: 2, ..Default::default() })), [2, 1]);
}

#[test]
fn within_is_relative_to_the_newest_snapshot_not_to_now() {
    let s = list(&["2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z", "2026-01-09T12:00:00Z", "2026-01-10T00:00:00Z"]);
    let d = run(&s, Policy { within: Duration::parse("2d").unwrap(), ..Default::default() });
    // Strictly after 2026-01-08T00:00: the one exactly at the cut goes.
    assert_eq!(kept(&d), [3, 2]);
    assert_eq!(d.keep[1].matches, ["within 2d"]);
    assert_eq!(d.keep[1].expires, Some("2026-01-11T12:00:00Z".parse().unwrap()));
    let d = run(&s, Policy { within_daily: Duration::parse("1y").unwrap(), last: 1, ..Default::default() });
    assert_eq!(kept(&d), [3, 2, 1, 0]);
    assert_eq!(d.keep[0].matches, ["last snapshot", "daily within 1y"]);
    assert_eq!(d.keep[0].expires, None, "kept by a count: no expiry");
    assert_eq!(d.keep[3].matches, ["daily within 1y"]);
}

#[test]
fn tags_keep_without_counting() {
    let mut s = list(&["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]);
    s[0].1.tags = vec!["keep".into(), "x".into()];
    s[1].1.tags = vec!["keep".into()];
    let d = run(&s, Policy { tags: vec!["keep,x".into()], last: 1, ..Default::default() });
    assert_eq!(kept(&d), [2, 0]);
    assert_eq!(d.keep[1].matches, ["has tags [keep x]"]);
}

#[test]
fn a_snapshot_in_the_future_does_not_move_within() {
    let s = list(&["2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z", "2031-01-01T00:00:00Z"]);
    // Newest not in the future: 2026-01-05; 3d before it excludes the 1st.
    let d = run(&s, Policy { within: Duration::parse("3d").unwrap(), ..Default::default() });
    assert_eq!(kept(&d), [2, 1]);
}

#[test]
fn bad_input_is_refused() {
    for bad in ["7x", "", "d", "5", "1y-2m"] {
        assert!(Duration::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Duration::parse("1y5m7d2h").unwrap(), Duration { years: 1, months: 5, days: 7, hours: 2 });
    assert_eq!(Duration::parse("1y5m7d2h").unwrap().to_string(), "1y5m7d2h");
    assert!(Policy { daily: -2, ..Default::default() }.validate().is_err());
    assert!(Policy { daily: -1, ..Default::default() }.validate().is_ok());
    assert!(Policy::default().is_empty());
    assert!(!Policy { tags: vec!["a".into()], ..Default::default() }.is_empty());
    assert!(GroupBy::parse("host,nope").is_err());
    assert_eq!(GroupBy::parse("").unwrap(), GroupBy { host: false, paths: false, tags: false });
}
