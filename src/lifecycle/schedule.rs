//! A policy's schedule: a cron expression in UTC, or the sugar operators type most
//! (`every 15m`, `hourly`, `daily 02:00`, `weekly sun 03:00`), translated into cron's
//! own syntax so one well-kept parser walks every schedule.
//!
//! Slots are instants in Unix milliseconds. The scheduler asks two questions: is a slot
//! due since the last one run ([`Schedule::latest_due`]), and when is the next
//! ([`Schedule::next_after`]).

use std::str::FromStr;

use chrono::{DateTime, Utc};

/// Longest walk through missed slots before giving up on naming the latest exactly
/// (a schedule every second, a server down for over a day): then `now` stands for it.
const MAX_WALK: usize = 100_000;

#[derive(Clone, Debug)]
pub struct Schedule {
    cron: cron::Schedule,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("schedule {spec:?}: {why}")]
pub struct ScheduleError {
    pub spec: String,
    pub why: String,
}

impl Schedule {
    /// Parses `spec`: the sugar forms, or cron with 5 fields (minute first, as crontab)
    /// or 6–7 (seconds first, optional year).
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        let fail = |why: String| ScheduleError {
            spec: spec.to_string(),
            why,
        };
        let expression = to_cron(spec.trim()).map_err(fail)?;
        let cron = cron::Schedule::from_str(&expression)
            .map_err(|e| fail(format!("not a cron expression ({e})")))?;
        let schedule = Schedule { cron };
        if schedule.next_after(0).is_none() {
            return Err(fail("it names no instant at all".into()));
        }
        Ok(schedule)
    }

    /// The first slot strictly after `ms`.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let from = DateTime::<Utc>::from_timestamp_millis(ms)?;
        self.cron.after(&from).next().map(|t| t.timestamp_millis())
    }

    /// The latest slot in `(after_ms, now_ms]`: the one to run when any is due. However
    /// many were missed (a server stopped across several), one run stands for them all.
    pub fn latest_due(&self, after_ms: i64, now_ms: i64) -> Option<i64> {
        let from = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
        let mut latest = None;
        for (walked, slot) in self.cron.after(&from).enumerate() {
            let slot = slot.timestamp_millis();
            if slot > now_ms {
                return latest;
            }
            if walked >= MAX_WALK {
                return Some(now_ms);
            }
            latest = Some(slot);
        }
        latest
    }
}

/// The cron expression `spec` stands for, seconds first.
fn to_cron(spec: &str) -> Result<String, String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    match words.as_slice() {
        [] => Err("empty".into()),
        ["hourly"] => Ok("0 0 * * * *".into()),
        ["every", interval] => every(interval),
        ["daily", at] => {
            let (h, m) = time_of_day(at)?;
            Ok(format!("0 {m} {h} * * *"))
        }
        ["weekly", day, at] => {
            let day = weekday(day)?;
            let (h, m) = time_of_day(at)?;
            Ok(format!("0 {m} {h} * * {day}"))
        }
        [_, _, _, _, _] => Ok(format!("0 {spec}")),
        [_, _, _, _, _, _] | [_, _, _, _, _, _, _] => Ok(spec.to_string()),
        _ => Err(
            "expected cron (5 fields, or 6-7 with seconds first), \"every 15m\", \
                  \"hourly\", \"daily HH:MM\" or \"weekly DAY HH:MM\""
                .into(),
        ),
    }
}

/// `every Ns|Nm|Nh`: slots at whole multiples since midnight UTC, so N must divide the
/// minute, hour or day evenly (cron's `*/N` restarts at each boundary).
fn every(interval: &str) -> Result<String, String> {
    let split = interval
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("interval {interval:?} has no unit (s, m or h)"))?;
    let (count, unit) = interval.split_at(split);
    let n: u32 = count
        .parse()
        .map_err(|_| format!("interval {interval:?} needs a number before its unit"))?;
    let (whole, field) = match unit {
        "s" => (60, "*/{n} * * * * *"),
        "m" => (60, "0 */{n} * * * *"),
        "h" => (24, "0 0 */{n} * * *"),
        other => return Err(format!("unit {other:?}: expected s, m or h")),
    };
    if n == 0 || whole % n != 0 {
        return Err(format!(
            "every {n}{unit}: the interval must divide {whole}{unit} evenly"
        ));
    }
    Ok(field.replace("{n}", &n.to_string()))
}

fn time_of_day(at: &str) -> Result<(u32, u32), String> {
    let parsed = at.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60 && at.len() <= 5).then_some((h, m))
    });
    parsed.ok_or_else(|| format!("time {at:?}: expected HH:MM, 00:00 to 23:59 (UTC)"))
}

