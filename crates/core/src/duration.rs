//! Human durations: `90s`, `15m`, `1h`, `1h30m`, `2d`.

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "duration `{0}` is not understood; use a number with a unit, e.g. `90s`, `15m`, `1h` or `1h30m`"
)]
pub struct DurationError(pub String);

/// Parse a duration into seconds.
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let err = || DurationError(text.chars().take(40).collect());
    let t = text.trim();
    if t.is_empty() || t.len() > 40 {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in t.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(err)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err()),
        };
        let n = num.take().ok_or_else(err)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    if let Some(n) = num {
        // a bare number is seconds
        total = total.checked_add(n).ok_or_else(err)?;
    }
    if total == 0 {
        return Err(err());
    }
    Ok(total)
}

/// Format seconds compactly (`1h30m`).
pub fn format_duration(mut secs: u64) -> String {
    let mut out = String::new();
    for (unit, label) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            out.push_str(&format!("{}{}", secs / unit, label));
            secs %= unit;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert_eq!(parse_duration("120").unwrap(), 120);
        for bad in ["", "h", "1x", "0s", "-5m", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(5400), "1h30m");
    }
}
