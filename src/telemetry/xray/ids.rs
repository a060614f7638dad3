//! Random 64-bit ids for X-Ray subsegments and exceptions: a lock-free splitmix64
//! sequence seeded from time, pid and an address, so no `rand` dependency is needed
//! (ids only need to be unique within a trace, not unpredictable).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

static STATE: LazyLock<AtomicU64> = LazyLock::new(|| AtomicU64::new(seed()));

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let addr = std::ptr::addr_of!(local) as usize as u64;
    mix(nanos ^ (u64::from(std::process::id()) << 32) ^ addr.rotate_left(17))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Next non-zero pseudo-random 64-bit value (thread-safe, never blocks).
pub fn next_u64() -> u64 {
    loop {
        let v = mix(STATE
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN));
        if v != 0 {
            return v;
        }
    }
}

/// A new X-Ray id: 16 lowercase hex characters.
pub fn new_id() -> String {
    format!("{:016x}", next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_16_lowercase_hex_and_distinct() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.len(), 16);
            assert!(id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        }
    }
}
