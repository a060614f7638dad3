//! Log and trace settings: Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT`,
//! `AWS_LAMBDA_LOG_LEVEL`), `RUST_LOG` for local runs, and the X-Ray daemon's address.

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One flat JSON object per line (`AWS_LAMBDA_LOG_FORMAT=JSON`).
    Json,
    /// `tracing-subscriber`'s readable format, spans shown as `name{field=value}:`.
    Text,
}

/// How logs are written; [`LogConfig::from_env`] reads Lambda's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// `EnvFilter` directives (`info`, `renditions=debug,warn`, …).
    pub filter: String,
    /// ANSI colours in text mode.
    pub ansi: bool,
}

impl LogConfig {
    /// Reads the process environment (see [`LogConfig::from_lookup`]); colours only in
    /// text mode on a terminal outside Lambda.
    pub fn from_env() -> Self {
        let mut config = Self::from_lookup(super::env);
        config.ansi = config.format == LogFormat::Text
            && super::env("AWS_LAMBDA_FUNCTION_NAME").is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        config
    }

    /// Format: JSON iff `AWS_LAMBDA_LOG_FORMAT` is `JSON` (any case). Level:
    /// `AWS_LAMBDA_LOG_LEVEL` (TRACE/DEBUG/INFO/WARN/ERROR, FATAL → error) when set and
    /// valid, else `RUST_LOG` when non-empty, else `info`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let format = match get("AWS_LAMBDA_LOG_FORMAT") {
            Some(f) if f.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let lambda_level = get("AWS_LAMBDA_LOG_LEVEL").and_then(|l| {
            Some(match l.trim().to_ascii_uppercase().as_str() {
                "TRACE" => "trace",
                "DEBUG" => "debug",
                "INFO" => "info",
                "WARN" | "WARNING" => "warn",
                "ERROR" | "FATAL" => "error",
                _ => return None,
            })
        });
        let filter = match lambda_level {
            Some(level) => level.to_owned(),
            None => get("RUST_LOG")
                .filter(|f| !f.trim().is_empty())
                .unwrap_or_else(|| "info".to_owned()),
        };
        Self {
            format,
            filter,
            ansi: false,
        }
    }
}

/// `AWS_XRAY_DAEMON_ADDRESS` as set (`host:port` or `tcp:h:p udp:h:p`); the X-Ray sender parses
/// it and counts every document as dropped when it is unset or unparsable.
pub fn xray_daemon_address(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    get("AWS_XRAY_DAEMON_ADDRESS")
}
