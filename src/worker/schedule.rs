//! Refresh schedules: `pgtrickle.schedule` values.
//!
//! Three forms:
//! - a duration, `'500ms'`, `'30s'`, `'5m'`, `'1h30m'`, `'1d'`: refresh when
//!   the stream table is older than that (`'0s'`: as soon as changes commit);
//! - a cron expression, five fields (`minute hour day-of-month month
//!   day-of-week`, each `*`, `n`, `a-b`, a list `a,b` and a step `/n`) or an
//!   alias (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
//!   `@yearly`, `@annually`);
//! - `'calculated'`: derived from the schedules of the stream tables that read
//!   this one.
//!
//! Parsing is pure Rust and validates completely, so a bad schedule is refused
//! when it is set, not when the scheduler first meets it.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    Cron(CronSpec),
    Calculated,
}

/// A parsed cron expression: one bit set per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSpec {
    pub minutes: u64,
    pub hours: u32,
    pub days_of_month: u32,
    pub months: u16,
    /// Bit 0 = Sunday … bit 6 = Saturday (7 is folded onto 0).
    pub days_of_week: u8,
    /// Whether day-of-month and day-of-week were both restricted (cron then
    /// fires when either matches).
    pub dom_restricted: bool,
    pub dow_restricted: bool,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("the schedule is empty".into());
        }
        if t.eq_ignore_ascii_case("calculated") {
            return Ok(Schedule::Calculated);
        }
        if let Some(alias) = t.strip_prefix('@') {
            let expr = match alias.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(format!("unknown cron alias \"@{alias}\"")),
            };
            return parse_cron(expr).map(Schedule::Cron);
        }
        if t.split_whitespace().count() > 1 {
            return parse_cron(t).map(Schedule::Cron);
        }
        parse_duration(t).map(Schedule::Every)
    }
}

/// `1h30m`, `500ms`, `45s`, `2d`: one or more number-unit pairs.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim().to_ascii_lowercase();
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = Duration::ZERO;
    if bytes.is_empty() {
        return Err("the duration is empty".into());
    }
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("\"{text}\" is not a duration (expected a number at \"{}\")", &s[start..]));
        }
        let n: u64 = s[start..i].parse().map_err(|_| format!("number too large in \"{text}\""))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: u64 = match &s[ustart..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("\"{text}\" needs a unit (ms, s, m, h or d)")),
            u => return Err(format!("unknown unit \"{u}\" in \"{text}\"")),
        };
        let ms = n.checked_mul(unit_ms).ok_or_else(|| format!("\"{text}\" is too long"))?;
        total =
            total.checked_add(Duration::from_millis(ms)).ok_or_else(|| format!("\"{text}\" is too long"))?;
    }
    Ok(total)
}

fn parse_field(field: &str, min: u32, max: u32, name: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let restricted = field != "*";
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step \"{s}\" in the {name} field"))?;
                if step == 0 {
                    return Err(format!("step 0 in the {name} field"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a, name)?, num(b, name)?)
        } else {
            let v = num(range, name)?;
            // "5/15" means from 5 to the end in steps of 15.
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("\"{part}\" is out of range {min}-{max} in the {name} field"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1u64 << v;
            v += step;
        }
    }
    Ok((bits, restricted))
}

fn num(s: &str, name: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("\"{s}\" is not a number in the {name} field"))
}

pub fn parse_cron(expr: &str) -> Result<CronSpec, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("a cron expression has 5 fields, \"{expr}\" has {}", fields.len()));
    }
    let (minutes, _) = parse_field(fields[0], 0, 59, "minute")?;
    let (hours, _) = parse_field(fields[1], 0, 23, "hour")?;
    let (dom, dom_restricted) = parse_field(fields[2], 1, 31, "day-of-month")?;
    let (months, _) = parse_field(fields[3], 1, 12, "month")?;
    let (mut dow, dow_restricted) = parse_field(fields[4], 0, 7, "day-of-week")?;
    if dow & (1 << 7) != 0 {
        dow = (dow | 1) & 0x7f;
    }
    Ok(CronSpec {
        minutes,
        hours: hours as u32,
        days_of_month: dom as u32,
        months: months as u16,
        days_of_week: dow as u8,
        dom_restricted,
        dow_restricted,
    })
}

impl CronSpec {
    /// The first minute strictly after `after` (Unix seconds, UTC) at which
    /// the expression fires, as Unix seconds; `None` if it never fires
    /// (e.g. `0 0 31 2 *`). Cron schedules are read in UTC.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let first_minute = after.div_euclid(60) + 1;
        let first_day = first_minute.div_euclid(1440);
        let mut minute_of_day = first_minute.rem_euclid(1440) as u32;
        // Every valid day/month combination recurs within 8 years (Feb 29).
        for day in first_day..first_day + 366 * 8 {
            let (_, month, dom) = civil_from_days(day);
            // 1970-01-01 was a Thursday.
            let dow = (day + 4).rem_euclid(7) as u32;
            let dom_ok = self.days_of_month & (1 << dom) != 0;
            let dow_ok = self.days_of_week & (1 << dow) != 0;
            let day_ok =
                if self.dom_restricted && self.dow_restricted { dom_ok || dow_ok } else { dom_ok && dow_ok };
            if self.months & (1 << month) != 0 && day_ok {
                for m in minute_of_day..1440 {
                    let (h, mi) = (m / 60, m % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << mi) != 0 {
                        return Some((day * 1440 + m as i64) * 60);
                    }
                }
            }
            minute_of_day = 0;
        }
        None
    }
}

