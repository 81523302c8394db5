//! The stable partition hash: which partition an ordering key belongs to.
//!
//! Invariant: for a given key and partition count the answer never changes — not between
//! runs, processes, machines, architectures or releases. Two instances of a service (for
//! example both publishing to the Redis backend) must agree on it, and so must the event
//! store's category consumer groups. The function is therefore a published algorithm with a
//! fixed seed, never a `HashMap` hasher with random state:
//!
//! ```text
//! partition = XXH3_64bits(seed = 0, bytes = the key's UTF-8 bytes) mod partitions
//! ```
//!
//! Any language with an XXH3 implementation reproduces it. The tests in this module pin the
//! output for known keys, so a change to it fails the build.

use std::num::NonZeroU32;

use crate::Key;

/// The stable 64-bit hash of an ordering key: XXH3-64 with seed 0 over the key's UTF-8 bytes.
///
/// ```
/// use flowgate::stable_hash;
/// assert_eq!(stable_hash("order-42"), stable_hash(String::from("order-42")));
/// assert_eq!(stable_hash(""), 0x2D06_8005_38D3_94C2); // the XXH3 reference value
/// ```
#[inline]
pub fn stable_hash(key: impl AsRef<str>) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_ref().as_bytes())
}

/// The partition (in `0..partitions`) that `key` belongs to: [`stable_hash`] modulo the count.
///
/// The count is a [`NonZeroU32`], so there is no partition count this can fail on.
///
/// ```
/// use std::num::NonZeroU32;
/// use flowgate::{partition_for, Key};
/// let partitions = NonZeroU32::new(8).unwrap();
/// let p = partition_for(&Key::from("order-42"), partitions);
/// assert!(p < 8);
/// assert_eq!(p, partition_for(&Key::from("order-42"), partitions)); // always the same
/// ```
#[inline]
pub fn partition_for(key: &Key, partitions: NonZeroU32) -> u32 {
    partition_of_hash(stable_hash(key.as_str()), partitions)
}

/// The partition of an already computed [`stable_hash`].
///
/// ```
/// use std::num::NonZeroU32;
/// use flowgate::{partition_for, partition_of_hash, stable_hash, Key};
/// let p = NonZeroU32::new(5).unwrap();
/// assert_eq!(partition_of_hash(stable_hash("k"), p), partition_for(&Key::from("k"), p));
/// ```
#[inline]
pub fn partition_of_hash(hash: u64, partitions: NonZeroU32) -> u32 {
    // The remainder is below `partitions`, a u32, so the cast is lossless.
    (hash % u64::from(partitions.get())) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// The XXH3-64 value of the empty input, from the xxHash reference: if it moves, the
    /// dependency no longer computes XXH3.
    #[test]
    fn hash_is_xxh3_64_seed_0() {
        assert_eq!(stable_hash(""), 0x2D06_8005_38D3_94C2);
    }

    /// Pinned outputs, cross-checked against the C xxHash library (through Python's `xxhash`
    /// package, `xxh3_64_intdigest`). These values are part of the public contract: changing any of them
    /// re-partitions every user's topics and splits keys across processes running different
    /// releases. Never update them to make a test pass.
    #[test]
    fn pinned_outputs_never_change() {
        let pinned: [(&str, u64); 6] = [
            ("order-42", 0x79CC_A591_0B9A_CE3C),
            ("customer:1001", 0xE979_42B1_423D_4D5B),
            ("a", 0xE6C6_32B6_1E96_4E1F),
            ("payments/eu-west-1", 0x2E29_05ED_5D3A_B891),
            ("ключ", 0x9A13_7C08_C1E5_5EDE),
            ("0123456789abcdef0123456789abcdef", 0x0112_1D5B_6C0A_C055),
        ];
        for (key, hash) in pinned {
            assert_eq!(stable_hash(key), hash, "stable_hash({key:?})");
        }
        let partitions: [(&str, u32, u32); 4] = [
            ("order-42", 8, 4),
            ("order-42", 3, 1),
            ("customer:1001", 16, 11),
            ("a", 1, 0),
        ];
        for (key, count, partition) in partitions {
            assert_eq!(
                partition_for(&Key::from(key), p(count)),
                partition,
                "partition_for({key:?}, {count})"
            );
        }
    }

    #[test]
    fn keys_spread_over_partitions() {
        let count = 8;
        let mut seen = [0u32; 8];
        for i in 0..8_000 {
            seen[partition_for(&Key::from(format!("key-{i}")), p(count)) as usize] += 1;
        }
        // A uniform hash puts ~1,000 in each; a broken one (all in one) fails this.
        assert!(seen.iter().all(|&n| (800..1_200).contains(&n)), "{seen:?}");
    }
}
