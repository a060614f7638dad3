//! Scalar parsers shared by every setting: each names the setting in its [`ConfigError`], so a
//! bad value says which variable or flag it came from.

use super::ConfigError;

/// Parses a fraction in `0 < x ≤ 1` (also accepts a percentage like `25%`).
pub fn parse_fraction(setting: &str, s: &str, allow_zero: bool) -> Result<f32, ConfigError> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f32>().map(|v| v / 100.0),
        None => t.parse::<f32>(),
    }
    .map_err(|_| ConfigError::new(setting, format!("`{s}` is not a number")))?;
    let ok = v.is_finite() && v <= 1.0 && (v > 0.0 || (allow_zero && v == 0.0));
    if !ok {
        let range = if allow_zero { "0..=1" } else { "0 < x ≤ 1" };
        return Err(ConfigError::new(
            setting,
            format!("`{s}` must be in {range}"),
        ));
    }
    Ok(v)
}

/// Parses an unsigned integer within bounds; accepts `_` separators.
pub fn parse_u64(setting: &str, s: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| ConfigError::new(setting, format!("`{s}` is not a whole number")))?;
    if v < min || v > max {
        return Err(ConfigError::new(
            setting,
            format!("`{s}` must be in {min}..={max}"),
        ));
    }
    Ok(v)
}

/// Parses `#rrggbb` / `rrggbb`, or `white`/`black`.
pub fn parse_colour(setting: &str, s: &str) -> Result<[u8; 3], ConfigError> {
    let t = s.trim().trim_start_matches('#').to_ascii_lowercase();
    match t.as_str() {
        "white" => return Ok([255, 255, 255]),
        "black" => return Ok([0, 0, 0]),
        _ => {}
    }
    let bad = || ConfigError::new(setting, format!("`{s}` is not a colour like #ffffff"));
    if t.len() != 6 {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| bad());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

/// Parses a boolean setting (`true/false`, `1/0`, `yes/no`, `on/off`).
pub fn parse_bool(setting: &str, s: &str) -> Result<bool, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            format!("`{s}` is not true or false"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scalars() {
        assert_eq!(parse_fraction("X", "25%", false).unwrap(), 0.25);
        assert!(parse_fraction("X", "0", false).is_err());
        assert_eq!(parse_fraction("X", "0", true).unwrap(), 0.0);
        assert!(parse_fraction("X", "1.5", false).is_err());
        assert_eq!(parse_u64("Q", "82", 1, 100).unwrap(), 82);
        assert!(parse_u64("Q", "101", 1, 100).is_err());
        assert_eq!(parse_colour("BG", "#ff8000").unwrap(), [255, 128, 0]);
        assert!(parse_colour("BG", "#ff80").is_err());
        assert!(parse_bool("B", "yes").unwrap());
        assert!(parse_bool("B", "maybe").is_err());
    }
}
