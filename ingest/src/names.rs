//! Exact lookup of a fixed set of names, for the keys of every line.
//!
//! Validation looks up each top-level key of each line among the events
//! schema's column names. A hash map of `String`s hashes the whole key and
//! then compares it with `memcmp`; at 2M events that was 3 to 4% of the
//! ingest's CPU. [`NameTable`] reads a key as its length and its first and
//! last eight bytes (which together are the whole key when it is at most
//! 16 bytes long, as most names are), finds its slot from those three
//! integers, and compares integers; only a key longer than 16 bytes that
//! matches a name that far is compared in full.

/// A key as three integers: its length and its first and last eight
/// bytes (zero-padded when shorter; both the same bytes when it is at most
/// eight long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    len: usize,
    head: u64,
    tail: u64,
}

/// Keys up to this length are told apart by [`Key`] alone.
const WHOLE: usize = 16;

impl Key {
    fn of(bytes: &[u8]) -> Self {
        let len = bytes.len();
        let (head, tail) = if len >= 8 {
            // Two fixed-size loads (a copy of a variable length would
            // call memcpy, which costs more than the lookup).
            let first: [u8; 8] = bytes[..8].try_into().expect("eight bytes");
            let last: [u8; 8] = bytes[len - 8..].try_into().expect("eight bytes");
            (u64::from_le_bytes(first), u64::from_le_bytes(last))
        } else {
            let w = short_word(bytes);
            (w, w)
        };
        Self { len, head, tail }
    }

    /// The first slot to look in, of a table of `2^bits` slots.
    fn slot(&self, bits: u32) -> usize {
        let mixed = (self.head ^ self.tail.rotate_left(29) ^ self.len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - bits)) as usize
    }
}

/// The bytes of a key shorter than eight, little-endian, zero-padded.
fn short_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    debug_assert!(n < 8);
    if n >= 4 {
        // Two overlapping four-byte loads; where they overlap, the bytes
        // are the same.
        let lo = u32::from_le_bytes(bytes[..4].try_into().expect("four bytes"));
        let hi = u32::from_le_bytes(bytes[n - 4..].try_into().expect("four bytes"));
        u64::from(lo) | (u64::from(hi) << ((n - 4) * 8))
    } else {
        bytes
            .iter()
            .enumerate()
            .fold(0, |w, (i, &b)| w | (u64::from(b) << (i * 8)))
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: Key,
    name: &'static str,
    value: usize,
}

/// Names mapped to values, looked up by linear probing in a table at
/// most a quarter full.
#[derive(Debug)]
pub struct NameTable {
    slots: Vec<Option<Slot>>,
    bits: u32,
}

impl NameTable {
    /// A table of `names` with their values. Panics on a repeated name
    /// (a fixed set known when the program is written).
    pub fn new(names: impl IntoIterator<Item = (&'static str, usize)>) -> Self {
        let names: Vec<(&'static str, usize)> = names.into_iter().collect();
        let bits = (names.len().max(1) * 4)
            .next_power_of_two()
            .trailing_zeros();
        let mut table = Self {
            slots: vec![None; 1 << bits],
            bits,
        };
        for (name, value) in names {
            assert!(table.get(name).is_none(), "name {name} given twice");
            let key = Key::of(name.as_bytes());
            let mut i = key.slot(bits);
            while table.slots[i].is_some() {
                i = (i + 1) & (table.slots.len() - 1);
            }
            table.slots[i] = Some(Slot { key, name, value });
        }
        table
    }

    /// The value of `name`, if it is one of the table's names.
    pub fn get(&self, name: &str) -> Option<usize> {
        let key = Key::of(name.as_bytes());
        let mut i = key.slot(self.bits);
        while let Some(slot) = &self.slots[i] {
            if slot.key == key && (key.len <= WHOLE || slot.name == name) {
                return Some(slot.value);
            }
            i = (i + 1) & (self.slots.len() - 1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use agentledger_lake::schema::EVENTS_SCHEMA;

    use super::*;

    /// Keys near the names: each byte changed, one cut off at either end,
    /// one added at either end, another case; and short and long others.
    fn near(names: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = vec![String::new(), "a".into(), "x".repeat(40)];
        for name in names {
            let bytes = name.as_bytes();
            for i in 0..bytes.len() {
                let mut changed = bytes.to_vec();
                changed[i] = if changed[i] == b'z' { b'y' } else { b'z' };
                keys.push(String::from_utf8(changed).unwrap());
            }
            keys.push(name[1..].to_string());
            keys.push(name[..name.len() - 1].to_string());
            keys.push(format!("{name}_"));
            keys.push(format!("_{name}"));
            keys.push(name.to_uppercase());
            keys.push(name.to_string());
        }
        keys
    }

    #[test]
    fn finds_exactly_what_a_hash_map_finds() {
        let names: Vec<&'static str> = EVENTS_SCHEMA
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        // Names of the lengths the table treats apart, as well as the
        // schema's: up to 8 bytes, 9 to 16, longer; and some that share
        // their first and last eight bytes.
        let mut extra: Vec<&'static str> = vec![
            "abcdefgh_middle_12345678",
            "abcdefgh_MIDDLE_12345678",
            "abcdefgh_m_12345678",
            "abcdefgh12345678",
            "abcdefgh2345678",
        ];
        extra.extend(names.iter().copied());
        // Many names that share their length and first eight bytes (they
        // differ only in their last eight), and many that share all three
        // (they differ only in the middle): probes then pass names that a
        // lookup must not take for the one it looks for.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let mut many: Vec<&'static str> =
            (0..500).map(|i| leak(format!("field_xx{i:06}"))).collect();
        many.extend((0..200).map(|i| leak(format!("prefix__{i:06}__suffix_"))));
        for names in [names, extra, many] {
            let expected: HashMap<&str, usize> =
                names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
            let table = NameTable::new(names.iter().enumerate().map(|(i, n)| (*n, i)));
            let keys = near(&names);
            assert!(keys.len() > 10 * names.len());
            for key in &keys {
                assert_eq!(
                    table.get(key),
                    expected.get(key.as_str()).copied(),
                    "{key:?}"
                );
            }
        }
    }

    #[test]
    fn a_key_is_its_bytes_padded_with_zeros() {
        let padded = |b: &[u8]| {
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(w)
        };
        let text = b"abcdefghijklmnopqrstu\x00\xff";
        for start in 0..text.len() {
            for end in start..text.len() {
                let bytes = &text[start..end];
                let key = Key::of(bytes);
                let n = bytes.len();
                assert_eq!(key.len, n);
                assert_eq!(key.head, padded(&bytes[..n.min(8)]), "{bytes:?}");
                assert_eq!(key.tail, padded(&bytes[n.saturating_sub(8)..]), "{bytes:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "given twice")]
    fn a_repeated_name_is_refused() {
        NameTable::new([("tool", 1), ("tool", 2)]);
    }
}
