//! Overdue (超期未签收), computed when read: a delivery that nobody has confirmed (签收) or
//! rejected (退回) within the `[reminders]` threshold for its urgency. Nothing is stored, so a
//! changed threshold applies at once and a clock jump cannot leave a stale flag behind.
//!
//! - At the sender: a recipient whose state is `delivered` and whose delivery time is older
//!   than the threshold.
//! - At the recipient: an inbox entry still `new` whose receive time is older than the
//!   threshold; `inbox` lists those first.

use exchange_core::{config::RemindersSection, document::Urgency};

/// How long a document of `urgency` may wait for 签收, in ms (the rule the hub's `stats` shares).
pub(crate) fn threshold_ms(r: &RemindersSection, urgency: Urgency) -> i64 {
    r.threshold_ms(urgency)
}

/// Whether something that started waiting at `since_ms` (0 = not yet) is overdue at `now_ms`.
pub(crate) fn is_overdue(
    r: &RemindersSection,
    urgency: Urgency,
    since_ms: i64,
    now_ms: i64,
) -> bool {
    since_ms > 0 && now_ms.saturating_sub(since_ms) > threshold_ms(r, urgency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_follows_urgency() {
        let r = RemindersSection {
            very_urgent_secs: 1,
            urgent_secs: 10,
            normal_secs: 100,
        };
        assert_eq!(threshold_ms(&r, Urgency::Teti), 1000);
        assert_eq!(threshold_ms(&r, Urgency::Pingji), 10_000);
        assert!(is_overdue(&r, Urgency::VeryUrgent, 1_000, 2_001));
        assert!(!is_overdue(&r, Urgency::Normal, 1_000, 2_001));
        assert!(
            !is_overdue(&r, Urgency::Normal, 0, i64::MAX),
            "never started waiting"
        );
        assert_eq!(
            threshold_ms(&RemindersSection::default(), Urgency::VeryUrgent),
            7_200_000
        );
    }
}
