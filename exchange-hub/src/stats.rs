//! Office statistics (`Admin.GetStats`, `exchange-hub stats`): per department, the documents it
//! sent and received in a period and how promptly it signed for (签收) what it received.
//!
//! Computed from the store in one read transaction when asked; nothing is kept. The counting
//! rules are stated once, in `proto/exchange/v1/stats.proto`, and for administrators in
//! `docs/operations.md` (Statistics). "On time" is the nodes' overdue rule
//! ([`RemindersSection::is_late`], working days counted in the hub's calendar), applied with the hub's own `[reminders]`.

use std::collections::BTreeMap;

use exchange_core::{
    config::{Allowance, Calendar, HubConfig, RemindersSection, format_offset},
    document::Urgency,
    error::ServiceError,
    ids::DeptId,
    state::DeliveryState,
    store::{Store, StoreError},
};
use exchange_proto::v1 as pb;

use crate::store::{self, DeliveryFacts};

/// Computes the figures `req` asks for, as of `now_ms` (hub clock): the moment against which a
/// delivery still unconfirmed is judged overdue.
pub(crate) async fn compute(
    store: &Store,
    cfg: &HubConfig,
    req: pb::GetStatsRequest,
    now_ms: i64,
) -> Result<pb::GetStatsResponse, ServiceError> {
    if req.from_ms < 0 || req.until_ms < 0 {
        return Err(ServiceError::invalid(
            "from_ms, until_ms: must not be negative",
        ));
    }
    if req.until_ms != 0 && req.until_ms < req.from_ms {
        return Err(ServiceError::invalid(format!(
            "until_ms ({}) is before from_ms ({})",
            req.until_ms, req.from_ms
        )));
    }
    let only: Option<DeptId> = match req.dept.trim() {
        "" => None,
        d => Some(
            d.parse()
                .map_err(|e| ServiceError::invalid(format!("dept {d:?}: {e}")))?,
        ),
    };
    let period = req.from_ms..if req.until_ms == 0 {
        i64::MAX
    } else {
        req.until_ms
    };
    let (reminders, calendar) = (cfg.reminders.clone(), cfg.calendar.clone());
    let sealer = store.sealer().clone();
    let tally = store
        .read(move |txn| {
            let mut tally = Tally::new(reminders, calendar, now_ms);
            store::scan_accepted(txn, &sealer, period, &mut |d| {
                tally.add(&d.sender, d.doc.header.urgency, &d.deliveries);
            })?;
            Ok::<_, StoreError>(tally)
        })
        .await?;
    let mut rows = tally.rows;
    for d in &cfg.departments {
        rows.entry(d.id.to_string()).or_default();
    }
    if let Some(d) = &only {
        rows.retain(|id, _| id == d.as_str());
        if rows.is_empty() {
            return Err(ServiceError::invalid(format!(
                "department {d} is not in the directory and in no document of the period"
            )));
        }
    }
    let mut total = pb::DeptStats::default();
    let departments = rows
        .into_iter()
        .map(|(id, mut row)| {
            row.name = cfg
                .departments
                .iter()
                .find(|d| d.id.as_str() == id)
                .map(|d| d.name.clone())
                .unwrap_or_default();
            row.dept = id;
            add_into(&mut total, &row);
            row
        })
        .collect();
    let r = &cfg.reminders;
    let split = |a: Allowance| {
        let (secs, days) = a.parts();
        (secs.unwrap_or(0), days.unwrap_or(0))
    };
    let (very_urgent_secs, very_urgent_working_days) = split(r.very_urgent);
    let (urgent_secs, urgent_working_days) = split(r.urgent);
    let (normal_secs, normal_working_days) = split(r.normal);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(pb::GetStatsResponse {
        departments,
        total: Some(total),
        at_ms: now_ms,
        from_ms: req.from_ms,
        until_ms: req.until_ms,
        very_urgent_secs,
        urgent_secs,
        normal_secs,
        very_urgent_working_days,
        urgent_working_days,
        normal_working_days,
        utc_offset: format_offset(cfg.calendar.utc_offset),
        holidays: count(cfg.calendar.holidays.len()),
        workdays: count(cfg.calendar.workdays.len()),
    })
}

/// The counters of the period, by department id, filled one document at a time.
struct Tally {
    reminders: RemindersSection,
    calendar: Calendar,
    now_ms: i64,
    rows: BTreeMap<String, pb::DeptStats>,
}

impl Tally {
    fn new(reminders: RemindersSection, calendar: Calendar, now_ms: i64) -> Self {
        Tally {
            reminders,
            calendar,
            now_ms,
            rows: BTreeMap::new(),
        }
    }

