//! The parts of the configs that model how offices work rather than how bytes move: the hub's
//! named recipient groups (`[[groups]]` in `hub.toml`) and the reminder thresholds
//! (`[reminders]` in `node.toml`, and in `hub.toml` for `exchange-hub stats`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, UtcOffset, Weekday};

use crate::{document::Urgency, ids::DeptId};

/// One `[[groups]]` entry in `hub.toml`: a collective addressee such as 各县区人民政府, which a
/// sender names instead of listing every member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    /// The group's id, e.g. `all-counties`; a sender addresses it as `group:all-counties`. Same
    /// character rules as a department id, so it reads the same in flags and files.
    pub id: DeptId,
    /// The printed wording, e.g. 各县区人民政府: what the document's 主送机关 text says.
    pub name: String,
    /// The departments it stands for; each must be in `[[departments]]`.
    #[serde(default)]
    pub members: Vec<DeptId>,
}

/// How long a delivered document of one urgency may stay unconfirmed before it is overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Around the clock: this many seconds after delivery (`*_secs` in the config).
    Clock(u64),
    /// This many working days of the office's calendar (`*_working_days`): only time on a
    /// working day counts, so a 加急 document delivered on Friday at 15:00 is due on Monday at
    /// 15:00, and one delivered on Saturday is due at the end of Monday.
    WorkingDays(u32),
}

/// The office's working days: Monday to Friday in its UTC offset, less public holidays
/// (法定节假日), plus the weekend days worked in exchange (调休上班). The exchange ships no
/// holiday list: the State Council publishes it each year and an administrator enters it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        let offset_ms = i64::from(self.utc_offset.whole_seconds()) * 1000;
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
}

/// The calendar date of day number `day` (days since 1970-01-01); out of `time`'s range
/// (beyond ±9999 years) clamps to its ends, which are never working days in any real calendar.
fn date_of(day: i64) -> Date {
    const EPOCH_JULIAN_DAY: i64 = 2_440_588;
    let jd = i32::try_from(day.saturating_add(EPOCH_JULIAN_DAY)).unwrap_or(i32::MAX);
    Date::from_julian_day(jd).unwrap_or(if jd < 0 { Date::MIN } else { Date::MAX })
}

/// `[reminders]` in `node.toml` and `hub.toml`: how long a delivered document may stay
/// unconfirmed (未签收) before it counts as overdue (超期), by urgency, and the calendar that
/// working days are counted in. Overdue is computed when it is read, so a change takes effect
/// at the next `inbox`/`status`/`stats` without touching stored records. The hub has its own
/// copy (same defaults) so that its statistics judge "on time" the way the nodes flag
/// "overdue".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RemindersToml", into = "RemindersToml")]
pub struct RemindersSection {
    /// 特急 (and 特提): 2 hours around the clock by default.
    pub very_urgent: Allowance,
    /// 加急 (and 平急): 1 working day by default.
    pub urgent: Allowance,
    /// 平件: 3 working days by default.
    pub normal: Allowance,
    /// The working days.
    pub calendar: Calendar,
}

impl Default for RemindersSection {
    fn default() -> Self {
        RemindersSection {
            very_urgent: Allowance::Clock(2 * 3600),
            urgent: Allowance::WorkingDays(1),
            normal: Allowance::WorkingDays(3),
            calendar: Calendar::default(),
        }
    }
}

impl RemindersSection {
    /// Whether every key has its default (then the section is not written out).
    pub fn is_default(&self) -> bool {
        *self == RemindersSection::default()
    }

    /// The allowance for `urgency`.
    pub fn allowance(&self, urgency: Urgency) -> Allowance {
        match urgency.priority() {
            0 => self.very_urgent,
            1 => self.urgent,
            _ => self.normal,
        }
    }

    /// When a document of `urgency` delivered at `since_ms` falls due for 签收 (ms since the
    /// epoch): the one rule both the node's overdue flag and the hub's statistics apply. It is
    /// overdue once the time is strictly later.
    pub fn due_ms(&self, urgency: Urgency, since_ms: i64) -> i64 {
        match self.allowance(urgency) {
            Allowance::Clock(secs) => since_ms
                .saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
            Allowance::WorkingDays(days) => self.calendar.add_working_days(since_ms, days),
        }
    }

