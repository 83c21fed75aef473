//! Name and value syntax checks, with apimachinery's messages
//! (k8s.io/apimachinery/pkg/util/validation/validation.go).

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const ENV_VAR_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

fn is_label_body(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push("must be no more than 63 characters".into());
    }
    if !is_label_body(s) {
        e.push(DNS1123_LABEL_MSG.into());
    }
    e
}

pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push("must be no more than 253 characters".into());
    }
    if s.is_empty() || !s.split('.').all(is_label_body) {
        e.push(DNS1123_SUBDOMAIN_MSG.into());
    }
    e
}

pub fn is_dns1123_label(s: &str) -> Vec<String> {
    dns1123_label(s)
}

pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    dns1123_subdomain(s)
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Label and annotation keys: `[prefix/]name`.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            e.push("prefix part must be non-empty".into());
        } else {
            e.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        e.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 {
            e.push("name part must be no more than 63 characters".into());
        }
        if !is_qualified_part(name) {
            e.push(QUALIFIED_NAME_MSG.into());
        }
    }
    e
}

pub fn label_value(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push("must be no more than 63 characters".into());
    }
    if !s.is_empty() && !is_qualified_part(s) {
        e.push(LABEL_VALUE_MSG.into());
    }
    e
}

pub fn config_key(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push("must be no more than 253 characters".into());
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        e.push(CONFIG_KEY_MSG.into());
    }
    if s == "." || s == ".." {
        e.push(format!("must not be '{s}'"));
    } else if s.starts_with("..") {
        e.push("must not start with '..'".into());
    }
    e
}

pub fn env_var_name(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    let mut e = if ok {
        Vec::new()
    } else {
        vec![ENV_VAR_MSG.to_string()]
    };
    if s == "." || s == ".." {
        e.push(format!("must not be '{s}'"));
    }
    e
}

/// IANA service names (port names).
pub fn port_name(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 15 {
        e.push("must be no more than 15 characters".into());
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        e.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        e.push("must not contain consecutive hyphens".into());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        e.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        e.push("must not begin or end with a hyphen".into());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("my-pod.x").is_empty());
        assert!(!dns1123_subdomain("My_Pod").is_empty());
        assert!(!dns1123_subdomain("").is_empty());
        assert!(dns1123_label("web-1").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert_eq!(
            dns1123_label(&"a".repeat(64))[0],
            "must be no more than 63 characters"
        );
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name("-bad").is_empty());
        assert!(!qualified_name("/x").is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("a b").is_empty());
        assert!(config_key("app.properties").is_empty());
        assert!(!config_key("a/b").is_empty());
        assert!(env_var_name("MY_VAR.x-1").is_empty());
        assert!(!env_var_name("1VAR").is_empty());
        assert!(port_name("http").is_empty());
        assert!(!port_name("123").is_empty());
        assert!(!port_name("a-very-long-port-name").is_empty());
    }
}