    /// Counts one document: once for its sender, and each delivery for its recipient.
    fn add(&mut self, sender: &str, urgency: Urgency, deliveries: &[DeliveryFacts]) {
        self.rows.entry(sender.to_owned()).or_default().sent += 1;
        for d in deliveries {
            let row = self.rows.entry(d.recipient.clone()).or_default();
            // Exhaustive on purpose: a new state must be placed in one of these buckets. (A stored
            // code this build does not know fails the scan, in `store::scan`: never a guess.)
            match d.state {
                DeliveryState::Queued | DeliveryState::Accepted => row.in_transit += 1,
                DeliveryState::NotDelivered | DeliveryState::Refused => row.not_delivered += 1,
                DeliveryState::Withdrawn => row.withdrawn += 1,
                DeliveryState::Delivered => {
                    row.received += 1;
                    row.unconfirmed += 1;
                    if self.reminders.is_late(
                        &self.calendar,
                        urgency,
                        d.delivered_at_ms,
                        self.now_ms,
                    ) {
                        row.overdue_unconfirmed += 1;
                    }
                }
                // Signed for; a recall acknowledged afterwards does not undo the 签收.
                DeliveryState::Confirmed | DeliveryState::RecallAcknowledged => {
                    row.received += 1;
                    row.confirmed += 1;
                    if d.delivered_at_ms > 0 && d.confirmed_at_ms > 0 {
                        let took = d.confirmed_at_ms.saturating_sub(d.delivered_at_ms).max(0);
                        if self.reminders.is_late(
                            &self.calendar,
                            urgency,
                            d.delivered_at_ms,
                            d.confirmed_at_ms,
                        ) {
                            row.confirmed_late += 1;
                        } else {
                            row.confirmed_on_time += 1;
                        }
                        row.sign_ms_total += took.unsigned_abs();
                    }
                }
                DeliveryState::Rejected => {
                    row.received += 1;
                    row.rejected += 1;
                }
                DeliveryState::Recalled => {
                    row.received += 1;
                    row.recalled += 1;
                }
            }
        }
    }
}

/// Adds `row`'s counters to `total`.
fn add_into(total: &mut pb::DeptStats, row: &pb::DeptStats) {
    total.sent += row.sent;
    total.received += row.received;
    total.confirmed += row.confirmed;
    total.rejected += row.rejected;
    total.unconfirmed += row.unconfirmed;
    total.recalled += row.recalled;
    total.in_transit += row.in_transit;
    total.not_delivered += row.not_delivered;
    total.withdrawn += row.withdrawn;
    total.confirmed_on_time += row.confirmed_on_time;
    total.confirmed_late += row.confirmed_late;
    total.overdue_unconfirmed += row.overdue_unconfirmed;
    total.sign_ms_total += row.sign_ms_total;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(to: &str, state: DeliveryState, delivered: i64, confirmed: i64) -> DeliveryFacts {
        DeliveryFacts {
            recipient: to.into(),
            state,
            delivered_at_ms: delivered,
            confirmed_at_ms: confirmed,
        }
    }

    #[test]
    fn every_delivery_lands_in_one_bucket() {
        let r = RemindersSection {
            very_urgent: Allowance::Clock(1),
            urgent: Allowance::Clock(10),
            normal: Allowance::Clock(100),
            ..RemindersSection::default()
        };
        let mut t = Tally::new(r, Calendar::default(), 1_000_000);
        t.add(
            "a",
            Urgency::Urgent,
            &[
                delivery("b", DeliveryState::Confirmed, 1_000, 3_000), // 2 s: on time
                delivery("c", DeliveryState::Confirmed, 1_000, 20_000), // 19 s: late
                delivery("d", DeliveryState::Delivered, 1_000, 0),     // overdue
                delivery("e", DeliveryState::Delivered, 995_000, 0),   // still in time
            ],
        );
        t.add(
            "b",
            Urgency::Normal,
            &[
                delivery("a", DeliveryState::Rejected, 1_000, 0),
                delivery("c", DeliveryState::RecallAcknowledged, 1_000, 0), // no 签收 time
                delivery("d", DeliveryState::Accepted, 0, 0),
                delivery("e", DeliveryState::NotDelivered, 0, 0),
            ],
        );
        let row = |d: &str| t.rows[d].clone();
        assert_eq!(
            (row("a").sent, row("a").received, row("a").rejected),
            (1, 1, 1)
        );
        let b = row("b");
        assert_eq!(
            (b.sent, b.received, b.confirmed, b.confirmed_on_time),
            (1, 1, 1, 1)
        );
        assert_eq!(b.sign_ms_total, 2_000);
        let c = row("c");
        assert_eq!((c.received, c.confirmed, c.confirmed_late), (2, 2, 1));
        assert_eq!(
            c.confirmed_on_time, 0,
            "a recall-acknowledged without a time is untimed"
        );
        let d = row("d");
        assert_eq!(
            (
                d.received,
                d.unconfirmed,
                d.overdue_unconfirmed,
                d.in_transit
            ),
            (1, 1, 1, 1)
        );
        let e = row("e");
        assert_eq!(
            (e.received, e.overdue_unconfirmed, e.not_delivered),
            (1, 0, 1)
        );
    }
}
