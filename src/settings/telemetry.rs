//! Log and trace settings: Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT`,
//! `AWS_LAMBDA_LOG_LEVEL`), `RUST_LOG` for local runs, the X-Ray daemon's address, and where
//! spans go (`TRACES`: X-Ray, OTLP with the standard `OTEL_*` variables, or nowhere).

use super::ConfigError;
use super::non_empty;
use super::parse::parse_u64;

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

/// Where finished spans go (`TRACES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceExporter {
    /// X-Ray daemon datagrams over UDP (`AWS_XRAY_DAEMON_ADDRESS`): today's default.
    Xray,
    /// OTLP/HTTP with JSON bodies, one request per invocation.
    Otlp(OtlpSettings),
    /// No spans leave the process.
    Off,
}

/// The OTLP exporter's settings, from the standard `OTEL_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// `http://host:port` the requests go to.
    pub origin: String,
    /// Path (and query) of the traces endpoint, e.g. `/v1/traces`.
    pub path: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), values URL-decoded.
    pub headers: Vec<(String, String)>,
    /// Longest one export may take.
    pub timeout: std::time::Duration,
    /// Resource attributes: `service.name` first, then the sandbox's and the user's.
    pub resource: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` was asked for (JSON is sent: warn once).
    pub protobuf_requested: bool,
}

/// The trace settings (`TRACES` and, for OTLP, the `OTEL_*` variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSettings {
    pub exporter: TraceExporter,
}

impl TraceSettings {
    /// Reads `TRACES` (`xray` | `otlp` | `off`, default `xray`) and, for `otlp`, the exporter's
    /// variables; every error names its variable.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mode = non_empty(get("TRACES")).unwrap_or_else(|| "xray".to_owned());
        let exporter = match mode.to_ascii_lowercase().as_str() {
            "xray" => TraceExporter::Xray,
            "off" | "none" => TraceExporter::Off,
            "otlp" => TraceExporter::Otlp(OtlpSettings::from_settings(get)?),
            _ => {
                return Err(ConfigError::new(
                    "TRACES",
                    format!("`{mode}` is not one of xray, otlp, off"),
                ));
            }
        };
        Ok(Self { exporter })
    }
}

impl OtlpSettings {
    fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let protocol =
            non_empty(get("OTEL_EXPORTER_OTLP_PROTOCOL")).unwrap_or_else(|| "http/json".to_owned());
        let protobuf_requested = match protocol.as_str() {
            "http/json" => false,
            "http/protobuf" => true,
            other => {
                return Err(ConfigError::new(
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    format!(
                        "`{other}` is not supported: this function sends OTLP/HTTP with JSON \
                         bodies (`http/json`, port 4318)"
                    ),
                ));
            }
        };
        let (origin, path) = match non_empty(get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
            Some(full) => split_http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &full)?,
            None => {
                let base = non_empty(get("OTEL_EXPORTER_OTLP_ENDPOINT"))
                    .unwrap_or_else(|| "http://localhost:4318".to_owned());
                let (origin, base_path) = split_http_url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
                (
                    origin,
                    format!("{}/v1/traces", base_path.trim_end_matches('/')),
                )
            }
        };
        let headers = match non_empty(get("OTEL_EXPORTER_OTLP_HEADERS")) {
            Some(raw) => parse_key_values("OTEL_EXPORTER_OTLP_HEADERS", &raw)?,
            None => Vec::new(),
        };
        let timeout_ms = match non_empty(get("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            Some(raw) => parse_u64("OTEL_EXPORTER_OTLP_TIMEOUT", &raw, 1, 600_000)?,
            None => 10_000,
        };
        let function = non_empty(get("AWS_LAMBDA_FUNCTION_NAME"));
        let service = non_empty(get("OTEL_SERVICE_NAME"))
            .or_else(|| function.clone())
            .unwrap_or_else(|| "renditions".to_owned());
        let mut resource = vec![
            ("service.name".to_owned(), service),
            ("cloud.provider".to_owned(), "aws".to_owned()),
            ("cloud.platform".to_owned(), "aws_lambda".to_owned()),
        ];
        let sandbox = [
            ("cloud.region", non_empty(get("AWS_REGION"))),
            ("faas.name", function),
            (
                "faas.version",
                non_empty(get("AWS_LAMBDA_FUNCTION_VERSION")),
            ),
        ];
        for (key, value) in sandbox {
            if let Some(value) = value {
                resource.push((key.to_owned(), value));
            }
        }
        if let Some(raw) = non_empty(get("OTEL_RESOURCE_ATTRIBUTES")) {
            for (key, value) in parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &raw)? {
                // `OTEL_SERVICE_NAME` wins over a `service.name` here, as the spec says.
                if key == "service.name" && get("OTEL_SERVICE_NAME").is_some() {
                    continue;
                }
                match resource.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => resource.push((key, value)),
                }
            }
        }
        Ok(Self {
            origin,
            path,
            headers,
            timeout: std::time::Duration::from_millis(timeout_ms),
            resource,
            protobuf_requested,
        })
    }
}

/// Splits `http://host:port/path` into origin and path; only plain HTTP with a host is taken.
fn split_http_url(setting: &str, url: &str) -> Result<(String, String), ConfigError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        ConfigError::new(
            setting,
            format!(
                "`{url}` is not an http:// URL (TLS is not supported here: export to a local \
                 collector, such as the ADOT or a vendor's Lambda extension on localhost:4318)"
            ),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    if !host_ok {
        return Err(ConfigError::new(
            setting,
            format!("`{url}` has no valid host"),
        ));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(ConfigError::new(setting, format!("`{url}` has a bad path")));
    }
    Ok((format!("http://{authority}"), path.to_owned()))
}

