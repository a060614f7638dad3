//! The key policy: how a source key becomes destination keys, and which source keys are refused.
//!
//! S3 keys are opaque byte strings (UTF-8, at most 1,024 bytes), not paths. The function keeps them
//! that way: a key is never Unicode-normalised, case-folded, trimmed or resolved, so two distinct
//! source keys (`café.jpg` in NFC and in NFD, `a.jpg` and `a.png`) never share a rendition. The
//! exceptions are here, each with its reason (docs/lambda.md, "Keys"):
//!
//! - a key with a `.` or `..` segment is refused ([`unsafe_segment`]): S3 stores it literally, but
//!   every tool that maps keys to paths or URLs (browsers, CDNs, `aws s3 sync`, FUSE mounts)
//!   resolves it, to a different object or outside the prefix;
//! - a destination key longer than S3's 1,024 bytes is shortened deterministically ([`fit`]) to
//!   a prefix of itself plus a hash of the whole, so long keys still get their renditions and two
//!   long keys never collide.

use std::borrow::Cow;

use crate::settings::ConfigError;

use sha2::{Digest, Sha256};

/// S3's limit on a key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// `~` and 32 hex digits (128 bits of SHA-256) replace the tail of a key that is too long.
const HASH_SUFFIX_BYTES: usize = 33;

/// Why `key` is refused, or `None` when it is fine: a `.` or `..` segment between slashes.
/// Empty segments (a leading `/`, `a//b`) are kept: they resolve to nothing else on a file system
/// and S3 serves them as they are.
pub fn unsafe_segment(key: &str) -> Option<String> {
    key.split('/')
        .find(|s| *s == "." || *s == "..")
        .map(|s| {
            format!(
                "the key has a `{s}` path segment: tools that treat keys as paths or URLs (browsers, CDNs, \
                 `aws s3 sync`) would resolve it to another object, so it gets no renditions"
            )
        })
}

/// `key` if it fits in [`MAX_KEY_BYTES`]; otherwise its longest prefix (on a character boundary)
/// that fits together with `~` and the first 32 hex digits of the SHA-256 of the whole key.
pub fn fit(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        return Cow::Borrowed(key);
    }
    let mut end = MAX_KEY_BYTES - HASH_SUFFIX_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}~{}", &key[..end], digest_hex(key)))
}

/// The first 128 bits of the SHA-256 of `key`, as 32 lowercase hex digits: a name for a key that
/// cannot be used as (part of) a key itself.
pub fn digest_hex(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Decodes a key from an S3 event: form-style URL encoding, so `+` is a space and everything
/// else is percent-encoded UTF-8 (`red flower.jpg` → `red+flower.jpg`, `a+b` → `a%2Bb`).
/// Emulators that send `%20` for spaces decode the same way. A `%` not followed by two hex
/// digits is kept as is (a sender that did not encode it).
pub fn decode_key(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("key {raw:?} does not decode to UTF-8"))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes a key the way S3 notifications do (the inverse of [`decode_key`]): unreserved
/// characters and `/` stay, a space becomes `+`, everything else is `%XX` per UTF-8 byte.
/// Used to build events (demo, tests) and to put keys into ASCII-only metadata.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3 / 2);
    for &b in key.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The key of the rejection report for a source key: `{prefix}{key}.json`, shortened by [`fit`]
/// if need be; for a key refused by [`unsafe_segment`], `{prefix}unsafe-keys/{digest}.json` (the
/// report names the key).
pub fn rejection_key(prefix: &str, key: &str) -> String {
    if unsafe_segment(key).is_some() {
        return format!("{prefix}unsafe-keys/{}.json", digest_hex(key));
    }
    fit(&format!("{prefix}{key}.json")).into_owned()
}

/// Longest URL-encoded source key carried in `x-amz-meta-source-key` (S3 caps all user metadata
/// of an object at 2 KB).
const MAX_META_KEY_BYTES: usize = 1024;

/// The metadata entry that names the source key on every object written for it: metadata
/// travels in HTTP headers, so the key is URL-encoded (`source-key`); a key too long for S3's
/// 2 KB of user metadata is named by its digest instead (`source-key-sha256`).
pub fn source_key_metadata(key: &str) -> (String, String) {
    let encoded = encode_key(key);
    if encoded.len() <= MAX_META_KEY_BYTES {
        ("source-key".to_owned(), encoded)
    } else {
        ("source-key-sha256".to_owned(), digest_hex(key))
    }
}

/// The default destination key layout: `inbox/2026/cat.png` → `large/inbox/2026/cat.png`,
/// whatever format the rendition is in (its Content-Type says). The source key is kept whole so
/// that a client can compute a rendition's key without knowing the format `auto` chose, and so
/// that `a.jpg` and `a.png` never share a rendition (see the module docs).
pub const DEFAULT_KEY_TEMPLATE: &str = "{rendition}/{key}";

/// One piece of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Rendition,
    Key,
    KeyStem,
    Basename,
    Ext,
}

