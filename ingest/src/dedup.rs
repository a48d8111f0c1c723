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

/// A Bloom filter over 128-bit keys (already uniform hashes), split into
/// blocks of 256 bits (the split block filter Parquet uses): a key sets one
/// bit in each of a block's eight 32-bit words, so adding or looking up a
/// key touches one cache line, where bits spread over the whole filter
/// would cost one cache miss per bit. Its false positives only make
/// suspects, which are resolved exactly.
#[derive(Debug, Clone)]
pub struct Bloom {
    blocks: Vec<Block>,
}

/// One 256-bit block, aligned so that it lies in one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(32))]
struct Block([u32; 8]);

/// Bits per expected entry: a false-positive rate of about 0.1 to 0.2 %.
const BITS_PER_ENTRY: f64 = 14.4;

/// Odd multipliers that pick a bit in each word of a block (Parquet's).
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

impl Bloom {
    /// A filter sized for `expected` entries.
    pub fn with_expected(expected: u64) -> Self {
        Self::with_bits((expected as f64 * BITS_PER_ENTRY) as u64)
    }

    /// A filter of (at least) `bits` bits, rounded up to whole blocks (not
    /// to a power of two, which could double the memory).
    pub fn with_bits(bits: u64) -> Self {
        let blocks = bits.clamp(1024, 1 << 36).div_ceil(256);
        Self {
            blocks: vec![Block::default(); blocks as usize],
        }
    }

    /// The block of `key`: multiply-shift maps the key's low half onto the
    /// blocks.
    fn block_of(&self, key: u128) -> usize {
        ((u128::from(key as u64) * self.blocks.len() as u128) >> 64) as usize
    }

    /// The block of `key` and the bit of each of its words (the key's high
    /// half picks the bits).
    fn locate(&self, key: u128) -> (usize, [u32; 8]) {
        let block = self.block_of(key);
        let h = (key >> 64) as u32;
        let mut mask = [0u32; 8];
        for (m, salt) in mask.iter_mut().zip(SALT) {
            *m = 1 << (h.wrapping_mul(salt) >> 27);
        }
        (block, mask)
    }

    /// Asks the processor to bring `key`'s block into its cache, so that
    /// an [`insert`](Self::insert) of that key a few keys later does not
    /// wait on memory. A filter for 20M events (36 MB) is far larger than
    /// the caches: its inserts, each a cache miss, took 5% of a 20M
    /// ingest's CPU against 2% at 2M (BENCHMARKS.md).
    pub fn prefetch(&self, key: u128) {
        prefetch(&self.blocks[self.block_of(key)]);
    }

    /// Adds `key`; returns whether it may have been present already.
    pub fn insert(&mut self, key: u128) -> bool {
        let (block, mask) = self.locate(key);
        let words = &mut self.blocks[block].0;
        let mut present = true;
        for (word, m) in words.iter_mut().zip(mask) {
            present &= *word & m != 0;
            *word |= m;
        }
        present
    }

    /// Whether `key` may be present.
    pub fn contains(&self, key: u128) -> bool {
        let (block, mask) = self.locate(key);
        self.blocks[block]
            .0
            .iter()
            .zip(mask)
            .all(|(w, m)| w & m != 0)
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>()
    }
}

/// A hint to the processor to load `block`'s cache line.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn prefetch(block: &Block) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch only asks the cache to load a line; it reads
    // nothing into the program, writes nothing, and does not fault even on
    // an invalid address. Here the address is of a live reference anyway.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(block).cast()) }
}

/// Elsewhere, no hint: inserts wait on memory as they did before.
#[cfg(not(target_arch = "x86_64"))]
fn prefetch(_block: &Block) {}

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
        // 0.1 to 0.2 % nominal; under 0.5 % over 100k probes leaves a
        // wide margin.
        assert!(false_positives < 500, "{false_positives}");
        assert!(
            f.bytes() < 10_000 * 4,
            "about two bytes per entry: {}",
            f.bytes()
        );
    }
}
