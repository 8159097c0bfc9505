//! `[calendar]` in `node.toml` and `hub.toml`: the office's days. Where a day begins (its UTC
//! offset) decides what "today" is for a document's date (成文日期), what a date typed on the
//! command line means, and how `exchange-hub stats` cuts periods; which days are working days
//! decides when a 签收 allowed "1 working day" falls due ([`super::RemindersSection`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset, Weekday};

/// The office's days: Monday to Friday in its UTC offset are working days, less public holidays
/// (法定节假日), plus the weekend days worked in exchange (调休上班). The exchange ships no
/// holiday list: the State Council publishes it each year and an administrator enters it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarToml", into = "CalendarToml")]
pub struct Calendar {
    /// Where the office's days begin and end (default +08:00, China Standard Time).
    pub utc_offset: UtcOffset,
    /// Days off that would otherwise be working days.
    pub holidays: BTreeSet<Date>,
    /// Saturdays and Sundays that are working days.
    pub workdays: BTreeSet<Date>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            utc_offset: CHINA_STANDARD_TIME,
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
        }
    }
}

const CHINA_STANDARD_TIME: UtcOffset = time::macros::offset!(+8);
const DAY_MS: i64 = 24 * 3600 * 1000;
/// How far [`Calendar::add_working_days`] looks for working days (ten years) before it gives up
/// (a calendar that declares every day a holiday: nothing ever falls due).
const SEARCH_DAYS: i64 = 3660;

impl Calendar {
    /// Whether every key has its default (then the section is not written out).
    pub fn is_default(&self) -> bool {
        *self == Calendar::default()
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: Date) -> bool {
        if self.workdays.contains(&date) {
            return true;
        }
        !self.holidays.contains(&date)
            && !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
    }

    /// The instant (ms since the epoch) at which `days` whole working days (24 h of working-day
    /// time each) have passed since `since_ms`; `i64::MAX` when the calendar has no such day.
    pub fn add_working_days(&self, since_ms: i64, days: u32) -> i64 {
        if days == 0 {
            return since_ms;
        }
        let offset_ms = self.offset_ms();
        // Walk the office's local days from the one `since_ms` falls on, spending the working
        // time that is left of each working day.
        let mut local = since_ms.saturating_add(offset_ms);
        let mut left = i64::from(days) * DAY_MS;
        let first = local.div_euclid(DAY_MS);
        for day in first..first.saturating_add(SEARCH_DAYS) {
            let next = day.saturating_add(1).saturating_mul(DAY_MS);
            if self.is_working_day(date_of(day)) {
                let here = next.saturating_sub(local);
                if left <= here {
                    return local.saturating_add(left).saturating_sub(offset_ms);
                }
                left -= here;
            }
            local = next;
        }
        i64::MAX
    }

    /// Today in the office, e.g. for a document's date.
    pub fn today(&self) -> Date {
        OffsetDateTime::now_utc().to_offset(self.utc_offset).date()
    }

    /// 00:00 of `date` in the office, in ms since the epoch.
    pub fn start_of_day_ms(&self, date: Date) -> i64 {
        date.midnight()
            .assume_offset(self.utc_offset)
            .unix_timestamp()
            * 1000
    }

    /// 24:00 of `date` in the office (00:00 of the next day), in ms since the epoch.
    pub fn end_of_day_ms(&self, date: Date) -> i64 {
        self.start_of_day_ms(date).saturating_add(DAY_MS)
    }

    /// `ms` (Unix ms) as the office's local time for people, `2026-11-27 07:51:52`; "" for 0.
    pub fn format_local(&self, ms: i64) -> String {
        if ms == 0 {
            return String::new();
        }
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        crate::time::datetime(ms)
            .and_then(|t| t.to_offset(self.utc_offset).format(&fmt).ok())
            .unwrap_or_default()
    }

    /// The offset as people read it next to local times, e.g. `+08:00`.
    pub fn offset_label(&self) -> String {
        format_offset(self.utc_offset)
    }

    fn offset_ms(&self) -> i64 {
        i64::from(self.utc_offset.whole_seconds()) * 1000
    }
}

