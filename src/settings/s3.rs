//! Retries, timeouts and addressing of the function's S3 calls (`S3_*`).

use std::time::Duration;

use super::ConfigError;
use super::parse::{parse_bool, parse_u64};

/// Attempts per S3 call (standard retry mode: exponential backoff with jitter, retries 5xx,
/// throttling, timeouts and connection errors).
pub const MAX_ATTEMPTS: u32 = 3;
/// TCP/TLS connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of one call, and the gap allowed between two chunks of a download body.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// One call including retries.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(50);

/// Retries and timeouts of every S3 call the function makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Settings {
    /// Attempts per call, first one included (`S3_MAX_ATTEMPTS`, 1–10). A download whose
    /// body breaks off (reset, truncation, stall) is started again up to the same count.
    pub max_attempts: u32,
    /// `S3_CONNECT_TIMEOUT_MS`.
    pub connect_timeout: Duration,
    /// One attempt, and the longest silence while a body streams (`S3_ATTEMPT_TIMEOUT_MS`).
    pub attempt_timeout: Duration,
    /// One call with all its retries (`S3_OPERATION_TIMEOUT_MS`).
    pub operation_timeout: Duration,
    /// Path-style URLs (`S3_FORCE_PATH_STYLE`), for emulators without virtual-hosted buckets.
    pub force_path_style: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            max_attempts: MAX_ATTEMPTS,
            connect_timeout: CONNECT_TIMEOUT,
            attempt_timeout: ATTEMPT_TIMEOUT,
            operation_timeout: OPERATION_TIMEOUT,
            force_path_style: false,
        }
    }
}

impl S3Settings {
    /// Reads the settings by name (the `S3_*` rows of [`super::SETTINGS`]); unset or empty means the default.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<S3Settings, ConfigError> {
        let val = |k: &str| super::non_empty(get(k));
        let ms = |k: &str, default: Duration| -> Result<Duration, ConfigError> {
            match val(k) {
                Some(v) => Ok(Duration::from_millis(parse_u64(k, &v, 1, 900_000)?)),
                None => Ok(default),
            }
        };
        let d = S3Settings::default();
        let s = S3Settings {
            max_attempts: match val("S3_MAX_ATTEMPTS") {
                Some(v) => parse_u64("S3_MAX_ATTEMPTS", &v, 1, 10)? as u32,
                None => d.max_attempts,
            },
            connect_timeout: ms("S3_CONNECT_TIMEOUT_MS", d.connect_timeout)?,
            attempt_timeout: ms("S3_ATTEMPT_TIMEOUT_MS", d.attempt_timeout)?,
            operation_timeout: ms("S3_OPERATION_TIMEOUT_MS", d.operation_timeout)?,
            force_path_style: match val("S3_FORCE_PATH_STYLE") {
                Some(v) => parse_bool("S3_FORCE_PATH_STYLE", &v)?,
                None => false,
            },
        };
        if s.operation_timeout < s.attempt_timeout {
            return Err(ConfigError::new(
                "S3_OPERATION_TIMEOUT_MS",
                format!(
                    "{} ms is shorter than one attempt (S3_ATTEMPT_TIMEOUT_MS = {} ms)",
                    s.operation_timeout.as_millis(),
                    s.attempt_timeout.as_millis()
                ),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<S3Settings, ConfigError> {
        S3Settings::from_settings(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(from(&[]).unwrap(), S3Settings::default());
        let s = from(&[
            ("S3_MAX_ATTEMPTS", "5"),
            ("S3_ATTEMPT_TIMEOUT_MS", "1000"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert_eq!(s.max_attempts, 5);
        assert_eq!(s.attempt_timeout, Duration::from_secs(1));
        assert!(s.force_path_style);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("S3_FORCE_PATH_STYLE", "maybe"),
            ("S3_MAX_ATTEMPTS", "0"),
            ("S3_CONNECT_TIMEOUT_MS", "soon"),
            ("S3_OPERATION_TIMEOUT_MS", "10"),
        ] {
            let e = from(&[(var, value)]).unwrap_err();
            assert_eq!(e.setting, var, "{value}: {e}");
        }
    }
}
