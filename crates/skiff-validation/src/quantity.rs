//! `resource.Quantity` parsing (k8s.io/apimachinery/pkg/api/resource): decimal SI
//! (`m`, `k`, `M`, …), binary SI (`Ki`, `Mi`, …) and exponents (`1e3`), held exactly as
//! nano-units so `1` and `1000m` compare equal.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    /// The value times 10^9.
    pub nanos: i128,
}

impl Quantity {
    /// Milli-units rounded up, as Kubernetes' `MilliValue` does (CPU).
    pub fn millis(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Whole units rounded up, as Kubernetes' `Value` does (memory bytes).
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000_000)
    }
}

/// ⌈n / d⌉ for d > 0, without the overflow of `(n + d - 1) / d` near i128::MAX.
fn ceil_div(n: i128, d: i128) -> i128 {
    n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0)
}

const MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

pub fn parse(s: &str) -> Result<Quantity, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(MSG.into());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (neg, digits) = match num.as_bytes().first() {
        Some(b'-') => (true, &num[1..]),
        Some(b'+') => (false, &num[1..]),
        _ => (false, num),
    };
    if digits.is_empty()
        || digits.matches('.').count() > 1
        || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        || digits == "."
    {
        return Err(MSG.into());
    }
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    // value = mantissa * 10^(exp10) * 2^(exp2)
    let mut mantissa: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add((c - b'0') as i128))
            .ok_or_else(|| "quantity too large".to_string())?;
    }
    let mut exp10: i32 = -(frac_part.len() as i32) + 9;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        e if e.starts_with(['e', 'E']) => {
            let n: i32 = e[1..].parse().map_err(|_| MSG.to_string())?;
            if !(-30..=30).contains(&n) {
                return Err("quantity exponent out of range".into());
            }
            exp10 += n;
        }
        _ => return Err(MSG.into()),
    }
    let mut v = mantissa;
    if exp2 > 0 {
        v = v.checked_mul(1i128 << exp2).ok_or("quantity too large")?;
    }
    if exp10 >= 0 {
        v = v
            .checked_mul(
                10i128
                    .checked_pow(exp10 as u32)
                    .ok_or("quantity too large")?,
            )
            .ok_or("quantity too large")?;
    } else {
        // Below a nano-unit: round up, as Kubernetes does.
        let d = 10i128
            .checked_pow((-exp10) as u32)
            .ok_or("quantity too small")?;
        v = ceil_div(v, d);
    }
    Ok(Quantity {
        nanos: if neg { -v } else { v },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_forms() {
        assert_eq!(parse("250m").unwrap().millis(), 250);
        assert_eq!(parse("0.5").unwrap().millis(), 500);
        assert_eq!(parse("1").unwrap(), parse("1000m").unwrap());
        assert_eq!(parse("256Mi").unwrap().value(), 256 * 1024 * 1024);
        assert_eq!(parse("1Gi").unwrap().value(), 1 << 30);
        assert_eq!(parse("1e3").unwrap().value(), 1000);
        assert_eq!(parse("1k").unwrap().value(), 1000);
        assert_eq!(parse("100n").unwrap().nanos, 100);
        assert!(parse("abc").is_err());
        assert!(parse("1.2.3").is_err());
        assert!(parse("5XB").is_err());
        assert!(parse("").is_err());
    }
}
