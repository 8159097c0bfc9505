//! The parts of the configs that model how offices work rather than how bytes move: the hub's
//! named recipient groups (`[[groups]]` in `hub.toml`) and the reminder thresholds
//! (`[reminders]` in `node.toml`, and in `hub.toml` for `exchange-hub stats`).

use serde::{Deserialize, Serialize};

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

/// One working day, approximated as 24 hours (the exchange keeps no holiday calendar).
const WORKING_DAY_SECS: u64 = 24 * 3600;

/// `[reminders]` in `node.toml` and `hub.toml`: how long a delivered document may stay
/// unconfirmed (未签收) before it counts as overdue (超期), by urgency. Overdue is computed when it
/// is read, so a change takes effect at the next `inbox`/`status`/`stats` without touching stored
/// records. The hub has its own copy (same defaults) so that its statistics judge "on time" the
/// way the nodes flag "overdue".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemindersSection {
    /// 特急 (and 特提): 2 hours by default.
    #[serde(default = "default_very_urgent_secs")]
    pub very_urgent_secs: u64,
    /// 加急 (and 平急): 1 working day by default.
    #[serde(default = "default_urgent_secs")]
    pub urgent_secs: u64,
    /// 平件: 3 working days by default.
    #[serde(default = "default_normal_secs")]
    pub normal_secs: u64,
}

impl Default for RemindersSection {
    fn default() -> Self {
        RemindersSection {
            very_urgent_secs: default_very_urgent_secs(),
            urgent_secs: default_urgent_secs(),
            normal_secs: default_normal_secs(),
        }
    }
}

impl RemindersSection {
    /// Whether every threshold has its default (then the section is not written out).
    pub fn is_default(&self) -> bool {
        *self == RemindersSection::default()
    }

    /// How long a document of `urgency` may wait for 签收 after delivery, in ms: the one rule
    /// both the node's overdue flag and the hub's statistics apply (overdue when strictly longer).
    pub fn threshold_ms(&self, urgency: Urgency) -> i64 {
        let secs = match urgency.priority() {
            0 => self.very_urgent_secs,
            1 => self.urgent_secs,
            _ => self.normal_secs,
        };
        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

fn default_very_urgent_secs() -> u64 {
    2 * 3600
}

fn default_urgent_secs() -> u64 {
    WORKING_DAY_SECS
}

fn default_normal_secs() -> u64 {
    3 * WORKING_DAY_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_default_by_urgency_and_can_be_shortened() {
        let r: RemindersSection = toml::from_str("urgent_secs = 5").unwrap();
        assert_eq!(r.urgent_secs, 5);
        assert_eq!(r.very_urgent_secs, 7200);
        assert_eq!(r.normal_secs, 3 * 86_400);
        assert!(RemindersSection::default().is_default());
        assert_eq!(r.threshold_ms(Urgency::Pingji), 5_000);
        assert_eq!(r.threshold_ms(Urgency::Teti), 7_200_000);
        assert_eq!(r.threshold_ms(Urgency::Normal), 259_200_000);
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
