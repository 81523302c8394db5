//! The hasher of the store's stream and category maps.

use std::hash::{BuildHasher, Hasher};

/// The stream map's hasher: XXH3 with a seed drawn per store, so that stream names chosen by an
/// attacker cannot be made to collide.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededState(u64);

impl SeededState {
    /// A state with a fresh random seed.
    pub(crate) fn random() -> Self {
        Self(fastrand::u64(..))
    }
}

#[derive(Debug)]
pub(crate) struct SeededHasher {
    seed: u64,
    hash: u64,
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher {
            seed: self.0,
            hash: 0,
        }
    }
}

impl Hasher for SeededHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        self.hash ^= xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.seed);
    }

    fn write_u8(&mut self, byte: u8) {
        // `str` hashes end with one 0xff byte; fold it in without a second XXH3 call.
        self.hash = self.hash.rotate_left(5) ^ u64::from(byte);
    }
}
