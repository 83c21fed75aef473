//! Where the server's memory goes, from its `/metrics`: what the watch cache holds by
//! storage prefix, the versions only its event ring keeps, open connections and
//! watches, beside the RSS they are part of.

use kube::Client;

/// One metric family's samples: (labels, value).
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, v) = r.split_once('}')?;
                    (labels.to_string(), v)
                }
                None if rest.starts_with(' ') => (String::new(), rest),
                None => return None,
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// Lines describing the server's footprint, largest cache prefixes first.
pub async fn report(client: &Client, rss_mib: f64) -> anyhow::Result<Vec<String>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let mut bytes = samples(&text, "skiff_watch_cache_object_bytes");
    bytes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let counts = samples(&text, "skiff_watch_cache_objects");
    let count_of = |labels: &str| {
        counts
            .iter()
            .find(|(l, _)| l == labels)
            .map_or(0.0, |(_, v)| *v)
    };
    let total: f64 = bytes.iter().map(|(_, v)| v).sum();
    let one = |name: &str| samples(&text, name).first().map_or(0.0, |(_, v)| *v);
    let mut out = vec![format!(
        "server RSS {rss_mib:.1} MiB; watch cache objects {:.1} MiB, history only the ring holds {:.1} MiB ({} events); {} connections, {} watches",
        mib(total),
        mib(one("skiff_watch_cache_history_bytes")),
        one("skiff_watch_cache_history_events"),
        one("skiff_open_connections"),
        one("apiserver_longrunning_requests"),
    )];
    for (labels, b) in bytes.iter().take(6) {
        let prefix = labels.trim_start_matches("prefix=").trim_matches('"');
        out.push(format!(
            "    {prefix:<24} {:>8.0} objects {:>8.1} MiB",
            count_of(labels),
            mib(*b)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labelled_and_plain_samples() {
        let text = "# HELP x\nskiff_watch_cache_object_bytes{prefix=\"pods\"} 2048\nskiff_watch_cache_history_bytes 7\nskiff_watch_cache_history_bytes_total 9\n";
        assert_eq!(
            samples(text, "skiff_watch_cache_object_bytes"),
            vec![("prefix=\"pods\"".to_string(), 2048.0)]
        );
        assert_eq!(
            samples(text, "skiff_watch_cache_history_bytes"),
            vec![(String::new(), 7.0)]
        );
    }
}
