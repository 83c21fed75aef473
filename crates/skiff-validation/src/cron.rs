//! Cron schedule syntax as Kubernetes accepts it (robfig/cron standard parser): five
//! fields, `@yearly`-style macros, `@every <duration>`, `TZ=`/`CRON_TZ=` prefixes
//! rejected in favour of `spec.timeZone`; and [`Schedule`], the times it fires at.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

const MACROS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

fn field(f: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(s) = step
            && s.parse::<u32>().ok().filter(|n| *n > 0).is_none()
        {
            return Err(format!("failed to parse int from {s}"));
        }
        if range == "*" || range == "?" {
            continue;
        }
        let val = |v: &str| -> Result<u32, String> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
                return Ok(i as u32 + min);
            }
            let n: u32 = v
                .parse()
                .map_err(|_| format!("failed to parse int from {v}"))?;
            if n < min || n > max {
                return Err(
                    format!("end of range ({n}) above maximum ({max}): {v}").replace(
                        "end of range",
                        if n < min {
                            "beginning of range"
                        } else {
                            "end of range"
                        },
                    ),
                );
            }
            Ok(n)
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (val(a)?, val(b)?);
                if a > b {
                    return Err(format!(
                        "beginning of range ({a}) beyond end of range ({b}): {range}"
                    ));
                }
            }
            None => {
                val(range)?;
            }
        }
    }
    Ok(())
}

pub fn validate(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if s.starts_with('@') {
        return if MACROS.contains(&s) || s.starts_with("@every ") {
            Ok(())
        } else {
            Err(format!("unrecognized descriptor: {s}"))
        };
    }
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: {s}", f.len()));
    }
    field(f[0], 0, 59, &[])?;
    field(f[1], 0, 23, &[])?;
    field(f[2], 1, 31, &[])?;
    field(
        f[3],
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    )?;
    field(
        f[4],
        0,
        6,
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    )?;
    Ok(())
}

/// A parsed schedule: the minutes, hours, days, months and weekdays it fires on, or a
/// constant interval (`@every`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        /// robfig/cron: when both day fields are restricted, either may match.
        dom_star: bool,
        dow_star: bool,
    },
    Every(Duration),
}

fn bits(f: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    field(f, min, max, names)?;
    let mut out = 0u64;
    let mut star = false;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap_or(1)),
            None => (part, 1),
        };
        let val = |v: &str| -> u32 {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(v))
                .map(|i| i as u32 + min)
                .unwrap_or_else(|| v.parse().unwrap_or(min))
        };
        let (a, b) = if range == "*" || range == "?" {
            star = star || step == 1;
            (min, max)
        } else {
            match range.split_once('-') {
                Some((a, b)) => (val(a), val(b)),
                // `5/15`: from 5 to the end, every 15.
                None if part.contains('/') => (val(range), max),
                None => (val(range), val(range)),
            }
        };
        let mut n = a;
        while n <= b {
            out |= 1 << n;
            n += step;
        }
    }
    Ok((out, star))
}

