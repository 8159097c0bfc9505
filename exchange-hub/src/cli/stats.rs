//! `exchange-hub stats [--from DAY] [--to DAY] [--dept ID] [--json]`: the figures an office is
//! asked for — per department, documents sent and received, the share signed for (签收) on
//! time, the average time to sign, overdue deliveries — and their totals.
//!
//! Asked of the running hub through its `Admin` service (with the administrator identity in
//! `[admin]`), or — when the hub is not running — computed from its store directly. The counting
//! rules are in `proto/exchange/v1/stats.proto`; the derived figures (share, average, overdue)
//! are computed here, once, for both outputs.

use anyhow::Result;
use clap::Args;
use exchange_core::{
    config::{Calendar, HubConfig, format_offset, parse_date},
    ids::DeptId,
    time::format_ms,
};
use exchange_proto::v1 as pb;
use serde::Serialize;
use time::{Date, UtcOffset};

use super::{
    UsageError,
    audit::{Source, connect},
};

/// `stats` flags. Days are the office's calendar days: in `[calendar] utc_offset` of hub.toml
/// (default +08:00, China Standard Time).
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// First day of the period: documents the hub accepted from 00:00 that day (in the hub's
    /// `[calendar] utc_offset`, default +08:00).
    /// Default: from the first document.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    pub from: Option<Date>,
    /// Last day of the period, included (up to 24:00 that day). Default: up to now.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    pub to: Option<Date>,
    /// Only this department's row (its id, as in [[departments]]).
    #[arg(long, value_name = "ID")]
    pub dept: Option<String>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_day(s: &str) -> Result<Date, String> {
    parse_date(s).map_err(|e| format!("{s:?} is not a day as YYYY-MM-DD, e.g. 2026-11-20: {e}"))
}

/// The request for `args`; refuses a period that ends before it starts.
fn request(args: &StatsArgs, calendar: &Calendar) -> Result<pb::GetStatsRequest, UsageError> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        return Err(UsageError(format!(
            "--from {from} is after --to {to}: the period would be empty"
        )));
    }
    let dept = match args.dept.as_deref().map(str::trim) {
        Some(d) => d
            .parse::<DeptId>()
            .map_err(|e| UsageError(format!("--dept {d:?}: {e}")))?
            .to_string(),
        None => String::new(),
    };
    Ok(pb::GetStatsRequest {
        from_ms: args.from.map_or(0, |d| calendar.start_of_day_ms(d)),
        // 24:00 of --to, exclusive.
        until_ms: args.to.map_or(0, |d| calendar.end_of_day_ms(d)),
        dept,
    })
}

