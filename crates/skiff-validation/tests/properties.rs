//! Property tests of the parsers that read what clients type: label and field selectors,
//! quantities and cron schedules. Arbitrary input may be refused but never panic, and
//! what a selector prints parses back to a selector that matches the same label sets.
//!
//! They run in plain `cargo test` (so in CI through scripts/test.sh) with a bounded number
//! of cases each; `PROPTEST_CASES=100000 cargo test -p skiff-validation --test properties`
//! searches deeper.

use proptest::prelude::*;
use skiff_validation::{cron, fields, labels, quantity};
use std::collections::BTreeMap;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        // Failures are kept as named regression tests below, not as files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- label selectors

/// The characters of the selector grammar, so arbitrary strings reach every branch.
fn selectorish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9]{1,3}",
            1 => prop::sample::select(vec![
                "=", "==", "!=", "!", ",", "(", ")", " ", " in ", " notin ", "in", "notin",
                "/", ".", "-", "_", "\t", "é", "\u{0}",
            ])
            .prop_map(str::to_string),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn name_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]",
        "[a-zA-Z0-9][-a-zA-Z0-9_.]{0,10}[a-zA-Z0-9]",
        // The longest allowed.
        "[a-z]{63}",
    ]
}

/// A label key: `[prefix/]name` with a DNS subdomain prefix.
fn label_key() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(
            0.3,
            prop::collection::vec("[a-z0-9]([-a-z0-9]{0,4}[a-z0-9])?", 1..3),
        ),
        name_part(),
    )
        .prop_map(|(prefix, name)| match prefix {
            Some(labels) => format!("{}/{name}", labels.join(".")),
            None => name,
        })
}

/// A label value: empty or a name part.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![1 => Just(String::new()), 4 => name_part()]
}

fn op() -> impl Strategy<Value = labels::Op> {
    prop::sample::select(vec![
        labels::Op::Equals,
        labels::Op::NotEquals,
        labels::Op::In,
        labels::Op::NotIn,
        labels::Op::Exists,
        labels::Op::DoesNotExist,
    ])
}

/// A valid selector over a small pool of keys and values (so that generated label sets hit
/// them), built as a structure rather than a string.
fn selector(keys: Vec<String>, values: Vec<String>) -> impl Strategy<Value = labels::Selector> {
    let requirement = (
        prop::sample::select(keys),
        op(),
        prop::collection::vec(prop::sample::select(values), 1..4),
    )
        .prop_map(|(key, op, mut values)| {
            match op {
                labels::Op::Equals | labels::Op::NotEquals => values.truncate(1),
                labels::Op::Exists | labels::Op::DoesNotExist => values.clear(),
                labels::Op::In | labels::Op::NotIn => {}
            }
            labels::Requirement { key, op, values }
        });
    prop::collection::vec(requirement, 0..5)
        .prop_map(|requirements| labels::Selector { requirements })
}

/// Pools of keys and values, a selector over them, and label sets drawn from the same pools.
fn selector_and_label_sets()
-> impl Strategy<Value = (labels::Selector, Vec<BTreeMap<String, String>>)> {
    (
        prop::collection::vec(label_key(), 1..4),
        prop::collection::vec(label_value(), 1..4),
    )
        .prop_flat_map(|(keys, values)| {
            let set = prop::collection::btree_map(
                prop::sample::select(keys.clone()),
                prop::sample::select(values.clone()),
                0..4,
            );
            (selector(keys, values), prop::collection::vec(set, 1..8))
        })
}

/// Whether a set is the empty value alone: Kubernetes' `String()` prints it as `()`,
/// which its parser refuses as an empty set; skiff prints and parses both alike.
fn has_set_of_only_empty(s: &labels::Selector) -> bool {
    s.requirements
        .iter()
        .any(|r| matches!(r.op, labels::Op::In | labels::Op::NotIn) && r.values == [String::new()])
}