/// Is a stream table `staleness_seconds` behind its sources more than its
/// schedule allows? More than twice the period, and at least 5 s beyond it;
/// never for no schedule or `'calculated'`.
pub fn is_stale(schedule: Option<&str>, staleness_seconds: f64) -> bool {
    let period = match schedule.map(Schedule::parse) {
        Some(Ok(Schedule::Every(d))) => d.as_secs_f64(),
        // The longest gap between firings (weekends for '0 9 * * 1-5'),
        // over the first 400 firings after a fixed day.
        Some(Ok(Schedule::Cron(spec))) => {
            let mut at = 0;
            let mut longest = 0;
            for _ in 0..400 {
                let Some(next) = spec.next_after(at) else { break };
                if at > 0 {
                    longest = longest.max(next - at);
                }
                at = next;
            }
            if longest == 0 {
                return false;
            }
            longest as f64
        }
        _ => return false,
    };
    staleness_seconds > (2.0 * period).max(period + 5.0)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1D").unwrap(), Duration::from_secs(86400));
        for bad in ["", "5", "m", "5x", "1h30", "-1s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn cron_fields() {
        let c = parse_cron("*/15 2-4 * * 1,7").unwrap();
        assert_eq!(c.minutes, (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45));
        assert_eq!(c.hours, 0b11100);
        assert_eq!(c.days_of_week, 0b11, "7 folds onto Sunday");
        assert!(!c.dom_restricted && c.dow_restricted);
        assert_eq!(parse_cron("5/20 * * * *").unwrap().minutes, (1 << 5) | (1 << 25) | (1 << 45));
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn schedule_forms() {
        assert_eq!(Schedule::parse("calculated").unwrap(), Schedule::Calculated);
        assert!(matches!(Schedule::parse("@hourly").unwrap(), Schedule::Cron(_)));
        assert!(matches!(Schedule::parse("0 * * * *").unwrap(), Schedule::Cron(_)));
        assert!(matches!(Schedule::parse(" 10s ").unwrap(), Schedule::Every(_)));
        assert!(Schedule::parse("@sometimes").is_err());
        assert!(Schedule::parse("   ").is_err());
    }

    #[test]
    fn cron_next_fire() {
        // 2026-11-25 19:34:30 UTC (a Wednesday).
        let t = 1_795_635_270;
        assert_eq!(civil_from_days(t / 86_400), (2026, 11, 25));
        let every15 = parse_cron("*/15 * * * *").unwrap();
        assert_eq!(every15.next_after(t), Some(1_795_635_900));
        let hourly = match Schedule::parse("@hourly").unwrap() {
            Schedule::Cron(c) => c,
            _ => unreachable!(),
        };
        assert_eq!(hourly.next_after(t), Some(t - 34 * 60 - 30 + 3600));
        // Exactly on a firing minute: the next one, not the same.
        assert_eq!(hourly.next_after(t - 34 * 60 - 30 + 3600), Some(t - 34 * 60 - 30 + 7200));
        // Mondays at 09:00: 2026-11-30.
        let monday = parse_cron("0 9 * * 1").unwrap();
        assert_eq!(monday.next_after(t), Some(1_796_029_200));
        // Day-of-month or day-of-week when both are restricted: the 1st or a Friday.
        let either = parse_cron("0 0 1 * 5").unwrap();
        assert_eq!(either.next_after(t), Some(1_795_737_600));
        // Feb 29 only: next is 2028-02-29.
        let leap = parse_cron("0 0 29 2 *").unwrap();
        assert_eq!(civil_from_days(leap.next_after(t).unwrap() / 86_400), (2028, 2, 29));
        assert_eq!(parse_cron("0 0 31 2 *").unwrap().next_after(t), None);
    }

    #[test]
    fn staleness_limits() {
        assert!(!is_stale(Some("10s"), 20.0));
        assert!(is_stale(Some("10s"), 20.5));
        assert!(!is_stale(Some("0s"), 4.0), "at least 5 s of slack");
        assert!(is_stale(Some("0s"), 6.0));
        assert!(!is_stale(Some("@hourly"), 7000.0));
        assert!(is_stale(Some("@hourly"), 7300.0));
        // Weekdays at 09:00: the weekend gap (3 days) is the period.
        assert!(!is_stale(Some("0 9 * * 1-5"), 3.0 * 86_400.0));
        assert!(is_stale(Some("0 9 * * 1-5"), 7.0 * 86_400.0));
        assert!(!is_stale(Some("calculated"), 1e9));
        assert!(!is_stale(None, 1e9));
    }
}
