//! Update windows (`tagwatch.dev/window: "Mon-Fri 09:00-16:00, Sat 10:00-12:00"` with
//! `tagwatch.dev/window-timezone: Europe/Berlin`): when an update may start. Pure: a time comes
//! in, whether the window is open and when it next opens go out.

use std::fmt;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// One range: on these days, from `start` to `end` minutes after local midnight. An `end` not
/// after `start` runs past midnight into the next day (`22:00-02:00`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    /// Indexed Monday = 0.
    days: [bool; 7],
    start: u16,
    end: u16,
}

/// `tagwatch.dev/window` in its time zone.
#[derive(Debug, Clone)]
pub struct Window {
    ranges: Vec<Range>,
    tz: TimeZone,
    text: String,
    tz_name: String,
}

impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.ranges == other.ranges && self.tz_name == other.tz_name
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.tz_name)
    }
}

fn day_index(text: &str) -> Result<usize, String> {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = text.trim().to_ascii_lowercase();
    (0..7)
        .find(|&i| lower == DAYS[i].0 || lower == FULL[i])
        .ok_or_else(|| format!("`{text}` is not a day (Mon … Sun)"))
}

fn minutes(text: &str, end: bool) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time like 09:00");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && (m != 0 || !end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

impl Window {
    /// Parses the window and its time zone (an IANA name; `None`: UTC).
    pub fn parse(text: &str, tz_name: Option<&str>) -> Result<Window, String> {
        let tz_name = tz_name
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("UTC");
        let tz = if tz_name.eq_ignore_ascii_case("utc") {
            TimeZone::UTC
        } else {
            TimeZone::get(tz_name).map_err(|_| {
                format!("`{tz_name}` is not a time zone (an IANA name like Europe/Berlin)")
            })?
        };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (days, times) = match part.rsplit_once(' ') {
                Some((days, times)) => (Some(days.trim()), times),
                None => (None, part),
            };
            let mut mask = [days.is_none(); 7];
            if let Some(days) = days {
                match days.split_once('-') {
                    Some((from, to)) => {
                        let (from, to) = (day_index(from)?, day_index(to)?);
                        let mut day = from;
                        loop {
                            mask[day] = true;
                            if day == to {
                                break;
                            }
                            day = (day + 1) % 7;
                        }
                    }
                    None => mask[day_index(days)?] = true,
                }
            }
            let (start, end) = times
                .split_once('-')
                .ok_or_else(|| format!("`{part}` has no time range like 09:00-16:00"))?;
            let (start, end) = (minutes(start, false)?, minutes(end, true)?);
            if start == end {
                return Err(format!("`{part}` is an empty range"));
            }
            ranges.push(Range {
                days: mask,
                start,
                end,
            });
        }
        if ranges.is_empty() {
            return Err("names no range: expected e.g. `Mon-Fri 09:00-16:00`".into());
        }
        Ok(Window {
            ranges,
            tz,
            text: text.trim().to_string(),
            tz_name: tz_name.to_string(),
        })
    }

    /// Whether an update may start at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.tz.clone());
        let day = index(local.weekday());
        let yesterday = (day + 6) % 7;
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        self.ranges.iter().any(|r| {
            if r.start < r.end {
                r.days[day] && minute >= r.start && minute < r.end
            } else {
                (r.days[day] && minute >= r.start) || (r.days[yesterday] && minute < r.end)
            }
        })
    }

    /// When the window next opens at or after `at` (`at` itself when open). Looks a week and a
    /// day ahead, which every window opens within.
    pub fn next_opening(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) {
            return Some(at);
        }
        let today: Date = at.to_zoned(self.tz.clone()).date();
        let mut best: Option<Timestamp> = None;
        for offset in 0..=8i64 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            let day = index(date.weekday());
            for range in self.ranges.iter().filter(|r| r.days[day]) {
                let Ok(time) = Time::new((range.start / 60) as i8, (range.start % 60) as i8, 0, 0)
                else {
                    continue;
                };
                // A start inside a daylight-saving gap opens at the first valid instant after it.
                let Ok(opening) = self.tz.to_zoned(date.to_datetime(time)) else {
                    continue;
                };
                let opening = opening.timestamp();
                if opening > at && best.is_none_or(|b| opening < b) {
                    best = Some(opening);
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn windows_parse() {
        assert!(Window::parse("Mon-Fri 09:00-16:00", None).is_ok());
        assert!(Window::parse(
            "mon-fri 09:00-16:00, Saturday 10:00-12:00",
            Some("Europe/Berlin")
        )
        .is_ok());
        assert!(Window::parse("22:00-02:00", None).is_ok());
        assert!(Window::parse("Fri-Mon 00:00-24:00", None).is_ok());
        for bad in [
            "",
            "Mon-Fri",
            "Mon-Fri 9-16",
            "Mon-Fri 09:00-09:00",
            "Funday 09:00-10:00",
            "Mon 25:00-26:00",
            "Mon 09:00-24:30",
            "Mon 24:00-01:00",
            "Mo 09:00-10:00",
        ] {
            assert!(Window::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Window::parse("Mon 09:00-10:00", Some("Mars/Olympus")).is_err());
    }

    /// Open or not, and the next opening, across a day boundary, a weekend, midnight-crossing
    /// ranges and a time zone (Berlin is UTC+1 in January, UTC+2 in July).
    #[test]
    fn open_and_next_opening() {
        let office = Window::parse("Mon-Fri 09:00-16:00", Some("Europe/Berlin")).unwrap();
        #[rustfmt::skip]
        let rows: &[(&Window, &str, bool, &str)] = &[
            // 2026-01-05 is a Monday.
            (&office, "2026-01-05T08:30:00Z", true, "2026-01-05T08:30:00Z"),  // 09:30 Berlin
            (&office, "2026-01-05T07:59:00Z", false, "2026-01-05T08:00:00Z"), // 08:59 Berlin
            (&office, "2026-01-05T15:00:00Z", false, "2026-01-06T08:00:00Z"), // 16:00 Berlin: closed
            (&office, "2026-01-09T16:00:00Z", false, "2026-01-12T08:00:00Z"), // Friday evening → Monday
            (&office, "2026-01-10T12:00:00Z", false, "2026-01-12T08:00:00Z"), // Saturday
            (&office, "2026-07-06T07:00:00Z", true, "2026-07-06T07:00:00Z"),  // 09:00 Berlin in summer
            (&office, "2026-07-06T06:59:00Z", false, "2026-07-06T07:00:00Z"),
        ];
        for (window, at, open, next) in rows {
            assert_eq!(window.is_open(ts(at)), *open, "{window} at {at}");
            assert_eq!(
                window.next_opening(ts(at)),
                Some(ts(next)),
                "{window} at {at}"
            );
        }
        let night = Window::parse("Fri 22:00-02:00", None).unwrap();
        assert!(night.is_open(ts("2026-01-09T23:00:00Z"))); // Friday night
        assert!(night.is_open(ts("2026-01-10T01:59:00Z"))); // early Saturday
        assert!(!night.is_open(ts("2026-01-10T02:00:00Z")));
        assert!(!night.is_open(ts("2026-01-09T01:00:00Z"))); // early Friday: Thursday has none
        assert_eq!(
            night.next_opening(ts("2026-01-10T02:00:00Z")),
            Some(ts("2026-01-16T22:00:00Z"))
        );
        let weekend = Window::parse("Sat-Sun 00:00-24:00", Some("America/New_York")).unwrap();
        assert!(!weekend.is_open(ts("2026-01-10T04:59:00Z"))); // Friday 23:59 in New York
        assert!(weekend.is_open(ts("2026-01-10T05:00:00Z")));
        assert!(weekend.is_open(ts("2026-01-12T04:59:00Z"))); // Sunday 23:59
        assert!(!weekend.is_open(ts("2026-01-12T05:00:00Z")));
    }
}
