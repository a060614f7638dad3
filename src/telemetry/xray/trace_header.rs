//! Parsing of the X-Ray trace header that Lambda hands to each invocation
//! (`Context.xray_trace_id`, env `_X_AMZN_TRACE_ID`), so the X-Ray layer knows
//! which trace and parent segment our subsegments belong to and whether to send at all.

use std::fmt;

/// The invocation's X-Ray trace context: `Root=1-…;Parent=…;Sampled=1`.
///
/// Only a header with a well-formed `Root` and `Parent` parses; `sampled` is true only
/// for `Sampled=1` (`Sampled=0`, `Sampled=?` or a missing `Sampled` mean "send nothing").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    root: String,
    parent: String,
    sampled: bool,
}

impl TraceContext {
    /// Parses a trace header. Keys may come in any order, with whitespace around
    /// `;` and `=`; `Lineage`, `Self` and unknown keys are ignored. Returns `None`
    /// when `Root` or `Parent` is missing or malformed (then nothing is traced).
    pub fn parse(header: &str) -> Option<Self> {
        let mut root = None;
        let mut parent = None;
        let mut sampled = false;
        for part in header.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((key, value)) = part.split_once('=') else {
                continue; // tolerate stray tokens
            };
            let (key, value) = (key.trim(), value.trim());
            if key.eq_ignore_ascii_case("Root") {
                root = Some(value);
            } else if key.eq_ignore_ascii_case("Parent") {
                parent = Some(value);
            } else if key.eq_ignore_ascii_case("Sampled") {
                sampled = value == "1";
            }
        }
        let (root, parent) = (root?, parent?);
        if !is_valid_root(root) || !is_hex(parent, 16) {
            return None;
        }
        Some(Self {
            root: root.to_owned(),
            parent: parent.to_owned(),
            sampled,
        })
    }

    /// Builds a context from parts (validated like [`TraceContext::parse`]).
    pub fn new(root: &str, parent: &str, sampled: bool) -> Option<Self> {
        (is_valid_root(root) && is_hex(parent, 16)).then(|| Self {
            root: root.to_owned(),
            parent: parent.to_owned(),
            sampled,
        })
    }

    /// A new trace of our own (sampled, no parent), for invocations that bring none when spans
    /// go to an OpenTelemetry collector: X-Ray's id format (epoch seconds, then 96 random
    /// bits), which AWS's collectors require.
    pub(crate) fn new_root() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let random =
            (u128::from(super::ids::next_u64()) << 32) | u128::from(super::ids::next_u64() as u32);
        Self {
            root: format!("1-{:08x}-{random:024x}", secs as u32),
            parent: String::new(),
            sampled: true,
        }
    }

    /// The trace id, `1-5759e988-bd862e3fe1be46a994272793`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The id (16 hex) of the Lambda function segment our top subsegments hang under.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Whether documents for this invocation should be sent.
    pub fn sampled(&self) -> bool {
        self.sampled
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Root={};Parent={};Sampled={}",
            self.root,
            self.parent,
            u8::from(self.sampled)
        )
    }
}

/// Extracts the `Root` of a trace header (`Root=1-…;…` → `1-…`); a bare valid root is
/// returned as is. Used to print trace ids in log lines.
pub fn root_of(header: &str) -> Option<&str> {
    let header = header.trim();
    if is_valid_root(header) {
        return Some(header);
    }
    header.split(';').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("Root") && is_valid_root(value.trim()))
            .then(|| value.trim())
    })
}

/// `1-` + 8 hex + `-` + 24 hex.
fn is_valid_root(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 35
        && b.starts_with(b"1-")
        && b[10] == b'-'
        && all_hex(&b[2..10])
        && all_hex(&b[11..])
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && all_hex(s.as_bytes())
}

fn all_hex(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
    const PARENT: &str = "53995c3f42cd8ad8";

    #[test]
    fn parses_valid_header() {
        let ctx = TraceContext::parse(&format!("Root={ROOT};Parent={PARENT};Sampled=1")).unwrap();
        assert_eq!(ctx.root(), ROOT);
        assert_eq!(ctx.parent(), PARENT);
        assert!(ctx.sampled());
        assert_eq!(
            ctx.to_string(),
            format!("Root={ROOT};Parent={PARENT};Sampled=1")
        );
    }

    #[test]
    fn tolerates_lineage_unknown_keys_whitespace_and_order() {
        let h = format!(
            " Sampled = 1 ; Lineage=a87bd80c:1|68fd508a:5; Foo=bar;Self=1-abc;stray; Parent={PARENT} ;Root={ROOT};"
        );
        let ctx = TraceContext::parse(&h).unwrap();
        assert_eq!(
            (ctx.root(), ctx.parent(), ctx.sampled()),
            (ROOT, PARENT, true)
        );
    }

    #[test]
    fn not_sampled_when_zero_unknown_or_missing() {
        for s in ["Sampled=0", "Sampled=?", "", "Sampled="] {
            let ctx = TraceContext::parse(&format!("Root={ROOT};Parent={PARENT};{s}")).unwrap();
            assert!(!ctx.sampled(), "{s}");
        }
        assert!(TraceContext::parse("").is_none());
    }

    #[test]
    fn rejects_malformed_ids() {
        let bad = [
            format!("Root=1-5759e98-bd862e3fe1be46a994272793;Parent={PARENT};Sampled=1"),
            format!("Root=2-5759e988-bd862e3fe1be46a994272793;Parent={PARENT};Sampled=1"),
            format!("Root=1-5759e988-bd862e3fe1be46a99427279z;Parent={PARENT};Sampled=1"),
            format!("Root=1-5759e988_bd862e3fe1be46a994272793;Parent={PARENT};Sampled=1"),
            format!("Root={ROOT};Parent=53995c3f42cd8ad;Sampled=1"),
            format!("Root={ROOT};Parent=53995c3f42cd8adx;Sampled=1"),
            format!("Root={ROOT};Sampled=1"),
            format!("Parent={PARENT};Sampled=1"),
            "not a header".to_owned(),
        ];
        for h in &bad {
            assert!(TraceContext::parse(h).is_none(), "{h}");
        }
        assert!(TraceContext::new(ROOT, "xyz", true).is_none());
        assert!(TraceContext::new(ROOT, PARENT, true).is_some());
    }

    #[test]
    fn root_of_header_or_bare_root() {
        assert_eq!(root_of(&format!("Root={ROOT};Parent={PARENT}")), Some(ROOT));
        assert_eq!(root_of(ROOT), Some(ROOT));
        assert_eq!(root_of("Root=nope"), None);
    }
}