/// The requirements in the order `Display` prints them, each with its values sorted.
fn normalized(s: &labels::Selector) -> Vec<labels::Requirement> {
    let mut reqs = s.requirements.clone();
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    for r in &mut reqs {
        r.values.sort();
    }
    reqs
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn label_selector_parse_never_panics(s in any::<String>()) {
        let _ = labels::Selector::parse(&s);
    }

    /// What parses prints as a selector that parses again to the same selector.
    #[test]
    fn label_selector_parse_print_is_stable(s in selectorish()) {
        if let Ok(sel) = labels::Selector::parse(&s) {
            let printed = sel.to_string();
            let again = labels::Selector::parse(&printed)
                .map_err(|e| TestCaseError::fail(format!("{printed:?} does not parse: {e}")))?;
            prop_assert_eq!(normalized(&again), normalized(&sel), "printed as {:?}", printed);
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// `parse(to_string(sel))` is `sel` (up to the order `Display` sorts into) and matches
    /// exactly the label sets `sel` matches.
    #[test]
    fn label_selector_round_trips((sel, sets) in selector_and_label_sets()) {
        let printed = sel.to_string();
        if has_set_of_only_empty(&sel) {
            prop_assert!(labels::Selector::parse(&printed).is_err(), "{:?}", printed);
            return Ok(());
        }
        let back = labels::Selector::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{printed:?} does not parse: {e}")))?;
        prop_assert_eq!(normalized(&back), normalized(&sel), "printed as {:?}", printed);
        for set in &sets {
            prop_assert_eq!(back.matches(set), sel.matches(set), "{:?} on {:?}", printed, set);
        }
    }

    /// A `metav1.LabelSelector` and the string it prints select the same label sets.
    #[test]
    fn label_selector_json_and_string_agree((sel, sets) in selector_and_label_sets()) {
        let mut match_labels = serde_json::Map::new();
        let mut exprs = Vec::new();
        for r in &sel.requirements {
            let operator = match r.op {
                labels::Op::Equals if !match_labels.contains_key(&r.key) => {
                    match_labels.insert(r.key.clone(), r.values[0].clone().into());
                    continue;
                }
                labels::Op::Equals | labels::Op::In => "In",
                // `!=` has no LabelSelector form: `NotIn` of one value is the same.
                labels::Op::NotEquals | labels::Op::NotIn => "NotIn",
                labels::Op::Exists => "Exists",
                labels::Op::DoesNotExist => "DoesNotExist",
            };
            let mut e = serde_json::json!({"key": r.key, "operator": operator});
            if !r.values.is_empty() {
                e["values"] = r.values.clone().into();
            }
            exprs.push(e);
        }
        let v = serde_json::json!({"matchLabels": match_labels, "matchExpressions": exprs});
        let from_json = labels::Selector::from_label_selector(&v)
            .map_err(|e| TestCaseError::fail(format!("{v} refused: {e}")))?;
        for set in &sets {
            prop_assert_eq!(from_json.matches(set), sel.matches(set), "{} on {:?}", v, set);
        }
        let printed = from_json.to_string();
        if has_set_of_only_empty(&from_json) {
            prop_assert!(labels::Selector::parse(&printed).is_err(), "{:?}", printed);
            return Ok(());
        }
        let from_string = labels::Selector::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{printed:?} does not parse: {e}")))?;
        for set in &sets {
            prop_assert_eq!(from_string.matches(set), sel.matches(set), "{:?} on {:?}", printed, set);
        }
    }

    #[test]
    fn label_selector_from_arbitrary_json_never_panics(
        keys in prop::collection::vec(prop_oneof![label_key(), ".{0,6}"], 0..3),
        operators in prop::collection::vec(
            prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist", "Gt", ""]),
            0..3,
        ),
        values in prop::collection::vec(prop::collection::vec(".{0,4}", 0..3), 0..3),
        with_labels in any::<bool>(),
    ) {
        let exprs: Vec<serde_json::Value> = keys
            .iter()
            .zip(operators.iter().cycle())
            .zip(values.iter().cycle())
            .map(|((k, o), v)| serde_json::json!({"key": k, "operator": o, "values": v}))
            .collect();
        let mut v = serde_json::json!({"matchExpressions": exprs});
        if with_labels {
            v["matchLabels"] = keys.iter().map(|k| (k.clone(), serde_json::json!(k))).collect();
        }
        let _ = labels::Selector::from_label_selector(&v);
        let _ = labels::Selector::from_label_selector(&serde_json::json!([v]));
    }
}

/// `kubectl get pods -l 'tier in (,web)'` selects pods whose `tier` is empty or `web`, as
/// Kubernetes' parser reads the empty item of the list; found by
/// `label_selector_round_trips` (the empty value was dropped).
#[test]
fn label_selector_keeps_an_empty_value_in_a_set() {
    let sel = labels::Selector::parse("tier in (,web)").unwrap();
    let tier = |v: &str| BTreeMap::from([("tier".to_string(), v.to_string())]);
    assert!(sel.matches(&tier("")));
    assert!(sel.matches(&tier("web")));
    assert!(!sel.matches(&tier("db")));
    assert_eq!(sel.to_string(), "tier in (,web)");
    let only_empty = labels::Selector::parse("tier in (,)").unwrap();
    assert!(only_empty.matches(&tier("")));
    assert!(!only_empty.matches(&tier("web")));
    assert!(labels::Selector::parse("tier in ()").is_err());
    assert!(labels::Selector::parse("tier in ( )").is_err());
}

// ---------------------------------------------------------------- field selectors

/// A field selector value escaped as clients must send it.
fn escape_field_value(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn field_requirement() -> impl Strategy<Value = fields::Requirement> {
    (
        "[a-zA-Z][a-zA-Z0-9]{0,6}(\\.[a-zA-Z][a-zA-Z0-9]{0,6}){0,2}",
        // Values keep no outer whitespace: the parser trims it, as kubectl does.
        "[-a-zA-Z0-9 .,=!\\\\:/é]{0,10}".prop_map(|v| v.trim().to_string()),
        any::<bool>(),
    )
        .prop_map(|(field, value, negate)| fields::Requirement {
            field,
            value,
            negate,
        })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn field_selector_parse_never_panics(s in any::<String>()) {
        let _ = fields::Selector::parse(&s);
    }

    #[test]
    fn field_selector_parse_never_panics_on_its_grammar(
        s in "[a-z.=!,\\\\ ]{0,16}"
    ) {
        if let Ok(sel) = fields::Selector::parse(&s) {
            let _ = fields::check_supported("", "pods", &sel);
        }
    }

    /// Requirements written out with `=`, `==` or `!=` and escaped values parse back to
    /// themselves.
    #[test]
    fn field_selector_round_trips(
        reqs in prop::collection::vec((field_requirement(), any::<bool>()), 0..5)
    ) {
        let text = reqs
            .iter()
            .map(|(r, double)| {
                let op = match (r.negate, double) {
                    (true, _) => "!=",
                    (false, true) => "==",
                    (false, false) => "=",
                };
                format!("{}{op}{}", r.field, escape_field_value(&r.value))
            })
            .collect::<Vec<_>>()
            .join(",");
        let sel = fields::Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?} does not parse: {e}")))?;
        let want: Vec<fields::Requirement> = reqs.into_iter().map(|(r, _)| r).collect();
        prop_assert_eq!(sel.requirements(), &want[..], "{:?}", text);
    }

    /// A selector built from an object's own field values matches it; negating any one
    /// requirement stops the match.
    #[test]
    fn field_selector_matches_the_object_it_describes(
        name in "[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?",
        node in "[-a-z0-9.,=\\\\]{0,8}",
        phase in prop::sample::select(vec!["Pending", "Running", "Succeeded", ""]),
        flip in any::<prop::sample::Index>(),
    ) {
        let pod = serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node},
            "status": {"phase": phase},
        });
        let get = |f: &str| fields::field_value("", "pods", &pod, f);
        let mut reqs: Vec<String> = ["metadata.name", "spec.nodeName", "status.phase"]
            .iter()
            .map(|f| format!("{f}={}", escape_field_value(&get(f).unwrap_or_default())))
            .collect();
        let sel = fields::Selector::parse(&reqs.join(",")).unwrap();
        prop_assert!(fields::check_supported("", "pods", &sel).is_ok());
        prop_assert!(sel.matches(&get), "{:?}", reqs);
        let i = flip.index(reqs.len());
        reqs[i] = reqs[i].replacen('=', "!=", 1);
        let negated = fields::Selector::parse(&reqs.join(",")).unwrap();
        prop_assert!(!negated.matches(&get), "{:?}", reqs);
    }
}