    /// Whether something of `urgency` that started waiting at `since_ms` (0 = not yet) was
    /// still unconfirmed too long at `at_ms`.
    pub fn is_late(&self, urgency: Urgency, since_ms: i64, at_ms: i64) -> bool {
        since_ms > 0 && at_ms > self.due_ms(urgency, since_ms)
    }
}

/// `[reminders]` as written: for each urgency either `*_secs` or `*_working_days`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemindersToml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    very_urgent_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    very_urgent_working_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    urgent_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    urgent_working_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    normal_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    normal_working_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utc_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    holidays: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    workdays: Vec<String>,
}

impl TryFrom<RemindersToml> for RemindersSection {
    type Error = String;

    fn try_from(t: RemindersToml) -> Result<Self, String> {
        let d = RemindersSection::default();
        let pick = |name: &str, secs: Option<u64>, days: Option<u32>, default: Allowance| match (
            secs, days,
        ) {
            (Some(_), Some(_)) => Err(format!(
                "reminders: set {name}_secs (around the clock) or {name}_working_days, not both"
            )),
            (Some(s), None) => Ok(Allowance::Clock(s)),
            (None, Some(n)) => Ok(Allowance::WorkingDays(n)),
            (None, None) => Ok(default),
        };
        let utc_offset = match t.utc_offset {
            None => d.calendar.utc_offset,
            Some(s) => UtcOffset::parse(&s, OFFSET_FORMAT).map_err(|e| {
                format!("reminders.utc_offset: {s:?} is not an offset like \"+08:00\" ({e})")
            })?,
        };
        let dates = |key: &str, list: &[String]| -> Result<BTreeSet<Date>, String> {
            list.iter()
                .map(|s| {
                    Date::parse(s, DATE_FORMAT).map_err(|e| {
                        format!("reminders.{key}: {s:?} is not a date like \"2026-10-01\" ({e})")
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
                "reminders: {both} is in both holidays and workdays; keep it in one"
            ));
        }
        Ok(RemindersSection {
            very_urgent: pick(
                "very_urgent",
                t.very_urgent_secs,
                t.very_urgent_working_days,
                d.very_urgent,
            )?,
            urgent: pick("urgent", t.urgent_secs, t.urgent_working_days, d.urgent)?,
            normal: pick("normal", t.normal_secs, t.normal_working_days, d.normal)?,
            calendar,
        })
    }
}

impl From<RemindersSection> for RemindersToml {
    fn from(r: RemindersSection) -> Self {
        let d = RemindersSection::default();
        let split = |a: Allowance, default: Allowance| match a {
            _ if a == default => (None, None),
            Allowance::Clock(s) => (Some(s), None),
            Allowance::WorkingDays(n) => (None, Some(n)),
        };
        let (very_urgent_secs, very_urgent_working_days) = split(r.very_urgent, d.very_urgent);
        let (urgent_secs, urgent_working_days) = split(r.urgent, d.urgent);
        let (normal_secs, normal_working_days) = split(r.normal, d.normal);
        let dates = |set: &BTreeSet<Date>| set.iter().map(|d| d.to_string()).collect();
        RemindersToml {
            very_urgent_secs,
            very_urgent_working_days,
            urgent_secs,
            urgent_working_days,
            normal_secs,
            normal_working_days,
            utc_offset: (r.calendar.utc_offset != d.calendar.utc_offset)
                .then(|| format_offset(r.calendar.utc_offset)),
            holidays: dates(&r.calendar.holidays),
            workdays: dates(&r.calendar.workdays),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
    }

    #[test]
    fn thresholds_default_by_urgency_and_can_be_shortened() {
        let r: RemindersSection = toml::from_str("urgent_secs = 5").unwrap();
        assert_eq!(r.urgent, Allowance::Clock(5));
        assert_eq!(r.very_urgent, Allowance::Clock(7200));
        assert_eq!(r.normal, Allowance::WorkingDays(3));
        assert!(RemindersSection::default().is_default());
        assert_eq!(r.due_ms(Urgency::Pingji, 1_000), 6_000);
        assert_eq!(r.due_ms(Urgency::Teti, 1_000), 7_201_000);
        assert!(r.is_late(Urgency::Pingji, 1_000, 6_001));
        assert!(
            !r.is_late(Urgency::Pingji, 1_000, 6_000),
            "late only once strictly past"
        );
        assert!(
            !r.is_late(Urgency::Pingji, 0, i64::MAX),
            "never started waiting"
        );
        // Written back, only what differs from the defaults appears.
        assert_eq!(toml::to_string(&r).unwrap().trim(), "urgent_secs = 5");
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_make_up_days() {
        let r = RemindersSection::default();
        // 2026-11-27 is a Friday. Delivered at 15:00 in Beijing: 1 working day is Monday 15:00.
        let friday = ms("2026-11-27T15:00:00+08:00");
        assert_eq!(
            r.due_ms(Urgency::Urgent, friday),
            ms("2026-11-30T15:00:00+08:00")
        );
        assert_eq!(
            r.due_ms(Urgency::Normal, friday),
            ms("2026-12-02T15:00:00+08:00")
        );
        // Delivered on Saturday: the clock starts on Monday morning.
        let saturday = ms("2026-11-28T10:00:00+08:00");
        assert_eq!(
            r.due_ms(Urgency::Urgent, saturday),
            ms("2026-12-01T00:00:00+08:00")
        );
        // 特急 runs around the clock.
        assert_eq!(
            r.due_ms(Urgency::VeryUrgent, saturday),
            ms("2026-11-28T12:00:00+08:00")
        );

        // 国庆 2026: 1–7 October off; Sunday 27 September and Saturday 10 October worked.
        let r: RemindersSection = toml::from_str(
            r#"holidays = ["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07"]
               workdays = ["2026-09-27", "2026-10-10"]"#,
        )
        .unwrap();
        let before = ms("2026-09-30T09:00:00+08:00");
        assert_eq!(
            r.due_ms(Urgency::Urgent, before),
            ms("2026-10-08T09:00:00+08:00")
        );
        assert_eq!(
            r.due_ms(Urgency::Normal, before),
            ms("2026-10-10T09:00:00+08:00")
        );
        let sunday = ms("2026-09-27T08:00:00+08:00");
        assert_eq!(
            r.due_ms(Urgency::Urgent, sunday),
            ms("2026-09-28T08:00:00+08:00")
        );
        // Round trip through the file form.
        let back: RemindersSection = toml::from_str(&toml::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_offset_decides_where_a_day_begins() {
        let utc: RemindersSection = toml::from_str(r#"utc_offset = "+00:00""#).unwrap();
        // Friday 23:00 UTC is already Saturday 07:00 in Beijing.
        let t = ms("2026-11-27T23:00:00Z");
        assert_eq!(utc.due_ms(Urgency::Urgent, t), ms("2026-11-30T23:00:00Z"));
        let cst = RemindersSection::default();
        assert_eq!(
            cst.due_ms(Urgency::Urgent, t),
            ms("2026-12-01T00:00:00+08:00")
        );
    }

    #[test]
    fn a_calendar_without_working_days_never_falls_due_and_bad_keys_are_named() {
        let r = RemindersSection {
            calendar: Calendar {
                holidays: (0..4000)
                    .map(|d| date_of(20_000 + d))
                    .filter(|d| !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday))
                    .collect(),
                ..Calendar::default()
            },
            ..RemindersSection::default()
        };
        assert_eq!(r.calendar.add_working_days(20_000 * DAY_MS, 1), i64::MAX);
        assert!(!r.is_late(Urgency::Normal, 20_000 * DAY_MS, i64::MAX - 1));
        assert_eq!(
            r.calendar.add_working_days(i64::MAX - 5, 1),
            i64::MAX,
            "no overflow"
        );

        for (text, says) in [
            (
                "urgent_secs = 5\nurgent_working_days = 1",
                "urgent_secs (around the clock) or urgent_working_days",
            ),
            (r#"utc_offset = "Beijing""#, "reminders.utc_offset"),
            (
                r#"holidays = ["2026-13-01"]"#,
                "reminders.holidays: \"2026-13-01\"",
            ),
            (
                r#"holidays = ["2026-10-10"]
                workdays = ["2026-10-10"]"#,
                "2026-10-10 is in both",
            ),
        ] {
            let err = toml::from_str::<RemindersSection>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_group_lists_its_members() {
        let g: GroupEntry = toml::from_str(
            "id = \"all-counties\"\nname = \"各县区人民政府\"\nmembers = [\"b\", \"c\"]",
        )
        .unwrap();
        assert_eq!(g.members.len(), 2);
        assert_eq!(g.name, "各县区人民政府");
    }
}
