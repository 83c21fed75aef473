//! Container logs from CRI log files, as kubelet serves them: each file line is
//! `<RFC3339Nano time> <stdout|stderr> <P|F> <content>` (P: a partial line continued by
//! the next). Options: tailLines, sinceSeconds/sinceTime, timestamps, limitBytes, follow.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    /// From the query kubectl sends; errors name the parameter as Kubernetes does.
    pub fn parse(query: &str) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let truthy = |v: &str| matches!(v, "true" | "1");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "follow" => o.follow = truthy(&v),
                "previous" => o.previous = truthy(&v),
                "timestamps" => o.timestamps = truthy(&v),
                "tailLines" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("tailLines: invalid value {v:?}"))?;
                    if n < 0 {
                        return Err("tailLines: must be greater than or equal to 0".into());
                    }
                    o.tail_lines = Some(n as usize);
                }
                "limitBytes" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("limitBytes: invalid value {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as usize);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("sinceSeconds: invalid value {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: must be greater than 0".into());
                    }
                    o.since = Some(Utc::now() - chrono::Duration::seconds(n));
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(&v)
                        .map_err(|_| format!("sinceTime: invalid value {v:?}"))?;
                    o.since = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq)]
pub struct CriLine<'a> {
    pub time: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

pub fn parse_line(line: &str) -> Option<CriLine<'_>> {
    let mut it = line.splitn(4, ' ');
    let time = it.next()?;
    let _stream = it.next()?;
    let tag = it.next()?;
    let content = it.next().unwrap_or("");
    Some(CriLine {
        time,
        partial: tag == "P",
        content,
    })
}

/// Renders complete file lines into what a client sees: partial lines joined, the
/// time prefixed when asked, lines before `since` dropped.
pub fn render(lines: &[&str], o: &LogOptions) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut first_time: Option<String> = None;
    for l in lines {
        let Some(p) = parse_line(l) else { continue };
        if let Some(since) = o.since
            && DateTime::parse_from_rfc3339(p.time).is_ok_and(|t| t.with_timezone(&Utc) < since)
        {
            continue;
        }
        first_time.get_or_insert_with(|| p.time.to_string());
        pending.push_str(p.content);
        if !p.partial {
            let t = first_time.take().unwrap_or_default();
            let line = if o.timestamps {
                format!("{t} {pending}\n")
            } else {
                format!("{pending}\n")
            };
            out.push(line);
            pending.clear();
        }
    }
    out
}

/// The last `tail` entries (all when None).
pub fn tail(lines: Vec<String>, tail: Option<usize>) -> Vec<String> {
    match tail {
        Some(n) if n < lines.len() => lines[lines.len() - n..].to_vec(),
        _ => lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &[&str] = &[
        "2026-01-01T00:00:01.000000001Z stdout F one",
        "2026-01-01T00:00:02.000000000Z stderr P tw",
        "2026-01-01T00:00:02.100000000Z stderr F o",
        "2026-01-01T00:00:03.000000000Z stdout F three",
        "2026-01-01T00:00:04.000000000Z stdout F ",
    ];

    #[test]
    fn joins_partials_and_prefixes_times() {
        let o = LogOptions::default();
        assert_eq!(render(FILE, &o), ["one\n", "two\n", "three\n", "\n"]);
        let o = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(render(FILE, &o)[1], "2026-01-01T00:00:02.000000000Z two\n");
    }

    #[test]
    fn since_and_tail() {
        let o = LogOptions::parse("sinceTime=2026-01-01T00:00:02.5Z").unwrap();
        assert_eq!(render(FILE, &o), ["three\n", "\n"]);
        let o = LogOptions::parse("tailLines=2").unwrap();
        assert_eq!(tail(render(FILE, &o), o.tail_lines), ["three\n", "\n"]);
        assert_eq!(tail(render(FILE, &o), Some(0)), Vec::<String>::new());
    }

    #[test]
    fn bad_options_name_the_parameter() {
        assert!(
            LogOptions::parse("tailLines=x")
                .unwrap_err()
                .contains("tailLines")
        );
        assert!(
            LogOptions::parse("limitBytes=0")
                .unwrap_err()
                .contains("limitBytes")
        );
        assert!(
            LogOptions::parse("sinceTime=yesterday")
                .unwrap_err()
                .contains("sinceTime")
        );
        let o =
            LogOptions::parse("follow=true&previous=true&timestamps=true&limitBytes=10").unwrap();
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!(o.limit_bytes, Some(10));
    }
}

/// Log rotation as kubelet does it (containerLogMaxSize, containerLogMaxFiles): a
/// running container's log file past the size limit is renamed with a timestamp suffix
/// and the runtime reopens it; only `max_files - 1` rotated files are kept.
pub mod rotation {
    use std::path::{Path, PathBuf};

    /// kubelet's suffix format (`20060102-150405`).
    pub fn suffix(now: chrono::DateTime<chrono::Utc>) -> String {
        now.format("%Y%m%d-%H%M%S").to_string()
    }

    /// The rotated files of `log` (`<log>.<suffix>`), oldest first.
    pub fn rotated(log: &Path) -> Vec<PathBuf> {
        let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str()))
        else {
            return Vec::new();
        };
        let prefix = format!("{name}.");
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp"))
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Which of `rotated` (oldest first) to delete so that, with one more rotation,
    /// `max_files` files remain including the live one.
    pub fn to_delete(rotated: &[PathBuf], max_files: usize) -> &[PathBuf] {
        let keep = max_files.saturating_sub(2);
        &rotated[..rotated.len().saturating_sub(keep)]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keeps_max_files_with_the_live_one() {
            let r: Vec<PathBuf> = (1..=5)
                .map(|i| PathBuf::from(format!("0.log.2026010{i}-000000")))
                .collect();
            // 5 files in all: the live one, the one about to be rotated, three older.
            assert_eq!(to_delete(&r, 5), &r[..2]);
            assert_eq!(to_delete(&r[..2], 5), &[] as &[PathBuf]);
            assert_eq!(to_delete(&r, 2), &r[..]);
            let t = chrono::DateTime::parse_from_rfc3339("2026-11-25T08:09:10Z")
                .unwrap()
                .with_timezone(&chrono::Utc);
            assert_eq!(suffix(t), "20261125-080910");
        }

        #[test]
        fn finds_rotated_files_oldest_first() {
            let d = tempfile::tempdir().unwrap();
            let log = d.path().join("0.log");
            for n in [
                "0.log",
                "0.log.20260102-000000",
                "0.log.20260101-000000",
                "1.log",
            ] {
                std::fs::write(d.path().join(n), "x").unwrap();
            }
            assert_eq!(
                rotated(&log),
                [
                    d.path().join("0.log.20260101-000000"),
                    d.path().join("0.log.20260102-000000")
                ]
            );
        }
    }
}
