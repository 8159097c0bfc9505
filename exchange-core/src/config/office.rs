//! The parts of the configs that model how offices work rather than how bytes move: the hub's
//! named recipient groups (`[[groups]]` in `hub.toml`) and the reminder thresholds
//! (`[reminders]` in `node.toml`, and in `hub.toml` for `exchange-hub stats`), counted in the
//! working days of `[calendar]` ([`super::Calendar`]).

use serde::{Deserialize, Serialize};

use super::Calendar;
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
    /// The departments it stands for: each of this exchange in `[[departments]]`, or of a
    /// linked exchange as `dept@exchange` (docs/federation.md).
    #[serde(default)]
    pub members: Vec<crate::ids::Address>,
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

impl Allowance {
    /// As the config keys write it: (`*_secs`, `*_working_days`), exactly one set.
    pub fn parts(self) -> (Option<u64>, Option<u32>) {
        match self {
            Allowance::Clock(s) => (Some(s), None),
            Allowance::WorkingDays(n) => (None, Some(n)),
        }
    }
}

/// `[reminders]` in `node.toml` and `hub.toml`: how long a delivered document may stay
/// unconfirmed (未签收) before it counts as overdue (超期), by urgency. Overdue is computed when
/// it is read, so a change takes effect at the next `inbox`/`status`/`stats` without touching
/// stored records. The hub has its own copy (same defaults) so that its statistics judge "on
/// time" the way the nodes flag "overdue".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RemindersToml", into = "RemindersToml")]
pub struct RemindersSection {
    /// 特急 (and 特提): 2 hours around the clock by default.
    pub very_urgent: Allowance,
    /// 加急 (and 平急): 1 working day by default.
    pub urgent: Allowance,
    /// 平件: 3 working days by default.
    pub normal: Allowance,
    /// 自动催办: the sending node reminds a recipient once, by itself, when its delivery becomes
    /// overdue (on by default; nodes only).
    pub automatic: bool,
    /// How often a node looks for deliveries that became overdue, in seconds (default 60).
    pub check_every_secs: u64,
}

impl Default for RemindersSection {
    fn default() -> Self {
        RemindersSection {
            very_urgent: Allowance::Clock(2 * 3600),
            urgent: Allowance::WorkingDays(1),
            normal: Allowance::WorkingDays(3),
            automatic: true,
            check_every_secs: 60,
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
    /// epoch), working days counted in `calendar`: the one rule both the node's overdue flag
    /// and the hub's statistics apply. It is overdue once the time is strictly later.
    pub fn due_ms(&self, calendar: &Calendar, urgency: Urgency, since_ms: i64) -> i64 {
        match self.allowance(urgency) {
            Allowance::Clock(secs) => since_ms
                .saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
            Allowance::WorkingDays(days) => calendar.add_working_days(since_ms, days),
        }
    }

    /// Whether something of `urgency` that started waiting at `since_ms` (0 = not yet) was
    /// still unconfirmed too long at `at_ms`.
    pub fn is_late(
        &self,
        calendar: &Calendar,
        urgency: Urgency,
        since_ms: i64,
        at_ms: i64,
    ) -> bool {
        since_ms > 0 && at_ms > self.due_ms(calendar, urgency, since_ms)
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
    automatic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check_every_secs: Option<u64>,
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
        Ok(RemindersSection {
            very_urgent: pick(
                "very_urgent",
                t.very_urgent_secs,
                t.very_urgent_working_days,
                d.very_urgent,
            )?,
            urgent: pick("urgent", t.urgent_secs, t.urgent_working_days, d.urgent)?,
            normal: pick("normal", t.normal_secs, t.normal_working_days, d.normal)?,
            automatic: t.automatic.unwrap_or(d.automatic),
            check_every_secs: match t.check_every_secs {
                Some(0) => return Err("reminders.check_every_secs: at least 1".to_owned()),
                s => s.unwrap_or(d.check_every_secs),
            },
        })
    }
}

impl From<RemindersSection> for RemindersToml {
    fn from(r: RemindersSection) -> Self {
        let d = RemindersSection::default();
        let split = |a: Allowance, default: Allowance| {
            if a == default {
                (None, None)
            } else {
                a.parts()
            }
        };
        let (very_urgent_secs, very_urgent_working_days) = split(r.very_urgent, d.very_urgent);
        let (urgent_secs, urgent_working_days) = split(r.urgent, d.urgent);
        let (normal_secs, normal_working_days) = split(r.normal, d.normal);
        RemindersToml {
            very_urgent_secs,
            very_urgent_working_days,
            urgent_secs,
            urgent_working_days,
            normal_secs,
            normal_working_days,
            automatic: (r.automatic != d.automatic).then_some(r.automatic),
            check_every_secs: (r.check_every_secs != d.check_every_secs)
                .then_some(r.check_every_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_default_by_urgency_and_can_be_shortened() {
        let r: RemindersSection = toml::from_str("urgent_secs = 5").unwrap();
        let cal = Calendar::default();
        assert_eq!(r.urgent, Allowance::Clock(5));
        assert_eq!(r.very_urgent, Allowance::Clock(7200));
        assert_eq!(r.normal, Allowance::WorkingDays(3));
        assert!(RemindersSection::default().is_default());
        assert_eq!(r.due_ms(&cal, Urgency::Pingji, 1_000), 6_000);
        assert_eq!(r.due_ms(&cal, Urgency::Teti, 1_000), 7_201_000);
        assert!(r.is_late(&cal, Urgency::Pingji, 1_000, 6_001));
        assert!(
            !r.is_late(&cal, Urgency::Pingji, 1_000, 6_000),
            "late only once strictly past"
        );
        assert!(
            !r.is_late(&cal, Urgency::Pingji, 0, i64::MAX),
            "never started waiting"
        );
        // Written back, only what differs from the defaults appears.
        assert_eq!(toml::to_string(&r).unwrap().trim(), "urgent_secs = 5");
    }

    #[test]
    fn working_day_allowances_follow_the_calendar_and_both_forms_are_refused() {
        let r = RemindersSection::default();
        let cal = Calendar::default();
        // 2026-11-27 15:00 in Beijing is a Friday afternoon (07:00 UTC).
        let friday = 1_795_762_800_000;
        let day = 24 * 3_600_000;
        assert_eq!(r.due_ms(&cal, Urgency::Urgent, friday), friday + 3 * day);
        assert_eq!(r.due_ms(&cal, Urgency::Normal, friday), friday + 5 * day);
        assert_eq!(
            r.due_ms(&cal, Urgency::VeryUrgent, friday),
            friday + 7_200_000
        );
        let err = toml::from_str::<RemindersSection>("urgent_secs = 5\nurgent_working_days = 1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("urgent_secs (around the clock) or urgent_working_days"),
            "{err}"
        );
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
