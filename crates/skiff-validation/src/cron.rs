//! Cron schedule syntax as Kubernetes accepts it (robfig/cron standard parser): five
//! fields, `@yearly`-style macros, `TZ=`/`CRON_TZ=` prefixes rejected in favour of
//! `spec.timeZone`.

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

#[cfg(test)]
mod tests {
    #[test]
    fn schedules() {
        for ok in [
            "0 0 * * *",
            "*/1 * * * *",
            "@hourly",
            "0 9-17 * * mon-fri",
            "5,10 0 1 1 0",
        ] {
            super::validate(ok).unwrap();
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "@sometimes",
            "TZ=UTC 0 0 * * *",
            "*/0 * * * *",
        ] {
            assert!(super::validate(bad).is_err(), "{bad}");
        }
    }
}