/// A destination key template with `{rendition}`, `{key}`, `{key_stem}`, `{basename}` and
/// `{ext}` placeholders. For the source key `inbox/2026/cat.png`: `{key}` is
/// `inbox/2026/cat.png`, `{key_stem}` is `inbox/2026/cat`, `{basename}` is `cat` (the file
/// name without folders and extension), `{ext}` is the rendition's extension (`jpg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
    source: String,
}

impl KeyTemplate {
    /// Parses and checks a template: it must name the rendition and the source (`{key}`,
    /// `{key_stem}` or `{basename}`), or renditions and images would overwrite each other.
    pub fn parse(setting: &str, template: &str) -> Result<KeyTemplate, ConfigError> {
        let err = |p: String| ConfigError::new(setting, p);
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let (open, close) = (rest.find('{'), rest.find('}'));
            if let Some(close) = close
                && open.is_none_or(|open| close < open)
            {
                return Err(err(format!("`{template}`: `}}` without an opening `{{`")));
            }
            let Some(open) = open else {
                parts.push(Part::Lit(rest.to_owned()));
                break;
            };
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| err(format!("`{template}`: `{{` without a closing `}}`")))?;
            parts.push(match &after[..end] {
                "rendition" => Part::Rendition,
                "key" => Part::Key,
                "key_stem" => Part::KeyStem,
                "basename" => Part::Basename,
                "ext" => Part::Ext,
                other => {
                    return Err(err(format!(
                        "`{template}`: unknown placeholder `{{{other}}}` (use {{rendition}}, {{key}}, \
                         {{key_stem}}, {{basename}}, {{ext}})"
                    )));
                }
            });
            rest = &after[end + 1..];
        }
        if !parts.contains(&Part::Rendition) {
            return Err(err(format!(
                "`{template}` has no {{rendition}}: every rendition would be written to the same key"
            )));
        }
        if !parts
            .iter()
            .any(|p| matches!(p, Part::Key | Part::KeyStem | Part::Basename))
        {
            return Err(err(format!(
                "`{template}` names no source ({{key}}, {{key_stem}} or {{basename}}): every image would be \
                 written to the same key"
            )));
        }
        if template.starts_with('/') {
            return Err(err(format!("`{template}`: keys must not start with `/`")));
        }
        Ok(KeyTemplate {
            parts,
            source: template.to_owned(),
        })
    }

    /// The destination key of one rendition of `key`, shortened by [`fit`] if it would be
    /// longer than S3 allows.
    pub fn render(&self, rendition: &str, key: &str, ext: &str) -> String {
        let stem = key_stem(key);
        let basename = stem.rsplit('/').next().unwrap_or(stem);
        let mut out = String::with_capacity(self.source.len() + key.len() + 16);
        for part in &self.parts {
            out.push_str(match part {
                Part::Lit(s) => s,
                Part::Rendition => rendition,
                Part::Key => key,
                Part::KeyStem => stem,
                Part::Basename => basename,
                Part::Ext => ext,
            });
        }
        match fit(&out) {
            Cow::Borrowed(_) => out,
            Cow::Owned(fitted) => fitted,
        }
    }

    /// Whether two sources that differ only in their extension (`a.jpg`, `a.png`) get
    /// different keys: the template keeps the whole key, not just its stem or base name.
    pub fn keeps_whole_key(&self) -> bool {
        self.parts.contains(&Part::Key)
    }

    /// The fixed start of every key written for `rendition` (the template up to its first
    /// placeholder other than `{rendition}`): `large/` for the default template. Empty when
    /// the template starts with the source key.
    pub fn prefix_for(&self, rendition: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Rendition => out.push_str(rendition),
                _ => break,
            }
        }
        out
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// `inbox/2026/cat.png` → `inbox/2026/cat`; dots in folders and a leading dot of the file
/// name (`.hidden`) are not extensions.
pub fn key_stem(key: &str) -> &str {
    let name_start = key.rfind('/').map_or(0, |i| i + 1);
    match key[name_start..].rfind('.') {
        Some(dot) if dot > 0 => &key[..name_start + dot],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_fit_are_untouched() {
        for key in [
            "a.jpg",
            "/lead.jpg",
            "a//b.jpg",
            "caf\u{e9}.jpg",
            "cafe\u{301}.jpg",
        ] {
            assert!(matches!(fit(key), Cow::Borrowed(k) if k == key), "{key}");
        }
        let exact = "k".repeat(MAX_KEY_BYTES);
        assert_eq!(fit(&exact), exact.as_str());
    }

    #[test]
    fn long_keys_are_shortened_to_a_unique_prefix_plus_hash() {
        let a = format!("large/{}", "a".repeat(1020));
        let b = format!("large/{}b", "a".repeat(1019));
        let (fa, fb) = (fit(&a), fit(&b));
        assert_eq!(fa.len(), MAX_KEY_BYTES);
        assert_eq!(fb.len(), MAX_KEY_BYTES);
        assert_ne!(fa, fb, "same prefix, different keys");
        assert!(fa.starts_with("large/aaaa"));
        let (head, hash) = fa.rsplit_once('~').unwrap();
        assert!(a.starts_with(head));
        assert_eq!(hash, digest_hex(&a));
        // SHA-256("abc") starts with ba7816bf 8f01cfea 414140de 5dae2223.
        assert_eq!(digest_hex("abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert!(hash.bytes().all(|c| c.is_ascii_hexdigit()));
        // Deterministic: a redelivery writes the same key.
        assert_eq!(fit(&a), fa);
    }

    #[test]
    fn same_keys_as_the_load_test() {
        // loadtest/ltlib/workload.py `fit_key` computes these too (it checks that nothing is lost).
        let key = format!("large/{}", "k".repeat(1100));
        let f = fit(&key);
        assert_eq!(f.len(), MAX_KEY_BYTES);
        assert!(f.ends_with("~7806456bde249668504a0fc6edae3ff4"), "{f}");
        let key = format!("large/{}", "猫".repeat(400));
        let f = fit(&key);
        assert_eq!(f.len(), 1023);
        assert!(f.ends_with("猫~fef48e31a619cc865a1f9af81dbf0d11"), "{f}");
    }

    #[test]
    fn shortening_never_splits_a_character() {
        // 3-byte characters: the cut lands inside one unless it backs off.
        let key = format!("thumb/{}", "猫".repeat(400));
        let f = fit(&key);
        assert!(f.len() <= MAX_KEY_BYTES);
        assert!(f.len() >= MAX_KEY_BYTES - 2);
        let (head, _) = f.rsplit_once('~').unwrap();
        assert!(head.ends_with('猫'));
    }

    #[test]
    fn dot_segments_are_refused_other_keys_are_not() {
        for key in [
            "../x.jpg",
            "a/../b.jpg",
            "./a.jpg",
            "a/./b.jpg",
            "a/..",
            ".",
        ] {
            let why = unsafe_segment(key).unwrap_or_else(|| panic!("{key} accepted"));
            assert!(why.contains("path segment"), "{why}");
        }
        for key in [
            "/lead.jpg",
            "a//b.jpg",
            "..a.jpg",
            "a..b.jpg",
            "a/.hidden.jpg",
            "a/b../c.jpg",
            "...",
        ] {
            assert_eq!(unsafe_segment(key), None, "{key}");
        }
    }

    #[test]
    fn default_template_keeps_the_whole_key() {
        let t = KeyTemplate::parse("T", DEFAULT_KEY_TEMPLATE).unwrap();
        assert!(t.keeps_whole_key());
        // The format does not change the key: a client can compute it from the source key.
        assert_eq!(
            t.render("large", "inbox/2026/cat.png", "jpg"),
            "large/inbox/2026/cat.png"
        );
        // Sources that differ only in their extension keep apart.
        assert_ne!(
            t.render("large", "a.jpg", "jpg"),
            t.render("large", "a.png", "jpg")
        );
        // Bytes are kept as they are: NFC and NFD spellings stay distinct; a leading `/` stays.
        assert_eq!(
            t.render("thumb", "caf\u{e9}.jpg", "jpg"),
            "thumb/caf\u{e9}.jpg"
        );
        assert_eq!(
            t.render("thumb", "cafe\u{301}.jpg", "jpg"),
            "thumb/cafe\u{301}.jpg"
        );
        assert_eq!(t.render("thumb", "/lead.jpg", "jpg"), "thumb//lead.jpg");
        assert_eq!(t.prefix_for("large"), "large/");
        // A 1,024-byte source key still gets a valid (shortened, unique) rendition key.
        let long = "k".repeat(1024);
        let key = t.render("large", &long, "jpg");
        assert_eq!(key.len(), MAX_KEY_BYTES);
        assert!(key.starts_with("large/kkk"));
        assert_ne!(
            key,
            t.render("large", &format!("{}x", &long[..1023]), "jpg")
        );
    }

    #[test]
    fn stem_template_swaps_the_extension() {
        let t = KeyTemplate::parse("T", "{rendition}/{key_stem}.{ext}").unwrap();
        assert!(!t.keeps_whole_key());
        assert_eq!(
            t.render("large", "inbox/2026/cat.png", "jpg"),
            "large/inbox/2026/cat.jpg"
        );
        assert_eq!(t.render("thumb", "cat", "png"), "thumb/cat.png");
        assert_eq!(
            t.render("thumb", "dir.v2/file", "jpg"),
            "thumb/dir.v2/file.jpg"
        );
        assert_eq!(t.render("thumb", "a/.hidden", "jpg"), "thumb/a/.hidden.jpg");
        assert_eq!(
            t.render("thumb", "my photo (1).JPEG", "jpg"),
            "thumb/my photo (1).jpg"
        );
    }

    #[test]
    fn all_placeholders() {
        let t = KeyTemplate::parse(
            "T",
            "out/{rendition}/{basename}-{rendition}.{ext}?src={key}",
        )
        .unwrap();
        assert_eq!(
            t.render("m", "a/b/c.tar.gz", "webp"),
            "out/m/c.tar-m.webp?src=a/b/c.tar.gz"
        );
        assert_eq!(t.prefix_for("m"), "out/m/");
        let t = KeyTemplate::parse("T", "{key_stem}_{rendition}.{ext}").unwrap();
        assert_eq!(t.prefix_for("m"), "");
    }

    #[test]
    fn bad_templates_name_the_variable() {
        for bad in [
            "{key_stem}.{ext}",
            "{rendition}.{ext}",
            "{rendition}/{nope}.{ext}",
            "{rendition}/{key",
            "{rendition}/key}",
            "/{rendition}/{key}",
        ] {
            let e = KeyTemplate::parse("DEST_KEY_TEMPLATE", bad).unwrap_err();
            assert_eq!(e.setting, "DEST_KEY_TEMPLATE", "{bad}");
        }
    }

    #[test]
    fn key_stems() {
        assert_eq!(key_stem("inbox/2026/cat.png"), "inbox/2026/cat");
        assert_eq!(key_stem("a.b/c"), "a.b/c");
        assert_eq!(key_stem(".x"), ".x");
        assert_eq!(key_stem("x."), "x");
    }

    #[test]
    fn decodes_keys() {
        let cases = [
            ("red+flower.jpg", "red flower.jpg"),
            ("red%20flower.jpg", "red flower.jpg"),
            ("c%2B%2B/a%2Bb.png", "c++/a+b.png"),
            ("100%25+sure.jpg", "100% sure.jpg"),
            ("100%.jpg", "100%.jpg"),
            ("50%zz%2", "50%zz%2"),
            ("caf%C3%A9/%E7%8C%AB.jpg", "café/猫.jpg"),
            ("%F0%9F%93%B7+photo.webp", "📷 photo.webp"),
            ("a/b/c/d/e/f/g/h/deep.jpg", "a/b/c/d/e/f/g/h/deep.jpg"),
            ("sub%2Fdir%3Aname.jpg", "sub/dir:name.jpg"),
            ("plain.jpg", "plain.jpg"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_key(raw).unwrap(), want, "{raw}");
        }
        assert!(decode_key("%FF%FE.jpg").is_err());
    }

    #[test]
    fn encode_is_the_inverse_of_decode() {
        for key in [
            "red flower.jpg",
            "c++/a+b.png",
            "100% sure.jpg",
            "café/猫.jpg",
            "a/b (1).JPG",
            "x~y_z-1.2",
        ] {
            let enc = encode_key(key);
            assert!(enc.is_ascii() && !enc.contains(' '), "{enc}");
            assert_eq!(decode_key(&enc).unwrap(), key);
        }
        assert_eq!(encode_key("red flower+1.jpg"), "red+flower%2B1.jpg");
    }
}
