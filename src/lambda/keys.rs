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
}
