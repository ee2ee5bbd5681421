//! Points in time as users type them (`restore --timestamp`, `backup --time`).
//!
//! Accepted: RFC 3339 with an offset or `Z` (`2026-11-23T14:05:09Z`), or local civil time as
//! `YYYY-MM-DD`, `YYYY-MM-DD HH:MM` or `YYYY-MM-DD HH:MM:SS` (a `T` may replace the space).
//! A civil time given to a precision covers that whole unit: `2026-11-20` means the end of that
//! day and `2026-11-20 14:05` the end of that minute, so "the state as of T" includes snapshots
//! taken during it.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::error::{Error, Result};

/// Parses a time, giving the *last* nanosecond it covers (see the module docs).
pub fn parse_until(s: &str) -> Result<Timestamp> {
    parse(s, true)
}

/// Parses a time, giving its first nanosecond (for `backup --time`).
pub fn parse_at(s: &str) -> Result<Timestamp> {
    parse(s, false)
}

fn parse(s: &str, until: bool) -> Result<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        // Given to the second, it covers that whole second, as the civil forms do: a time
        // `snapshots` printed must find that snapshot.
        let whole_seconds = !s.contains('.') && !s.contains(',');
        if until && whole_seconds {
            return Ok(t.checked_add(999_999_999.nanoseconds()).unwrap_or(t));
        }
        return Ok(t);
    }
    let bad = || {
        Error::Invalid(format!(
            "cannot parse time {s:?}: use RFC 3339 (2026-11-23T14:05:09Z, or with an offset) or local time as YYYY-MM-DD[ HH:MM[:SS]]"
        ))
    };
    let norm = s.replacen('T', " ", 1);
    let (date, time) = norm.split_once(' ').map_or((norm.as_str(), None), |(d, t)| (d, Some(t.trim())));
    let date: jiff::civil::Date = date.parse().map_err(|_| bad())?;
    let (dt, span) = match time {
        None => (date.to_datetime(jiff::civil::Time::midnight()), 1.day()),
        Some(t) => {
            let colons = t.matches(':').count();
            if !(1..=2).contains(&colons) || t.contains('.') {
                return Err(bad());
            }
            let tm: jiff::civil::Time = t.parse().map_err(|_| bad())?;
            (DateTime::from_parts(date, tm), if colons == 1 { 1.minute() } else { 1.second() })
        }
    };
    let start = match dt.to_zoned_datetime(TimeZone::system()) {
        Ok(z) => z,
        // jiff's instants end a day early (9999-12-30T22:00Z, room for offsets): a time past
        // that is, for "at or before", the end of time.
        Err(_) if until && date.year() == 9999 => return Ok(Timestamp::MAX),
        Err(_) => return Err(bad()),
    };
    if !until {
        return Ok(start.timestamp());
    }
    // The end of the last day there is (9999-12-31) is the last instant there is.
    match start.checked_add(span) {
        Ok(end) => Ok(end.timestamp() - 1.nanosecond()),
        Err(_) => Ok(Timestamp::MAX),
    }
}

/// Formats nanoseconds since the epoch in the local time zone, to the second.
pub fn local(ns: i64) -> String {
    match Timestamp::from_nanosecond(ns as i128) {
        Ok(t) => t.to_zoned_datetime(TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

/// The zone [`local`] shows times in, for a table to say: `Europe/Berlin, UTC+01` or `UTC`.
pub fn zone_name() -> String {
    let tz = TimeZone::system();
    let offset = tz.to_offset(Timestamp::now());
    let utc = if offset.seconds() == 0 { "UTC".to_string() } else { format!("UTC{offset}") };
    match tz.iana_name() {
        Some(name) if name != "UTC" && name != "Etc/UTC" => format!("{name}, {utc}"),
        _ => utc,
    }
}

/// RFC 3339 in UTC with nanoseconds, for JSON.
pub fn rfc3339(ns: i64) -> String {
    Timestamp::from_nanosecond(ns as i128).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_covers_its_precision() {
        let t = parse_until("2026-11-23T14:05:09Z").unwrap();
        assert_eq!((t.as_second(), t.subsec_nanosecond()), (1_795_442_709, 999_999_999));
        let t = parse_until("2026-11-23T15:05:09+01:00").unwrap();
        assert_eq!(t.as_second(), 1_795_442_709);
        let t = parse_until("2026-11-23T14:05:09.5Z").unwrap();
        assert_eq!(t.subsec_nanosecond(), 500_000_000);
        assert_eq!(parse_at("2026-11-23T14:05:09Z").unwrap().subsec_nanosecond(), 0);
    }

    #[test]
    fn the_last_day_there_is_parses() {
        assert_eq!(parse_until("9999-12-31").unwrap(), Timestamp::MAX);
    }

    #[test]
    fn civil_times_cover_their_unit() {
        let day_start = parse_at("2026-11-23").unwrap();
        let day_end = parse_until("2026-11-23").unwrap();
        assert_eq!((day_end - day_start).as_hours(), 23);
        let m = parse_until("2026-11-23 14:05").unwrap();
        assert_eq!((m - parse_at("2026-11-23 14:05").unwrap()).as_secs(), 59);
        let s = parse_until("2026-11-23 14:05:09").unwrap();
        assert_eq!(s.subsec_nanosecond(), 999_999_999);
    }

    #[test]
    fn garbage_is_refused() {
        for s in ["", "yesterday", "2026-13-01", "2026-11-23 25:00", "2026-11-23 14"] {
            assert!(parse_until(s).is_err(), "{s}");
        }
    }
}
