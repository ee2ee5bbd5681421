//! The subset of systemd's `OnCalendar=` syntax a job's `schedule` accepts, and the next time it
//! fires. The expression is handed to systemd unchanged in the timer, so anything accepted here
//! must mean the same to systemd; the next-run time shown by `job list` is computed here (in the
//! local time zone, as systemd does without a zone suffix) so it works without systemd.
//!
//! Accepted: the shorthands `minutely hourly daily weekly monthly yearly annually`, and
//! `[WEEKDAYS] [YEAR-MONTH-DAY] [HOUR:MINUTE[:SECOND]]` where weekdays are `Mon`..`Sun` (or
//! full names) as lists and ranges (`Mon,Fri`, `Mon..Fri`), and every numeric field is `*`, a
//! number, a list (`1,15`), a range (`1..5`) or a repetition (`*/15`, `0/6`).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed calendar expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Days of the week allowed, Monday = 0; all when empty.
    weekdays: Vec<u8>,
    /// `None`: any year.
    years: Option<Vec<u32>>,
    months: Vec<u32>,
    days: Vec<u32>,
    hours: Vec<u32>,
    minutes: Vec<u32>,
    seconds: Vec<u32>,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl Calendar {
    pub fn parse(expr: &str) -> Result<Calendar, String> {
        let e = expr.trim();
        let shorthand = match e.to_ascii_lowercase().as_str() {
            "minutely" => Some("*-*-* *:*:00"),
            "hourly" => Some("*-*-* *:00:00"),
            "daily" => Some("*-*-* 00:00:00"),
            "weekly" => Some("Mon *-*-* 00:00:00"),
            "monthly" => Some("*-*-01 00:00:00"),
            "yearly" | "annually" => Some("*-01-01 00:00:00"),
            _ => None,
        };
        let e = shorthand.unwrap_or(e);
        if e.is_empty() {
            return Err("an empty schedule".into());
        }
        let mut cal = Calendar {
            weekdays: Vec::new(),
            years: None,
            months: (1..=12).collect(),
            days: (1..=31).collect(),
            hours: vec![0],
            minutes: vec![0],
            seconds: vec![0],
        };
        let mut parts: Vec<&str> = e.split_whitespace().collect();
        if parts.first().is_some_and(|p| p.starts_with(|c: char| c.is_ascii_alphabetic())) {
            cal.weekdays = weekdays(parts.remove(0))?;
        }
        let (mut date, mut time) = (None, None);
        for p in parts {
            if p.contains(':') && time.is_none() {
                time = Some(p);
            } else if p.contains('-') && date.is_none() && time.is_none() {
                date = Some(p);
            } else {
                return Err(format!("unexpected {p:?} (use e.g. \"Mon,Fri 15:00\" or \"*-*-* 03:00\")"));
            }
        }
        if let Some(d) = date {
            let f: Vec<&str> = d.split('-').collect();
            let [y, m, day] = f[..] else { return Err(format!("{d:?}: a date is YEAR-MONTH-DAY")) };
            cal.years = if y == "*" { None } else { Some(field(y, 1970, 2199, "year")?) };
            cal.months = field(m, 1, 12, "month")?;
            cal.days = field(day, 1, 31, "day")?;
        }
        if let Some(t) = time {
            let f: Vec<&str> = t.split(':').collect();
            let (h, m, s) = match f[..] {
                [h, m] => (h, m, "0"),
                [h, m, s] => (h, m, s),
                _ => return Err(format!("{t:?}: a time is HH:MM or HH:MM:SS")),
            };
            cal.hours = field(h, 0, 23, "hour")?;
            cal.minutes = field(m, 0, 59, "minute")?;
            cal.seconds = field(s, 0, 59, "second")?;
        } else if date.is_none() && cal.weekdays.is_empty() {
            return Err(format!("{expr:?} is not a calendar expression"));
        }
        Ok(cal)
    }

    /// The first time after `after` that the expression matches, in zone `tz`; `None` when
    /// it never does again (a past year, or the 31st of February).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned_datetime(tz.clone()).date();
        // Eight years cover every combination of weekday and leap day.
        for offset in 0..(366 * 8) {
            let day = start.checked_add(offset.days()).ok()?;
            if !self.matches_day(day) {
                continue;
            }
            for &h in &self.hours {
                for &m in &self.minutes {
                    for &s in &self.seconds {
                        let dt = DateTime::from_parts(day, jiff::civil::time(h as i8, m as i8, s as i8, 0));
                        // In a DST gap, the instant after it, as systemd does.
                        let Ok(t) = tz.to_ambiguous_timestamp(dt).compatible() else { continue };
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
        }
        None
    }

    fn matches_day(&self, d: Date) -> bool {
        let wd = d.weekday().to_monday_zero_offset() as u8;
        (self.weekdays.is_empty() || self.weekdays.contains(&wd))
            && self.years.as_ref().is_none_or(|y| y.contains(&(d.year() as u32)))
            && self.months.contains(&(d.month() as u32))
            && self.days.contains(&(d.day() as u32))
    }
}

fn weekday(name: &str) -> Result<u8, String> {
    let n = name.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .position(|w| *w == n)
        .or_else(|| LONG_WEEKDAYS.iter().position(|w| *w == n))
        .map(|i| i as u8)
        .ok_or_else(|| format!("{name:?} is not a day of the week (Mon..Sun)"))
}

/// `Mon,Wed..Fri`.
fn weekdays(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        match item.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (weekday(a)?, weekday(b)?);
                if a > b {
                    return Err(format!("{item:?}: a range of days goes forward (Mon..Fri)"));
                }
                out.extend(a..=b);
            }
            None => out.push(weekday(item)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One numeric field: `*`, `5`, `1,15`, `1..5`, `*/15`, `0/6`.
fn field(s: &str, lo: u32, hi: u32, what: &str) -> Result<Vec<u32>, String> {
    let num = |t: &str| -> Result<u32, String> {
        let n: u32 = t.parse().map_err(|_| format!("{t:?} is not a valid {what}"))?;
        if n < lo || n > hi {
            return Err(format!("{what} {n} is out of range ({lo}-{hi})"));
        }
        Ok(n)
    };
    let mut out = Vec::new();
    for item in s.split(',') {
        if let Some((start, step)) = item.split_once('/') {
            let start = if start == "*" { lo } else { num(start)? };
            let step: u32 = step.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("bad repetition {item:?}"))?;
            out.extend((start..=hi).step_by(step as usize));
        } else if item == "*" {
            out.extend(lo..=hi);
        } else if let Some((a, b)) = item.split_once("..") {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("{item:?}: a range goes forward"));
            }
            out.extend(a..=b);
        } else {
            out.push(num(item)?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, after: &str) -> String {
        let tz = TimeZone::UTC;
        let t: Timestamp = after.parse().unwrap();
        Calendar::parse(expr).unwrap().next_after(t, &tz).map(|t| t.to_string()).unwrap_or_default()
    }

    #[test]
    fn next_runs_follow_systemd() {
        // 2026-12-02 is a Wednesday.
        assert_eq!(next("Mon,Fri 15:00", "2026-12-02T10:00:00Z"), "2026-12-04T15:00:00Z");
        assert_eq!(next("Mon..Wed 15:00", "2026-12-02T10:00:00Z"), "2026-12-02T15:00:00Z");
        assert_eq!(next("*-*-* 03:00", "2026-12-02T03:00:00Z"), "2026-12-03T03:00:00Z");
        assert_eq!(next("daily", "2026-12-02T10:00:00Z"), "2026-12-03T00:00:00Z");
        assert_eq!(next("weekly", "2026-12-02T10:00:00Z"), "2026-12-07T00:00:00Z");
        assert_eq!(next("monthly", "2026-12-02T10:00:00Z"), "2027-01-01T00:00:00Z");
        assert_eq!(next("hourly", "2026-12-02T10:00:00Z"), "2026-12-02T11:00:00Z");
        assert_eq!(next("*:0/15", "2026-12-02T10:07:00Z"), "2026-12-02T10:15:00Z");
        assert_eq!(next("*-02-29 12:00:30", "2026-12-02T10:00:00Z"), "2028-02-29T12:00:30Z");
        assert_eq!(next("2020-*-* 00:00", "2026-12-02T10:00:00Z"), "");
    }

    #[test]
    fn bad_expressions_say_why() {
        for (e, why) in [
            ("Mon,Fry 15:00", "not a day of the week"),
            ("25:00", "hour 25 is out of range"),
            ("every day", "not a day of the week"),
            ("*-13-* 00:00", "month 13"),
            ("15:00 extra", "unexpected"),
            ("", "empty"),
        ] {
            let err = Calendar::parse(e).unwrap_err();
            assert!(err.contains(why), "{e:?}: {err}");
        }
    }
}