// ---------------------------------------------------------------- quantities and cron

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn quantity_parse_never_panics(s in prop_oneof![
        any::<String>(),
        "[-+]?[0-9.]{0,45}([eE][-+]?[0-9]{0,3}|[numkMGTPE]|[KMGTPE]i)?",
    ]) {
        if let Ok(q) = quantity::parse(&s) {
            let _ = (q.millis(), q.value());
        }
    }

    /// Below a nano-unit a quantity rounds up, as Kubernetes' does, for every mantissa an
    /// i128 holds (the largest ones included).
    #[test]
    fn quantity_rounds_up_below_a_nano_unit(
        n in prop_oneof![
            any::<u64>().prop_map(i128::from),
            (0..=i128::MAX),
            (i128::MAX - 1000..=i128::MAX),
        ],
        frac in 0usize..12,
    ) {
        let digits = n.to_string();
        let (int, fr) = if frac >= digits.len() {
            ("0".to_string(), format!("{digits:0>frac$}"))
        } else {
            let (a, b) = digits.split_at(digits.len() - frac);
            (a.to_string(), b.to_string())
        };
        let text = if fr.is_empty() { format!("{int}n") } else { format!("{int}.{fr}n") };
        // The mantissa is the digits written (leading zeros add nothing), so only a
        // fraction's scale changes the result: ceil(n / 10^frac) nano-units.
        let q = quantity::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?} refused: {e}")))?;
        let d = 10i128.pow(frac as u32);
        prop_assert_eq!(q.nanos, ceil_div(n, d), "{:?}", text);
        // CPU and memory read it rounded up to milli-units and units.
        prop_assert_eq!(q.millis(), ceil_div(q.nanos, 1_000_000), "{:?}", text);
        prop_assert_eq!(q.value(), ceil_div(q.nanos, 1_000_000_000), "{:?}", text);
        let neg = quantity::parse(&format!("-{text}")).unwrap();
        prop_assert_eq!(neg.millis(), ceil_div(neg.nanos, 1_000_000), "-{:?}", text);
    }
}