/// A Go `time.Duration` string (`8760h`, `1h30m`, `90s`, `250ms`).
pub fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, len) = [("ms", 1e-3), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .map(|(u, f)| (*f, u.len()))?;
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        rest = &rest[len..];
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::milliseconds((total * 1000.0) as i64))
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        validate(s)?;
        let s = s.trim();
        let expanded = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        if let Some(d) = expanded.strip_prefix("@every ") {
            return go_duration(d)
                .filter(|d| *d > Duration::zero())
                .map(Schedule::Every)
                .ok_or_else(|| format!("failed to parse duration {d}"));
        }
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let (minute, _) = bits(f[0], 0, 59, &[])?;
        let (hour, _) = bits(f[1], 0, 23, &[])?;
        let (dom, dom_star) = bits(f[2], 1, 31, &[])?;
        let months = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        let (month, _) = bits(f[3], 1, 12, &months)?;
        let (mut dow, dow_star) = bits(
            f[4],
            0,
            7,
            &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        )?;
        // 7 is Sunday too.
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Ok(Schedule::Fields {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, t: &NaiveDateTime) -> bool {
        let Schedule::Fields {
            dom,
            month,
            dow,
            dom_star,
            dow_star,
            ..
        } = self
        else {
            return true;
        };
        if month & (1 << t.month()) == 0 {
            return false;
        }
        let d = dom & (1 << t.day()) != 0;
        let w = dow & (1 << t.weekday().num_days_from_sunday()) != 0;
        if *dom_star || *dow_star {
            d && w
        } else {
            d || w
        }
    }

    /// The first time strictly after `after` that the schedule fires, in `tz`'s wall
    /// clock (a time skipped by a DST change does not fire; a repeated one fires once).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let (minute, hour) = match self {
            Schedule::Every(d) => {
                // robfig rounds the interval to whole seconds and fires from `after`.
                let secs = d.num_seconds().max(1);
                // An interval past the calendar's end (`@every 3000000000h`) never fires.
                return after
                    .with_nanosecond(0)?
                    .checked_add_signed(Duration::seconds(secs));
            }
            Schedule::Fields { minute, hour, .. } => (*minute, *hour),
        };
        let local = after.with_timezone(&tz).naive_local();
        let mut t = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        // Five years of days is more than any valid schedule needs (Feb 29 included).
        let limit = t + Duration::days(366 * 5);
        while t < limit {
            if !self.day_matches(&t) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if hour & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if minute & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            if let Some(u) = tz.from_local_datetime(&t).earliest() {
                let u = u.with_timezone(&Utc);
                if u > after {
                    return Some(u);
                }
            }
            t += Duration::minutes(1);
        }
        None
    }

    /// The latest time in (`since`, `now`] the schedule fired, and how many it fired
    /// (counting stops past `cap`, as Kubernetes stops at 100 missed starts).
    pub fn most_recent(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        tz: Tz,
        cap: usize,
    ) -> (Option<DateTime<Utc>>, usize) {
        let mut last = None;
        let mut count = 0;
        let mut t = since;
        while let Some(n) = self.next_after(t, tz) {
            if n > now {
                break;
            }
            last = Some(n);
            count += 1;
            t = n;
            if count > cap {
                // Too many to walk: jump to the last one before now.
                let mut probe = now - Duration::minutes(1);
                while probe > t {
                    if let Some(n) = self.next_after(probe - Duration::minutes(1), tz)
                        && n <= now
                    {
                        let mut m = n;
                        while let Some(x) = self.next_after(m, tz).filter(|x| *x <= now) {
                            m = x;
                        }
                        return (Some(m), count);
                    }
                    probe -= Duration::days(1);
                }
                break;
            }
        }
        (last, count)
    }
}

/// A `spec.timeZone` value from the tz database.
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn next_times() {
        let utc = chrono_tz::UTC;
        let every_min = Schedule::parse("*/1 * * * *").unwrap();
        assert_eq!(
            every_min.next_after(t("2026-01-01T00:00:30Z"), utc),
            Some(t("2026-01-01T00:01:00Z"))
        );
        let midnight = Schedule::parse("0 0 * * *").unwrap();
        assert_eq!(
            midnight.next_after(t("2026-01-01T00:00:00Z"), utc),
            Some(t("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            Schedule::parse("@hourly")
                .unwrap()
                .next_after(t("2026-01-01T10:59:59Z"), utc),
            Some(t("2026-01-01T11:00:00Z"))
        );
        // Weekdays 9-17 at :30; 2026-01-03 is a Saturday.
        let office = Schedule::parse("30 9-17 * * mon-fri").unwrap();
        assert_eq!(
            office.next_after(t("2026-01-02T17:45:00Z"), utc),
            Some(t("2026-01-05T09:30:00Z"))
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        let friday13 = Schedule::parse("0 0 13 * 5").unwrap();
        assert_eq!(
            friday13.next_after(t("2026-01-01T00:00:00Z"), utc),
            Some(t("2026-01-02T00:00:00Z"))
        );
        // Leap day.
        let leap = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            leap.next_after(t("2026-01-01T00:00:00Z"), utc),
            Some(t("2028-02-29T00:00:00Z"))
        );
        // Time zones: midnight in Tokyo is 15:00 UTC.
        let tokyo = time_zone("Asia/Tokyo").unwrap();
        assert_eq!(
            midnight.next_after(t("2026-01-01T00:00:00Z"), tokyo),
            Some(t("2026-01-01T15:00:00Z"))
        );
        assert!(time_zone("Mars/Olympus").is_err());
        assert_eq!(
            Schedule::parse("@every 90s")
                .unwrap()
                .next_after(t("2026-01-01T00:00:00Z"), utc),
            Some(t("2026-01-01T00:01:30Z"))
        );
        let (last, n) = every_min.most_recent(
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:05:30Z"),
            utc,
            100,
        );
        assert_eq!((last, n), (Some(t("2026-01-01T00:05:00Z")), 5));
        let (last, n) = every_min.most_recent(
            t("2026-01-01T00:00:00Z"),
            t("2026-01-02T00:00:30Z"),
            utc,
            100,
        );
        assert_eq!(last, Some(t("2026-01-02T00:00:00Z")));
        assert!(n > 100);
    }

    #[test]
    fn schedules() {
        for ok in [
            "0 0 * * *",
            "*/1 * * * *",
            "@hourly",
            "0 9-17 * * mon-fri",
            "5,10 0 1 1 0",
        ] {
            validate(ok).unwrap();
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "@sometimes",
            "TZ=UTC 0 0 * * *",
            "*/0 * * * *",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
