//! bytes → the Lambda trigger parser (`renditions::event`): S3, SQS (with SNS
//! envelopes) and EventBridge payloads, and the S3 key decoding they all go through.
//!
//! Properties: parsing never panics, whatever the JSON; every decoded key is non-empty;
//! `keys::fit` always gives a key of at most 1,024 bytes and leaves valid keys alone;
//! `decode_key(encode_key(k)) == k` for any string (the demo and tests build events with
//! `encode_key`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use renditions::event::{self, Entry};
use renditions::event::keys;

fuzz_target!(|data: &[u8]| {
    // The raw bytes as a key: decoding must never panic.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = keys::decode_key(s);
        let encoded = keys::encode_key(s);
        assert_eq!(keys::decode_key(&encoded).as_deref(), Ok(s), "round trip of {s:?}");
        // The key policy: a fitted key is a valid S3 key, untouched when it already was one.
        let fitted = keys::fit(s);
        assert!(fitted.len() <= keys::MAX_KEY_BYTES, "fit({s:?}) is {} bytes", fitted.len());
        assert!(s.len() > keys::MAX_KEY_BYTES || fitted == s, "fit changed a short key");
        let _ = keys::unsafe_segment(s);
    }
    // The raw bytes as an invocation payload.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(parsed) = event::parse(&value) {
        for message in &parsed.messages {
            for entry in &message.entries {
                if let Entry::Object(o) = entry {
                    assert!(!o.key.is_empty(), "an object entry with an empty key");
                    assert!(!o.bucket.trim().is_empty(), "an object entry without a bucket");
                }
            }
        }
        let _ = parsed.objects().count();
    }
});