/// The calendar date of day number `day` (days since 1970-01-01); out of `time`'s range
/// (beyond ±9999 years) clamps to its ends.
fn date_of(day: i64) -> Date {
    const EPOCH_JULIAN_DAY: i64 = 2_440_588;
    let jd = i32::try_from(day.saturating_add(EPOCH_JULIAN_DAY)).unwrap_or(i32::MAX);
    Date::from_julian_day(jd).unwrap_or(if jd < 0 { Date::MIN } else { Date::MAX })
}

/// `[calendar]` as written.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarToml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utc_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    holidays: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    workdays: Vec<String>,
}

impl TryFrom<CalendarToml> for Calendar {
    type Error = String;

    fn try_from(t: CalendarToml) -> Result<Self, String> {
        let utc_offset = match t.utc_offset {
            None => CHINA_STANDARD_TIME,
            Some(s) => UtcOffset::parse(&s, OFFSET_FORMAT).map_err(|e| {
                format!("calendar.utc_offset: {s:?} is not an offset like \"+08:00\" ({e})")
            })?,
        };
        let dates = |key: &str, list: &[String]| -> Result<BTreeSet<Date>, String> {
            list.iter()
                .map(|s| {
                    parse_date(s).map_err(|e| {
                        format!("calendar.{key}: {s:?} is not a date like \"2026-10-01\" ({e})")
                    })
                })
                .collect()
        };
        let calendar = Calendar {
            utc_offset,
            holidays: dates("holidays", &t.holidays)?,
            workdays: dates("workdays", &t.workdays)?,
        };
        if let Some(both) = calendar.holidays.intersection(&calendar.workdays).next() {
            return Err(format!(
                "calendar: {both} is in both holidays and workdays; keep it in one"
            ));
        }
        Ok(calendar)
    }
}

impl From<Calendar> for CalendarToml {
    fn from(c: Calendar) -> Self {
        let dates = |set: &BTreeSet<Date>| set.iter().map(|d| d.to_string()).collect();
        CalendarToml {
            utc_offset: (c.utc_offset != CHINA_STANDARD_TIME).then(|| format_offset(c.utc_offset)),
            holidays: dates(&c.holidays),
            workdays: dates(&c.workdays),
        }
    }
}

const OFFSET_FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// An offset as the config writes it, e.g. `+08:00`.
pub fn format_offset(o: UtcOffset) -> String {
    o.format(OFFSET_FORMAT).unwrap_or_else(|_| o.to_string())
}

/// A date as `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, time::error::Parse> {
    Date::parse(s.trim(), DATE_FORMAT)
}

/// A date as `YYYY-MM-DD`, as documents carry it (成文日期).
pub fn format_date(d: Date) -> String {
    d.format(DATE_FORMAT).unwrap_or_else(|_| d.to_string())
}

/// A time on the command line: a whole day of the office's calendar, or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// `2026-11-20`: which instant depends on the flag (its start, or its end).
    Day(Date),
    /// RFC 3339, as Unix ms.
    At(i64),
}

impl When {
    /// The instant, a day counting from its 00:00 in `calendar` (`--since`).
    pub fn start_ms(self, calendar: &Calendar) -> i64 {
        match self {
            When::Day(d) => calendar.start_of_day_ms(d),
            When::At(ms) => ms,
        }
    }

    /// The instant, a day counting until its 24:00 in `calendar` (`--deadline`: "by 1
    /// December" leaves the whole of 1 December).
    pub fn end_ms(self, calendar: &Calendar) -> i64 {
        match self {
            When::Day(d) => calendar.end_of_day_ms(d),
            When::At(ms) => ms,
        }
    }
}