/// Runs `stats`.
pub async fn run(cfg: HubConfig, args: StatsArgs) -> Result<()> {
    let req = request(&args, &cfg.calendar)?;
    let stats = match connect(&cfg).await? {
        Source::Hub(mut client) => client
            .get_stats(req)
            .await
            .map_err(|s| refused(&args, s.code() == tonic::Code::InvalidArgument, s.message()))?
            .into_inner(),
        Source::Store(store) => {
            let now = exchange_core::time::now_ms();
            crate::stats::compute(&store, &cfg, req, now)
                .await
                .map_err(|e| {
                    let invalid = e.code == exchange_core::error::ErrorCode::InvalidArgument;
                    refused(&args, invalid, &e.message)
                })?
        }
    };
    let report = Report::new(&args, cfg.calendar.utc_offset, &stats);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// An unknown `--dept` is the caller's mistake (exit 64); anything else is a failure.
fn refused(args: &StatsArgs, invalid: bool, message: &str) -> anyhow::Error {
    match (&args.dept, invalid) {
        (Some(_), true) => UsageError(format!("--dept: {message}")).into(),
        _ => anyhow::anyhow!("the hub refused: {message}"),
    }
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Report {
    /// The first day asked for (`--from`), or null: from the beginning.
    from: Option<String>,
    /// The last day asked for (`--to`, included), or null: up to now.
    to: Option<String>,
    /// The offset the days of `from` and `to` are in, e.g. `+08:00`.
    timezone: String,
    /// When the hub computed the figures (RFC 3339, UTC): "overdue" for an unconfirmed
    /// delivery is as of then.
    as_of: String,
    /// The hub's `[reminders]` allowances that "on time" was judged by, per urgency: in
    /// seconds around the clock, or (null here) in working days, below.
    thresholds_secs: Thresholds<u64>,
    /// The allowances counted in working days of `calendar` (null where counted in seconds).
    thresholds_working_days: Thresholds<u32>,
    /// The hub's working-day calendar.
    calendar: CalendarInfo,
    /// One row per department.
    departments: Vec<Row>,
    /// The sums of the rows (shares and averages recomputed from the sums).
    total: Row,
}

#[derive(Debug, Serialize)]
struct Thresholds<T> {
    very_urgent: Option<T>,
    urgent: Option<T>,
    normal: Option<T>,
}

impl<T: Copy + PartialEq + Default> Thresholds<T> {
    /// From the response's three fields, where 0 means "counted the other way".
    fn new(very_urgent: T, urgent: T, normal: T) -> Self {
        let set = |v: T| (v != T::default()).then_some(v);
        Thresholds {
            very_urgent: set(very_urgent),
            urgent: set(urgent),
            normal: set(normal),
        }
    }
}

#[derive(Debug, Serialize)]
struct CalendarInfo {
    /// Where the calendar's days begin, e.g. `+08:00`.
    utc_offset: String,
    /// How many public holidays and make-up working days `[reminders]` lists.
    holidays: u32,
    workdays: u32,
}

/// One department's figures (field meanings: `proto/exchange/v1/stats.proto`).
#[derive(Debug, Serialize)]
struct Row {
    #[serde(skip_serializing_if = "String::is_empty")]
    dept: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    sent: u64,
    received: u64,
    confirmed: u64,
    rejected: u64,
    unconfirmed: u64,
    recalled: u64,
    in_transit: u64,
    not_delivered: u64,
    withdrawn: u64,
    confirmed_on_time: u64,
    confirmed_late: u64,
    overdue_unconfirmed: u64,
    /// `confirmed_late + overdue_unconfirmed`.
    overdue: u64,
    /// `confirmed_on_time / (confirmed_on_time + confirmed_late)`, 0..1; null when 0/0.
    on_time_share: Option<f64>,
    /// Mean of (confirmed − delivered) over the same deliveries, in seconds; null when none.
    avg_sign_secs: Option<f64>,
}

impl Row {
    fn new(s: &pb::DeptStats) -> Self {
        let timed = s.confirmed_on_time + s.confirmed_late;
        let ratio = |n: u64| (timed > 0).then(|| n as f64 / timed as f64);
        Row {
            dept: s.dept.clone(),
            name: s.name.clone(),
            sent: s.sent,
            received: s.received,
            confirmed: s.confirmed,
            rejected: s.rejected,
            unconfirmed: s.unconfirmed,
            recalled: s.recalled,
            in_transit: s.in_transit,
            not_delivered: s.not_delivered,
            withdrawn: s.withdrawn,
            confirmed_on_time: s.confirmed_on_time,
            confirmed_late: s.confirmed_late,
            overdue_unconfirmed: s.overdue_unconfirmed,
            overdue: s.confirmed_late + s.overdue_unconfirmed,
            on_time_share: ratio(s.confirmed_on_time),
            avg_sign_secs: ratio(s.sign_ms_total).map(|ms| ms / 1000.0),
        }
    }

    fn cells(&self, label: &str) -> Vec<String> {
        let share = self
            .on_time_share
            .map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0));
        let avg = self.avg_sign_secs.map_or_else(|| "-".to_owned(), duration);
        vec![
            label.to_owned(),
            self.sent.to_string(),
            self.received.to_string(),
            self.confirmed.to_string(),
            share,
            avg,
            self.overdue.to_string(),
            self.rejected.to_string(),
            self.unconfirmed.to_string(),
            self.not_delivered.to_string(),
            self.name.clone(),
        ]
    }
}

impl Report {
    fn new(args: &StatsArgs, offset: UtcOffset, s: &pb::GetStatsResponse) -> Self {
        Report {
            from: args.from.map(|d| d.to_string()),
            to: args.to.map(|d| d.to_string()),
            timezone: format_offset(offset),
            as_of: format_ms(s.at_ms),
            thresholds_secs: Thresholds::new(s.very_urgent_secs, s.urgent_secs, s.normal_secs),
            thresholds_working_days: Thresholds::new(
                s.very_urgent_working_days,
                s.urgent_working_days,
                s.normal_working_days,
            ),
            calendar: CalendarInfo {
                utc_offset: s.utc_offset.clone(),
                holidays: s.holidays,
                workdays: s.workdays,
            },
            departments: s.departments.iter().map(Row::new).collect(),
            total: Row::new(&s.total.clone().unwrap_or_default()),
        }
    }

