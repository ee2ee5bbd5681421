//! Retention policies with restic's semantics exactly (restic `internal/data/snapshot_policy.go`),
//! so that a restic user's `--keep-*` options mean the same here: which snapshots of a group to
//! keep, and why. Pure: no I/O; `forget` applies the result.
//!
//! Buckets (hour, day, ISO week, month, year) are taken in the local time zone of the machine
//! running the command (`TZ` is honoured). On a day that has 23 or 25 hours (DST) a bucket is
//! still the civil day: two snapshots an hour apart across the change are in the same day.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime as Zoned};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;

/// restic's duration: years, months, days and hours, e.g. `1y5m7d2h`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Duration {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Duration {
    /// Parses `6y5m234d37h` (each unit at most once in practice; a later one wins, as restic).
    pub fn parse(s: &str) -> Result<Duration> {
        let bad = |why: &str| Error::Invalid(format!("bad duration {s:?}: {why} (use e.g. 1y5m7d2h)"));
        let mut d = Duration::default();
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad("empty"));
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: i32 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
            let unit = rest[digits..].chars().next().ok_or_else(|| bad(&format!("no unit after {n}")))?;
            match unit {
                'y' => d.years = n,
                'm' => d.months = n,
                'd' => d.days = n,
                'h' => d.hours = n,
                u => return Err(bad(&format!("unknown unit {u:?} after {n}"))),
            }
            rest = &rest[digits + 1..];
        }
        Ok(d)
    }

    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// `t` minus this duration, in the calendar of the local zone (as Go's AddDate).
    fn before(&self, t: &Zoned) -> Option<Zoned> {
        let span = self.years.years().months(self.months).days(self.days);
        t.checked_sub(span).ok()?.checked_sub(jiff::Span::new().hours(self.hours)).ok()
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, u) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

/// A count of `--keep-*`: `-1` keeps every bucket.
pub const UNLIMITED: i64 = -1;

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: i64,
    pub hourly: i64,
    pub daily: i64,
    pub weekly: i64,
    pub monthly: i64,
    pub yearly: i64,
    pub within: Duration,
    pub within_hourly: Duration,
    pub within_daily: Duration,
    pub within_weekly: Duration,
    pub within_monthly: Duration,
    pub within_yearly: Duration,
    /// Keep snapshots that have all tags of any one of these comma-separated lists.
    pub tags: Vec<String>,
}

impl Policy {
    /// Refuses negative counts other than -1 (restic's rule).
    pub fn validate(&self) -> Result<()> {
        for (name, n) in self.counts() {
            if n < UNLIMITED {
                return Err(Error::Invalid(format!(
                    "--keep-{name} {n}: negative values other than -1 are not allowed"
                )));
            }
        }
        let durations = [self.within, self.within_hourly, self.within_daily, self.within_weekly];
        if durations
            .iter()
            .chain([&self.within_monthly, &self.within_yearly])
            .any(|d| d.years < 0 || d.months < 0 || d.days < 0 || d.hours < 0)
        {
            return Err(Error::Invalid("durations of --keep-within* must not be negative".into()));
        }
        Ok(())
    }

    fn counts(&self) -> [(&'static str, i64); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }

    /// No rule at all: such a policy would remove everything, so `forget` refuses it.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
            && [self.within, self.within_hourly, self.within_daily, self.within_weekly, self.within_monthly]
                .iter()
                .chain([&self.within_yearly])
                .all(Duration::is_zero)
            && self.tags.is_empty()
    }
}

/// Why one snapshot is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub id: Id,
    /// restic's words: "last snapshot", "daily snapshot", "oldest monthly snapshot", "within 30d",
    /// "daily within 1y", "has tags [keep]".
    pub matches: Vec<String>,
    /// What is left of each count after this snapshot: last, hourly, daily, weekly, monthly, yearly.
    pub counters: [i64; 6],
    /// For snapshots kept only by `within` rules: when the newest of those rules stops keeping it.
    pub expires: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Newest first, with reasons.
    pub keep: Vec<Kept>,
    /// Newest first.
    pub remove: Vec<Id>,
}

type Bucket = fn(&Zoned, usize) -> i64;

fn hour(d: &Zoned, _: usize) -> i64 {
    i64::from(d.year()) * 1_000_000 + i64::from(d.month()) * 10_000 + i64::from(d.day()) * 100 + i64::from(d.hour())
}
fn day(d: &Zoned, _: usize) -> i64 {
    i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
}
fn week(d: &Zoned, _: usize) -> i64 {
    let w = d.date().iso_week_date();
    i64::from(w.year()) * 100 + i64::from(w.week())
}
fn month(d: &Zoned, _: usize) -> i64 {
    i64::from(d.year()) * 100 + i64::from(d.month())
}
fn year(d: &Zoned, _: usize) -> i64 {
    i64::from(d.year())
}
fn always(_: &Zoned, nr: usize) -> i64 {
    nr as i64
}