/// A date (`2026-11-20`) or an RFC 3339 time.
pub fn parse_when(s: &str) -> Result<When, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(d) = parse_date(s) {
        return Ok(When::Day(d));
    }
    let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        format!("{s:?} is neither a date (2026-11-20) nor RFC 3339 (2026-11-20T08:00:00+08:00)")
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map(When::At)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn ms(s: &str) -> i64 {
        let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_make_up_days() {
        let c = Calendar::default();
        // 2026-11-27 is a Friday. Delivered at 15:00 in Beijing: 1 working day is Monday 15:00.
        let friday = ms("2026-11-27T15:00:00+08:00");
        assert_eq!(
            c.add_working_days(friday, 1),
            ms("2026-11-30T15:00:00+08:00")
        );
        assert_eq!(
            c.add_working_days(friday, 3),
            ms("2026-12-02T15:00:00+08:00")
        );
        assert_eq!(c.add_working_days(friday, 0), friday);
        // Delivered on Saturday: the clock starts on Monday morning.
        let saturday = ms("2026-11-28T10:00:00+08:00");
        assert_eq!(
            c.add_working_days(saturday, 1),
            ms("2026-12-01T00:00:00+08:00")
        );

        // An illustrative 国庆 week: 1–7 October off, Sunday 27 September and Saturday 10 October
        // worked.
        let c: Calendar = toml::from_str(
            r#"holidays = ["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07"]
               workdays = ["2026-09-27", "2026-10-10"]"#,
        )
        .unwrap();
        let before = ms("2026-09-30T09:00:00+08:00");
        assert_eq!(
            c.add_working_days(before, 1),
            ms("2026-10-08T09:00:00+08:00")
        );
        assert_eq!(
            c.add_working_days(before, 3),
            ms("2026-10-10T09:00:00+08:00")
        );
        let sunday = ms("2026-09-27T08:00:00+08:00");
        assert_eq!(
            c.add_working_days(sunday, 1),
            ms("2026-09-28T08:00:00+08:00")
        );
        // Round trip through the file form.
        let back: Calendar = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(Calendar::default().is_default());
        assert_eq!(toml::to_string(&Calendar::default()).unwrap().trim(), "");
    }

    #[test]
    fn the_offset_decides_where_a_day_begins() {
        let utc: Calendar = toml::from_str(r#"utc_offset = "+00:00""#).unwrap();
        // Friday 23:00 UTC is already Saturday 07:00 in Beijing.
        let t = ms("2026-11-27T23:00:00Z");
        assert_eq!(utc.add_working_days(t, 1), ms("2026-11-30T23:00:00Z"));
        let cst = Calendar::default();
        assert_eq!(cst.add_working_days(t, 1), ms("2026-12-01T00:00:00+08:00"));
        let day = parse_date("2026-12-01").unwrap();
        assert_eq!(cst.start_of_day_ms(day), ms("2026-12-01T00:00:00+08:00"));
        assert_eq!(cst.end_of_day_ms(day), ms("2026-12-02T00:00:00+08:00"));
        assert_eq!(utc.start_of_day_ms(day), ms("2026-12-01T00:00:00Z"));
        assert_eq!(format_date(day), "2026-12-01");
        assert_eq!(
            cst.format_local(ms("2026-11-26T23:51:52.086Z")),
            "2026-11-27 07:51:52"
        );
        assert_eq!(
            utc.format_local(ms("2026-11-26T23:51:52Z")),
            "2026-11-26 23:51:52"
        );
        assert_eq!(cst.format_local(0), "");
        assert_eq!(cst.offset_label(), "+08:00");
    }

    #[test]
    fn a_calendar_without_working_days_never_falls_due_and_bad_keys_are_named() {
        let c = Calendar {
            holidays: (0..4000)
                .map(|d| date_of(20_000 + d))
                .filter(|d| !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday))
                .collect(),
            ..Calendar::default()
        };
        assert_eq!(c.add_working_days(20_000 * DAY_MS, 1), i64::MAX);
        assert_eq!(
            Calendar::default().add_working_days(i64::MAX - 5, 1),
            i64::MAX,
            "no overflow"
        );

        for (text, says) in [
            (r#"utc_offset = "Beijing""#, "calendar.utc_offset"),
            (
                r#"holidays = ["2026-13-01"]"#,
                "calendar.holidays: \"2026-13-01\"",
            ),
            (
                r#"holidays = ["2026-10-10"]
                workdays = ["2026-10-10"]"#,
                "2026-10-10 is in both",
            ),
            ("weekend = []", "unknown field"),
        ] {
            let err = toml::from_str::<Calendar>(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