    /// The table: a heading with the period and thresholds, one row per department, the total.
    fn table(&self) -> String {
        let from = self.from.as_deref().unwrap_or("the beginning");
        let to = self.to.as_deref().unwrap_or("now");
        let (secs, days) = (&self.thresholds_secs, &self.thresholds_working_days);
        let within = |secs: Option<u64>, days: Option<u32>| match (secs, days) {
            (_, Some(1)) => "1 working day".to_owned(),
            (_, Some(n)) => format!("{n} working days"),
            (Some(s), None) => duration(s as f64),
            (None, None) => duration(0.0),
        };
        let c = &self.calendar;
        let mut out = format!(
            "period: {from} to {to} (days at {}, by acceptance at the hub); as of {}\n\
             on time: signed for within very-urgent {}, urgent {}, normal {} of delivery \
             (working days: Mon-Fri at {}, {} holidays, {} make-up days)\n",
            self.timezone,
            self.as_of,
            within(secs.very_urgent, days.very_urgent),
            within(secs.urgent, days.urgent),
            within(secs.normal, days.normal),
            c.utc_offset,
            c.holidays,
            c.workdays,
        );
        let head = [
            "DEPT",
            "SENT",
            "RECEIVED",
            "CONFIRMED",
            "ON-TIME",
            "AVG-SIGN",
            "OVERDUE",
            "REJECTED",
            "UNCONFIRMED",
            "NOT-DELIVERED",
            "NAME",
        ];
        let mut lines: Vec<Vec<String>> = vec![head.iter().map(|h| (*h).to_owned()).collect()];
        lines.extend(self.departments.iter().map(|r| r.cells(&r.dept)));
        lines.push(self.total.cells("total"));
        let mut widths = vec![0; head.len()];
        for l in &lines {
            for (w, c) in widths.iter_mut().zip(l) {
                *w = (*w).max(c.chars().count());
            }
        }
        for l in &lines {
            let mut cells = Vec::with_capacity(l.len());
            for (i, (c, w)) in l.iter().zip(&widths).enumerate() {
                cells.push(match i {
                    0 => format!("{c:<w$}"),
                    _ if i == l.len() - 1 => c.clone(), // the name, last: CJK widths vary
                    _ => format!("{c:>w$}"),
                });
            }
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration for people: `0.4s`, `42.0s`, `5m 03s`, `2h 05m`, `3d 04h`.
fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..60 => format!("{:.1}s", secs.max(0.0)),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: Option<&str>, to: Option<&str>) -> StatsArgs {
        StatsArgs {
            from: from.map(|d| parse_day(d).unwrap()),
            to: to.map(|d| parse_day(d).unwrap()),
            dept: None,
            json: false,
        }
    }

    #[test]
    fn days_are_the_offices_and_to_is_included() {
        let utc = Calendar {
            utc_offset: time::UtcOffset::UTC,
            ..Calendar::default()
        };
        let r = request(&args(Some("2026-11-20"), Some("2026-11-20")), &utc).unwrap();
        assert_eq!(r.from_ms, 1_795_132_800_000);
        assert_eq!(r.until_ms - r.from_ms, 86_400_000);
        // In Beijing the day starts 8 hours earlier.
        let cst = Calendar::default();
        let r = request(&args(Some("2026-11-20"), Some("2026-11-20")), &cst).unwrap();
        assert_eq!(r.from_ms, 1_795_132_800_000 - 8 * 3_600_000);
        assert_eq!(request(&args(None, None), &cst).unwrap().until_ms, 0);
        let err = request(&args(Some("2026-11-21"), Some("2026-11-20")), &cst).unwrap_err();
        assert!(err.0.contains("--from") && err.0.contains("--to"), "{err}");
        assert!(parse_day("2026-13-01").is_err());
        assert!(parse_day("20.11.2026").is_err());
    }

    #[test]
    fn shares_and_averages_come_from_the_timed_deliveries() {
        let row = Row::new(&pb::DeptStats {
            confirmed: 3,
            confirmed_on_time: 2,
            confirmed_late: 1,
            overdue_unconfirmed: 2,
            sign_ms_total: 9_000,
            ..Default::default()
        });
        assert_eq!(row.overdue, 3);
        assert_eq!(row.on_time_share, Some(2.0 / 3.0));
        assert_eq!(row.avg_sign_secs, Some(3.0));
        let empty = Row::new(&pb::DeptStats::default());
        assert_eq!((empty.on_time_share, empty.avg_sign_secs), (None, None));
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(7_500.0), "2h 05m");
        assert_eq!(duration(259_200.0), "3d 00h");
    }
}