fn weekday(day: &str) -> Result<&'static str, String> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    DAYS.iter()
        .find(|d| d.eq_ignore_ascii_case(day) || full_name(d).eq_ignore_ascii_case(day))
        .copied()
        .ok_or_else(|| format!("day {day:?}: expected sun, mon, tue, wed, thu, fri or sat"))
}

fn full_name(day: &str) -> &'static str {
    match day {
        "Sun" => "sunday",
        "Mon" => "monday",
        "Tue" => "tuesday",
        "Wed" => "wednesday",
        "Thu" => "thursday",
        "Fri" => "friday",
        _ => "saturday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-12-06 (a Sunday) 00:00:00 UTC.
    const SUNDAY: i64 = 1_796_515_200_000;
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn next(spec: &str, ms: i64) -> i64 {
        Schedule::parse(spec).unwrap().next_after(ms).unwrap()
    }

    #[test]
    fn sugar_means_what_it_says() {
        assert_eq!(next("every 15m", SUNDAY), SUNDAY + 15 * MIN);
        assert_eq!(next("every 15m", SUNDAY + 1), SUNDAY + 15 * MIN);
        assert_eq!(next("every 2s", SUNDAY + 500), SUNDAY + 2000);
        assert_eq!(next("every 6h", SUNDAY), SUNDAY + 6 * HOUR);
        assert_eq!(next("hourly", SUNDAY + 1), SUNDAY + HOUR);
        assert_eq!(next("daily 02:00", SUNDAY), SUNDAY + 2 * HOUR);
        assert_eq!(
            next("daily 02:00", SUNDAY + 3 * HOUR),
            SUNDAY + DAY + 2 * HOUR
        );
        assert_eq!(next("weekly sun 03:00", SUNDAY), SUNDAY + 3 * HOUR);
        assert_eq!(
            next("weekly Sunday 03:00", SUNDAY + 4 * HOUR),
            SUNDAY + 7 * DAY + 3 * HOUR
        );
        assert_eq!(next("weekly mon 00:30", SUNDAY), SUNDAY + DAY + 30 * MIN);
    }

    #[test]
    fn cron_in_both_widths() {
        // crontab's five fields (minute first) and cron's own six (seconds first).
        assert_eq!(next("30 2 * * *", SUNDAY), SUNDAY + 2 * HOUR + 30 * MIN);
        assert_eq!(
            next("10 30 2 * * *", SUNDAY),
            SUNDAY + 2 * HOUR + 30 * MIN + 10_000
        );
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, says) in [
            ("", "empty"),
            ("every 7m", "divide 60m"),
            ("every 0s", "divide"),
            ("every 5", "no unit"),
            ("every 5d", "expected s, m or h"),
            ("daily 25:00", "HH:MM"),
            ("daily 2", "HH:MM"),
            ("weekly fun 03:00", "day \"fun\""),
            ("61 * * * *", "not a cron expression"),
            ("now please", "expected cron"),
        ] {
            let e = Schedule::parse(spec).unwrap_err();
            assert!(e.to_string().contains(says), "{spec:?}: {e}");
        }
    }

    #[test]
    fn one_catch_up_for_many_missed_slots() {
        let s = Schedule::parse("every 2s").unwrap();
        // Last run at +0; the server was down until +7.5 s: slots 2, 4 and 6 missed.
        assert_eq!(s.latest_due(SUNDAY, SUNDAY + 7_500), Some(SUNDAY + 6_000));
        assert_eq!(s.latest_due(SUNDAY, SUNDAY + 1_999), None);
        assert_eq!(s.latest_due(SUNDAY + 6_000, SUNDAY + 7_500), None);
        // A walk too long to finish names now.
        let every_second = Schedule::parse("every 1s").unwrap();
        assert_eq!(every_second.latest_due(0, SUNDAY), Some(SUNDAY));
    }

    proptest! {
        /// Every form's next slot is after the instant asked, due slots are never in the
        /// future, and nothing due is left before the next slot.
        #[test]
        fn slots_are_ordered(
            spec in prop::sample::select(vec![
                "every 2s", "every 15m", "every 4h", "hourly", "daily 02:00",
                "weekly sun 03:00", "*/5 * * * *",
            ]),
            at in SUNDAY..SUNDAY + 30 * DAY,
            gap in 0i64..3 * DAY,
        ) {
            let s = Schedule::parse(spec).unwrap();
            let n = s.next_after(at).unwrap();
            prop_assert!(n > at);
            match s.latest_due(at, at + gap) {
                Some(due) => {
                    prop_assert!(due > at && due <= at + gap);
                    prop_assert!(s.next_after(due).unwrap() > at + gap);
                }
                None => prop_assert!(n > at + gap),
            }
        }
    }
}