/// Parses the W3C-baggage-like `key=value,key2=value2` lists of the `OTEL_*` variables (values
/// percent-decoded, blanks skipped).
fn parse_key_values(setting: &str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(ConfigError::new(
                setting,
                format!("`{item}` is not key=value"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::new(setting, format!("`{item}` has no key")));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| ConfigError::new(setting, format!("`{item}` has a bad %-escape")))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn traces(vars: &[(&str, &str)]) -> Result<TraceSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TraceSettings::from_settings(|k| map.get(k).cloned())
    }

    fn otlp(vars: &[(&str, &str)]) -> OtlpSettings {
        let mut all = vec![("TRACES", "otlp")];
        all.extend_from_slice(vars);
        match traces(&all).unwrap().exporter {
            TraceExporter::Otlp(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn traces_mode_defaults_to_xray_and_rejects_unknown() {
        assert_eq!(traces(&[]).unwrap().exporter, TraceExporter::Xray);
        assert_eq!(
            traces(&[("TRACES", " ")]).unwrap().exporter,
            TraceExporter::Xray
        );
        assert_eq!(
            traces(&[("TRACES", "OFF")]).unwrap().exporter,
            TraceExporter::Off
        );
        let e = traces(&[("TRACES", "jaeger")]).unwrap_err();
        assert_eq!(e.setting, "TRACES");
        assert!(e.problem.contains("jaeger"), "{e}");
    }

    #[test]
    fn otlp_endpoint_defaults_and_overrides() {
        let s = otlp(&[]);
        assert_eq!(
            (s.origin.as_str(), s.path.as_str()),
            ("http://localhost:4318", "/v1/traces")
        );
        assert_eq!(s.timeout, std::time::Duration::from_secs(10));
        let s = otlp(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9999/otel/")]);
        assert_eq!(
            (s.origin.as_str(), s.path.as_str()),
            ("http://127.0.0.1:9999", "/otel/v1/traces")
        );
        let s = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9999"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://[::1]:4000/custom",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
        ]);
        assert_eq!(
            (s.origin.as_str(), s.path.as_str()),
            ("http://[::1]:4000", "/custom")
        );
        assert_eq!(s.timeout, std::time::Duration::from_millis(250));
    }

    #[test]
    fn otlp_refuses_what_it_cannot_send() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "localhost:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http:///v1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
        ] {
            let e = traces(&[("TRACES", "otlp"), (var, value)]).unwrap_err();
            assert_eq!(e.setting, var, "{value}: {e}");
        }
        assert!(otlp(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).protobuf_requested);
    }

    #[test]
    fn otlp_headers_and_resource() {
        let s = otlp(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=abc%3D%3D, x-team = img ",
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", "renditions-fn"),
            ("AWS_REGION", "eu-west-1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=ignored",
            ),
            ("OTEL_SERVICE_NAME", "thumbs"),
        ]);
        assert_eq!(
            s.headers,
            vec![
                ("x-api-key".into(), "abc==".into()),
                ("x-team".into(), "img".into())
            ]
        );
        let get = |k: &str| {
            s.resource
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("service.name"), Some("thumbs"));
        assert_eq!(get("faas.name"), Some("renditions-fn"));
        assert_eq!(get("cloud.region"), Some("eu-west-1"));
        assert_eq!(get("deployment.environment"), Some("prod"));
        // Without OTEL_SERVICE_NAME: the resource attribute, else the function's name.
        let s = otlp(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc"),
        ]);
        assert_eq!(s.resource[0], ("service.name".into(), "svc".into()));
        let s = otlp(&[("AWS_LAMBDA_FUNCTION_NAME", "fn")]);
        assert_eq!(s.resource[0], ("service.name".into(), "fn".into()));
    }
}