/// Applies `policy` to one group of snapshots, as restic does: newest first, each rule keeping
/// the newest snapshot of each of its next buckets while its count lasts, plus the oldest
/// snapshot when a count is still left; `within` rules relative to the newest snapshot that is
/// not in the future.
pub fn apply(group: &[(Id, Snapshot)], policy: &Policy, tz: &TimeZone, now: Timestamp) -> Decision {
    let mut list: Vec<&(Id, Snapshot)> = group.iter().collect();
    // Newest first; ties keep a stable order by id.
    list.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(a.0.cmp(&b.0)));
    let mut out = Decision::default();
    if list.is_empty() {
        return out;
    }
    let zoned = |ns: i64| {
        Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned_datetime(tz.clone())
    };
    let now_ns = now.as_nanosecond() as i64;
    let latest = list.iter().map(|(_, s)| s.time_ns).filter(|&t| t < now_ns).max().unwrap_or(0);
    let latest = zoned(latest);

    let mut counts: [(i64, Bucket, Option<i64>, &str); 6] = [
        (policy.last, always, None, "last snapshot"),
        (policy.hourly, hour, None, "hourly snapshot"),
        (policy.daily, day, None, "daily snapshot"),
        (policy.weekly, week, None, "weekly snapshot"),
        (policy.monthly, month, None, "monthly snapshot"),
        (policy.yearly, year, None, "yearly snapshot"),
    ];
    let mut within: [(Duration, Bucket, Option<i64>, &str); 5] = [
        (policy.within_hourly, hour, None, "hourly within"),
        (policy.within_daily, day, None, "daily within"),
        (policy.within_weekly, week, None, "weekly within"),
        (policy.within_monthly, month, None, "monthly within"),
        (policy.within_yearly, year, None, "yearly within"),
    ];
    let last_index = list.len() - 1;
    for (nr, (id, snap)) in list.iter().enumerate() {
        let t = zoned(snap.time_ns);
        let mut matches = Vec::new();
        // Expiry of a `within` rule: the time the newest snapshot would have to reach for this
        // one to fall out, i.e. this snapshot's time plus the duration.
        let mut expires: Option<Timestamp> = None;
        let mut only_within = true;
        for list in &policy.tags {
            let wanted: Vec<&str> = list.split(',').filter(|t| !t.is_empty()).collect();
            if !wanted.is_empty() && wanted.iter().all(|w| snap.tags.iter().any(|t| t == w)) {
                matches.push(format!("has tags [{}]", wanted.join(" ")));
                only_within = false;
            }
        }
        if !policy.within.is_zero() && policy.within.before(&latest).is_some_and(|cut| t.timestamp() > cut.timestamp())
        {
            matches.push(format!("within {}", policy.within));
            expires = expires.max(expiry(&t, &policy.within));
        }
        for (count, bucket, last, reason) in counts.iter_mut() {
            if *count > 0 || *count == UNLIMITED {
                let val = bucket(&t, nr);
                if Some(val) != *last || nr == last_index {
                    let oldest = Some(val) == *last && nr == last_index;
                    matches.push(if oldest { format!("oldest {reason}") } else { reason.to_string() });
                    *last = Some(val);
                    if *count > 0 {
                        *count -= 1;
                    }
                    only_within = false;
                }
            }
        }
        for (dur, bucket, last, reason) in within.iter_mut() {
            if dur.is_zero() {
                continue;
            }
            if dur.before(&latest).is_some_and(|cut| t.timestamp() > cut.timestamp()) {
                let val = bucket(&t, nr);
                if Some(val) != *last || nr == last_index {
                    let oldest = Some(val) == *last && nr == last_index;
                    let reason = if oldest { format!("oldest {reason}") } else { reason.to_string() };
                    matches.push(format!("{reason} {dur}"));
                    *last = Some(val);
                    expires = expires.max(expiry(&t, dur));
                }
            }
        }
        if matches.is_empty() {
            out.remove.push(*id);
        } else {
            let counters = [counts[0].0, counts[1].0, counts[2].0, counts[3].0, counts[4].0, counts[5].0];
            let expires = if only_within { expires } else { None };
            out.keep.push(Kept { id: *id, matches, counters, expires });
        }
    }
    out
}

fn expiry(t: &Zoned, d: &Duration) -> Option<Timestamp> {
    let span = d.years.years().months(d.months).days(d.days).hours(d.hours);
    t.checked_add(span).ok().map(|z| z.timestamp())
}

/// What snapshots are grouped by (restic's `--group-by`; default `host,paths`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    pub const DEFAULT: GroupBy = GroupBy { host: true, paths: true, tags: false };

    /// `host,paths,tags` in any order and subset; `''` for no grouping.
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy { host: false, paths: false, tags: false };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::Invalid(format!("unknown --group-by field {other:?}: use host, paths, tags")));
                }
            }
        }
        Ok(g)
    }

    /// The group key of a snapshot: host, sorted paths, sorted tags (those grouped by).
    pub fn key(&self, s: &Snapshot) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            host: if self.host { Some(s.hostname.clone()) } else { None },
            paths: if self.paths { Some(sorted(&s.paths)) } else { None },
            tags: if self.tags { Some(sorted(&s.tags)) } else { None },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub host: Option<String>,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// Snapshots by group key, in key order, each group oldest first.
pub fn group(snaps: &[(Id, Snapshot)], by: GroupBy) -> Vec<(GroupKey, Vec<(Id, Snapshot)>)> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = Default::default();
    for (id, s) in snaps {
        groups.entry(by.key(s)).or_default().push((*id, s.clone()));
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests;