/// ⌈n / d⌉ without overflow.
fn ceil_div(n: i128, d: i128) -> i128 {
    n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0)
}

fn cron_field() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("*".to_string()),
            Just("?".to_string()),
            (0u32..70).prop_map(|n| n.to_string()),
            (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
            (0u32..70, 0u32..20).prop_map(|(a, s)| format!("{a}/{s}")),
            ("\\*|[0-9]{1,2}-[0-9]{1,2}", 0u32..20).prop_map(|(r, s)| format!("{r}/{s}")),
            prop::sample::select(vec!["jan", "DEC", "sun", "Sat", "mon-fri", "x", ""])
                .prop_map(str::to_string),
        ],
        1..3,
    )
    .prop_map(|parts| parts.join(","))
}

fn cron_schedule() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(cron_field(), 4..7).prop_map(|f| f.join(" ")),
        1 => prop::sample::select(vec![
            "@yearly", "@monthly", "@weekly", "@daily", "@hourly", "@reboot", "TZ=UTC * * * * *",
        ])
        .prop_map(str::to_string),
        1 => "[0-9.]{1,14}(h|m|s|ms|us|)([0-9]{1,3}(h|m|s))?".prop_map(|d| format!("@every {d}")),
        1 => (
            prop_oneof![1u64..1000, any::<u64>()],
            prop::sample::select(vec!["h", "m", "s", "ms"]),
        )
            .prop_map(|(n, unit)| format!("@every {n}{unit}")),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    /// Any schedule either is refused or gives next times strictly after the time asked
    /// about, never a panic (dates past chrono's range included).
    #[test]
    fn cron_parse_and_next_never_panic(
        s in cron_schedule(),
        // Any time RFC 3339 can write (years 1970 to 9999), its last second included.
        secs in prop_oneof![0i64..253_402_300_800, Just(253_402_300_799i64)],
        tz in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    ) {
        let valid = cron::validate(&s).is_ok();
        match cron::Schedule::parse(&s) {
            Ok(schedule) => {
                prop_assert!(valid, "{:?} parses but does not validate", s);
                let after = chrono::DateTime::from_timestamp(secs, 0).unwrap();
                let tz = cron::time_zone(tz).unwrap();
                if let Some(next) = schedule.next_after(after, tz) {
                    prop_assert!(next > after, "{:?}: {} is not after {}", s, next, after);
                }
            }
            Err(_) => {
                let _ = cron::go_duration(&s);
            }
        }
    }
}

/// A 30,000-century `@every` used to overflow chrono's date range when the next time
/// was computed: found by `cron_parse_and_next_never_panic`.
#[test]
fn cron_every_far_beyond_the_calendar_has_no_next_time() {
    let s = cron::Schedule::parse("@every 3000000000h").unwrap();
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    assert_eq!(s.next_after(now, chrono_tz::UTC), None);
}

/// The largest mantissa an i128 holds, written with a fraction below a nano-unit, used to
/// overflow while rounding up: found by `quantity_rounds_up_below_a_nano_unit`.
#[test]
fn quantity_rounding_up_the_largest_mantissa() {
    let q = quantity::parse("1701411834604692317316873037158841057.27n").unwrap();
    assert_eq!(q.nanos, i128::MAX / 100 + 1);
    let q = quantity::parse("170141183460469231731687303715884105727n").unwrap();
    assert_eq!(q.millis(), i128::MAX / 1_000_000 + 1);
    assert_eq!(q.value(), i128::MAX / 1_000_000_000 + 1);
}
