//! Duplicates within one ingest (and against lake files the key index does
//! not cover) in bounded memory.
//!
//! Events the lake's key index covers are decided by probing it, block by
//! block. What is left is whether an event repeats one this ingest stored
//! earlier (or one in an unindexed file). Holding every such `event_id` in a
//! hash map costs tens of bytes per event. Instead a Bloom filter answers
//! "seen before?" in about two bytes per event: a "no" is certain and the
//! event is stored at once; a "maybe" (a real repeat, or a false positive
//! one time in a thousand) makes the event a *suspect*. Suspects are held
//! aside (their raw lines only) and resolved exactly, in input order,
//! whenever their bytes reach the suspect budget
//! (`IngestOptions::suspect_budget`) and once more at the end of the ingest,
//! before anything is committed: by a streaming pass over the `event_id` and
//! `content_hash` columns of the unindexed lake files and of the files this
//! ingest wrote so far.

/// A Bloom filter over 128-bit keys (already uniform hashes).
#[derive(Debug, Clone)]
pub struct Bloom {
    bits: Vec<u64>,
    hashes: u32,
}

/// Bits per expected entry: a false-positive rate of about 0.1 %.
const BITS_PER_ENTRY: f64 = 14.4;
const HASHES: u32 = 10;

impl Bloom {
    /// A filter sized for `expected` entries.
    pub fn with_expected(expected: u64) -> Self {
        Self::with_bits((expected as f64 * BITS_PER_ENTRY) as u64)
    }

    /// A filter of (at least) `bits` bits, rounded up to whole words (not
    /// to a power of two, which could double the memory).
    pub fn with_bits(bits: u64) -> Self {
        let words = bits.clamp(1024, 1 << 36).div_ceil(64);
        Self {
            bits: vec![0; words as usize],
            hashes: HASHES,
        }
    }

    fn positions(&self, key: u128) -> impl Iterator<Item = u64> + use<> {
        let h1 = key as u64;
        let h2 = ((key >> 64) as u64) | 1;
        let len = self.bits.len() as u128 * 64;
        // Multiply-shift maps a uniform 64-bit hash onto 0..len.
        (0..u64::from(self.hashes)).map(move |i| {
            let h = h1.wrapping_add(i.wrapping_mul(h2));
            ((u128::from(h) * len) >> 64) as u64
        })
    }

    /// Adds `key`; returns whether it may have been present already.
    pub fn insert(&mut self, key: u128) -> bool {
        let mut present = true;
        for p in self.positions(key) {
            let (word, bit) = ((p / 64) as usize, 1u64 << (p % 64));
            present &= self.bits[word] & bit != 0;
            self.bits[word] |= bit;
        }
        present
    }

    /// Whether `key` may be present.
    pub fn contains(&self, key: u128) -> bool {
        self.positions(key)
            .all(|p| self.bits[(p / 64) as usize] & (1u64 << (p % 64)) != 0)
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = Bloom::with_expected(10_000);
        let key = |i: u64| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
        for i in 0..10_000 {
            f.insert(key(i));
        }
        for i in 0..10_000 {
            assert!(f.insert(key(i)), "inserted keys are always present");
        }
        let false_positives = (10_000..110_000).filter(|&i| f.contains(key(i))).count();
        // 0.1 % nominal; under 0.5 % over 100k probes leaves a wide margin.
        assert!(false_positives < 500, "{false_positives}");
        assert!(
            f.bytes() < 10_000 * 4,
            "about two bytes per entry: {}",
            f.bytes()
        );
    }
}
