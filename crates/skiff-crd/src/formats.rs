//! The string formats kube-openapi's default registry checks, as far as apiextensions
//! keeps them (it drops unknown formats: a CRD may name any format, only these are
//! enforced). Names are compared with dashes removed (`date-time` is `datetime`).

use regex::Regex;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// Whether `format` is one kube enforces on strings.
pub(crate) fn is_known(format: &str) -> bool {
    // Most strings have no format: nothing to normalize for them.
    if format.is_empty() {
        return false;
    }
    matches!(
        normalize(format).as_str(),
        "bsonobjectid"
            | "uri"
            | "email"
            | "hostname"
            | "ipv4"
            | "ipv6"
            | "cidr"
            | "mac"
            | "uuid"
            | "uuid3"
            | "uuid4"
            | "uuid5"
            | "isbn"
            | "isbn10"
            | "isbn13"
            | "creditcard"
            | "ssn"
            | "hexcolor"
            | "rgbcolor"
            | "byte"
            | "password"
            | "date"
            | "duration"
            | "datetime"
    )
}

fn normalize(format: &str) -> String {
    format.replace('-', "")
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("format pattern"))
}

/// Whether `s` is valid for the (known) format; unknown formats accept anything.
pub(crate) fn validates(format: &str, s: &str) -> bool {
    static UUID: OnceLock<Regex> = OnceLock::new();
    static UUID3: OnceLock<Regex> = OnceLock::new();
    static UUID4: OnceLock<Regex> = OnceLock::new();
    static UUID5: OnceLock<Regex> = OnceLock::new();
    static HEX: OnceLock<Regex> = OnceLock::new();
    static BSON: OnceLock<Regex> = OnceLock::new();
    static SSN: OnceLock<Regex> = OnceLock::new();
    let h = "[0-9a-f]";
    match normalize(format).as_str() {
        "uri" => is_uri(s),
        "email" => is_email(s),
        "hostname" => is_hostname(s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => re(
            &UUID,
            &format!("(?i)^{h}{{8}}-?{h}{{4}}-?{h}{{4}}-?{h}{{4}}-?{h}{{12}}$"),
        )
        .is_match(s),
        "uuid3" => re(
            &UUID3,
            &format!("(?i)^{h}{{8}}-?{h}{{4}}-?3{h}{{3}}-?{h}{{4}}-?{h}{{12}}$"),
        )
        .is_match(s),
        "uuid4" => re(
            &UUID4,
            &format!("(?i)^{h}{{8}}-?{h}{{4}}-?4{h}{{3}}-?[89ab]{h}{{3}}-?{h}{{12}}$"),
        )
        .is_match(s),
        "uuid5" => re(
            &UUID5,
            &format!("(?i)^{h}{{8}}-?{h}{{4}}-?5{h}{{3}}-?[89ab]{h}{{3}}-?{h}{{12}}$"),
        )
        .is_match(s),
        "hexcolor" => re(&HEX, "^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$").is_match(s),
        "bsonobjectid" => re(&BSON, "^[0-9a-fA-F]{24}$").is_match(s),
        "ssn" => re(&SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$").is_match(s),
        "byte" => is_base64(s),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10,
        "datetime" => is_date_time(s),
        "duration" => is_duration(s),
        _ => true,
    }
}

fn is_uri(s: &str) -> bool {
    // Go's url.ParseRequestURI: an absolute URI or an absolute path, no fragment.
    if s.is_empty() || s.contains(' ') || s.contains('#') {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

fn is_email(s: &str) -> bool {
    // Go's mail.ParseAddress, roughly: an optional display name and <addr>, or an addr.
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(i), Some(_)) => &s[i + 1..s.len() - 1],
        _ => s.trim(),
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !addr.contains(char::is_whitespace)
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

fn is_hostname(s: &str) -> bool {
    static HOST: OnceLock<Regex> = OnceLock::new();
    let pattern = r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$";
    re(&HOST, pattern).is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn is_mac(s: &str) -> bool {
    // Go's net.ParseMAC: 6, 8 or 20 octets; `:`/`-` separated pairs or `.` separated quads.
    let octets = |parts: Vec<&str>, width: usize| {
        parts
            .iter()
            .all(|p| p.len() == width && p.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| parts.len() * width / 2)
    };
    let n = if s.contains(':') {
        octets(s.split(':').collect(), 2)
    } else if s.contains('-') {
        octets(s.split('-').collect(), 2)
    } else if s.contains('.') {
        octets(s.split('.').collect(), 4)
    } else {
        None
    };
    matches!(n, Some(6 | 8 | 20))
}

fn is_base64(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

fn is_date_time(s: &str) -> bool {
    static TIME: OnceLock<Regex> = OnceLock::new();
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if s.len() < 4 || !validates("date", date) {
        return false;
    }
    let rx = re(
        &TIME,
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$",
    );
    rx.captures(time)
        .is_some_and(|c| &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59")
}

fn is_duration(s: &str) -> bool {
    go_duration(s) || scala_duration(s)
}

/// Go's time.ParseDuration syntax: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+, or "0".
fn go_duration(s: &str) -> bool {
    static GO: OnceLock<Regex> = OnceLock::new();
    s == "0"
        || re(
            &GO,
            r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$",
        )
        .is_match(s)
}

/// kube-openapi's fallback: `<n> <unit>` pairs with units from ns to weeks.
fn scala_duration(s: &str) -> bool {
    static PAIR: OnceLock<Regex> = OnceLock::new();
    let units: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    re(&PAIR, r"((\d+)\s*([A-Za-zµ]+))")
        .captures_iter(s)
        .any(|c| {
            let unit = c[3].trim().to_lowercase();
            units.iter().any(|variants| {
                let last = variants.len() - 1;
                variants.iter().enumerate().any(|(i, v)| {
                    (i == last && unit.starts_with(v)) || unit.eq_ignore_ascii_case(v)
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let cases = [
            ("int32", "x", true),
            ("uri", "https://example.com/x", true),
            ("uri", "not a uri", false),
            ("email", "a@b.c", true),
            ("email", "nope", false),
            ("hostname", "example.com", true),
            ("hostname", "-bad-", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0.256", false),
            ("ipv6", "::1", true),
            ("ipv6", "10.0.0.1", false),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "00:11:22:33:44:55", true),
            ("mac", "00:11:22", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid", "123", false),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000", true),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "@@", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("date-time", "2024-01-02T03:04:05Z", true),
            ("date-time", "2024-01-02T25:04:05Z", false),
            ("duration", "1h30m", true),
            ("duration", "3 days", true),
            ("duration", "soon", false),
        ];
        for (f, s, ok) in cases {
            assert_eq!(validates(f, s), ok, "{f} {s}");
        }
        assert!(is_known("date-time") && !is_known("int32"));
    }
}
