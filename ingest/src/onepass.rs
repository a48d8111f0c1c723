//! One pass over a line, for the lines that need nothing more.
//!
//! The general path of [`crate::validate`] reads a line several times: a
//! shape scan for the nesting and key limits ([`check_shape`]), serde_json
//! for the top-level members, and then every nested value again, one level
//! at a time, to write the canonical form whose hash tells an exact repeat
//! from a conflicting one. [`parse`] does all of that in one pass over the
//! bytes into a flat list of nodes, then writes the canonical form from the
//! nodes.
//!
//! It takes only lines it can finish: a JSON object within the nesting and
//! key limits, no key written with escapes, no object with more than
//! [`ONE_PASS_KEYS`] members and no key repeated in one object. For anything
//! else (invalid JSON, a limit passed, a repeated or escaped key, a large
//! object) it answers `None` and the line takes the general path, which
//! says what is wrong with it; so a rejection is the same whichever path a
//! line takes. For a line it takes, it gives exactly what the general path
//! gives: the same members with the same raw value text, and the same
//! content hash. `validate`'s tests hold the two paths equal on generated
//! lines, valid and broken.
//!
//! [`check_shape`]: crate::json::check_shape

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use crate::json::{Form, LINEAR_KEYS, push_plain_key, write_scalar};
use crate::limits::MAX_DEPTH_CEILING;

/// A line read in one pass: its top-level members in document order (keys
/// borrowed, values as their raw text) and the hash of its canonical form.
#[derive(Debug)]
pub struct OnePass<'a> {
    /// Members of the top-level object (hand them to [`recycle`] when done).
    pub members: Members<'a>,
    /// xxh3 of the canonical form, as the general path computes it.
    pub content_hash: u64,
    /// Bit `i` set: member `i`'s value is a string without escapes, whose
    /// text between the quotes is its value (no need to look for a
    /// backslash again).
    pub plain: u32,
    /// The compact form ([`Form::Compact`]) of the value of the member
    /// named [`COMPACT_MEMBER`] when that value is an object, written from
    /// the nodes: the bytes [`crate::json::write_value`] writes for it.
    pub compact: Option<Vec<u8>>,
}

/// The member whose object value [`OnePass::compact`] holds in compact
/// form: an event's `attributes`, which is stored that way.
pub const COMPACT_MEMBER: &str = "attributes";

/// The most members an object may have for the one pass to take its line
/// (an event with many optional and unknown fields has 20 or so; an
/// object's members are sorted on the stack for the canonical form).
pub const ONE_PASS_KEYS: usize = 32;

// One bit of `OnePass::plain` for each member the one pass takes.
const _: () = assert!(ONE_PASS_KEYS <= u32::BITS as usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    /// A string without escapes: its canonical form is its text.
    PlainString,
    /// Any other string, a number or a literal.
    Scalar,
    /// An object member's key: `start..end` is the text between its quotes.
    Key,
}

/// One value (or key) of the line. Nodes are in document order; a
/// container's members follow it (an object's as key, value, key, ...),
/// and `next` is the index just past its last descendant.
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    start: usize,
    end: usize,
    next: usize,
}

thread_local! {
    /// Nodes and canonical text, reused from line to line.
    static SCRATCH: RefCell<(Vec<Node>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// An emptied vector of members handed back by [`recycle`], for the
    /// next line this thread reads.
    static SPARE_MEMBERS: Cell<Members<'static>> = const { Cell::new(Vec::new()) };
}

/// A line's top-level members: keys, and values as their raw text.
pub type Members<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// The largest vector of members [`recycle`] keeps (a general-path object
/// may have thousands of members; one such line should not hold memory).
const KEPT_MEMBERS: usize = 2 * ONE_PASS_KEYS;

/// Hands a vector of members back once a line is done with it, so that
/// the next line [`parse`] reads on this thread fills the same allocation
/// instead of a new one.
pub fn recycle(mut members: Members<'_>) {
    if members.capacity() > KEPT_MEMBERS {
        return;
    }
    members.clear();
    SPARE_MEMBERS.set(relabel(members));
}

/// The kept vector of members, or a new one.
fn spare_members<'a>() -> Members<'a> {
    let spare = relabel(SPARE_MEMBERS.take());
    if spare.capacity() == 0 {
        Vec::with_capacity(LINEAR_KEYS)
    } else {
        spare
    }
}

/// An empty vector of members, as one borrowing for another lifetime: the
/// elements have the same layout, so collecting in place keeps the
/// allocation (a test holds it to that).
fn relabel<'b>(members: Members<'_>) -> Members<'b> {
    debug_assert!(members.is_empty());
    members
        .into_iter()
        .map(|_| -> (Cow<'b, str>, &'b str) { unreachable!("emptied before") })
        .collect()
}

/// The capacity of the vector of members kept for this thread's next line.
#[cfg(test)]
pub(crate) fn spare_members_capacity() -> usize {
    SPARE_MEMBERS.with(|spare| {
        let kept = spare.take();
        let capacity = kept.capacity();
        spare.set(kept);
        capacity
    })
}

/// Reads `text` in one pass, or answers `None` for the general path (see
/// the module's documentation). `max_depth` counts the outermost object as
/// level 1 and is capped at [`MAX_DEPTH_CEILING`], as in `check_shape`;
/// `max_keys` bounds every object's members.
pub fn parse(text: &str, max_depth: usize, max_keys: usize) -> Option<OnePass<'_>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let (nodes, canonical) = &mut *scratch;
        nodes.clear();
        canonical.clear();
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            nodes,
            max_depth: max_depth.min(MAX_DEPTH_CEILING),
            max_keys: max_keys.min(ONE_PASS_KEYS),
        };
        p.ws();
        if p.s.get(p.i) != Some(&b'{') {
            return None;
        }
        p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return None;
        }
        let tree = Tree { text, nodes };
        tree.write::<true>(0, canonical)?;
        let root = nodes[0];
        let mut members = spare_members();
        let mut plain = 0;
        let mut compact = None;
        let mut i = 1;
        while i < root.next {
            let (key, value) = (nodes[i], nodes[i + 1]);
            if value.kind == Kind::PlainString {
                plain |= 1 << members.len();
            }
            if value.kind == Kind::Object && &text[key.start..key.end] == COMPACT_MEMBER {
                let mut out = Vec::with_capacity(value.end - value.start);
                tree.write::<false>(i + 1, &mut out)?;
                compact = Some(out);
            }
            members.push((
                Cow::Borrowed(&text[key.start..key.end]),
                &text[value.start..value.end],
            ));
            i = value.next;
        }
        Some(OnePass {
            members,
            content_hash: xxhash_rust::xxh3::xxh3_64(canonical),
            plain,
            compact,
        })
    })
}

struct Parser<'t, 'n> {
    s: &'t [u8],
    i: usize,
    nodes: &'n mut Vec<Node>,
    max_depth: usize,
    max_keys: usize,
}

impl Parser<'_, '_> {
    /// Skips JSON white space.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    /// Reads the value at `i` (no white space before it); `depth` is the
    /// nesting level of the container holding it.
    fn value(&mut self, depth: usize) -> Option<()> {
        let start = self.i;
        let mut kind = Kind::Scalar;
        match *self.s.get(self.i)? {
            b'{' => return self.object(depth + 1),
            b'[' => return self.array(depth + 1),
            b'"' => {
                if !self.string()? {
                    kind = Kind::PlainString;
                }
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => return None,
        }
        let next = self.nodes.len() + 1;
        self.nodes.push(Node {
            kind,
            start,
            end: self.i,
            next,
        });
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.s[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    /// Reads the string whose opening quote is at `i`; whether it has
    /// escapes. Escapes are only found here, not checked: every string is
    /// written in the canonical form, and an escaped one is decoded there
    /// (and a bad escape sends the line to the general path). A raw
    /// control character (JSON strings hold none) ends the one pass.
    fn string(&mut self) -> Option<bool> {
        let mut at = self.i + 1;
        let mut escaped = false;
        loop {
            at = string_stop(self.s, at)?;
            match self.s[at] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                _ => return None,
            }
        }
        self.i = at + 1;
        Some(escaped)
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let s = self.s;
        let digits = |mut i: usize| {
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.i;
        if s[i] == b'-' {
            i += 1;
        }
        match s.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        if s.get(i) == Some(&b'.') {
            let from = i + 1;
            i = digits(from);
            if i == from {
                return None;
            }
        }
        if let Some(b'e' | b'E') = s.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = s.get(i) {
                i += 1;
            }
            let from = i;
            i = digits(from);
            if i == from {
                return None;
            }
        }
        self.i = i;
        Some(())
    }

    /// A container's node, its end and `next` set when it closes.
    fn open(&mut self, kind: Kind, depth: usize) -> Option<usize> {
        if depth > self.max_depth {
            return None;
        }
        let at = self.nodes.len();
        self.nodes.push(Node {
            kind,
            start: self.i,
            end: 0,
            next: 0,
        });
        self.i += 1;
        self.ws();
        Some(at)
    }

    fn close(&mut self, at: usize) -> Option<()> {
        self.i += 1;
        let next = self.nodes.len();
        let node = &mut self.nodes[at];
        node.end = self.i;
        node.next = next;
        Some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        let at = self.open(Kind::Object, depth)?;
        if self.s.get(self.i) == Some(&b'}') {
            return self.close(at);
        }
        let mut members = 0;
        loop {
            if self.s.get(self.i) != Some(&b'"') {
                return None;
            }
            let key = self.i + 1;
            if self.string()? {
                return None;
            }
            members += 1;
            if members > self.max_keys {
                return None;
            }
            let next = self.nodes.len() + 1;
            self.nodes.push(Node {
                kind: Kind::Key,
                start: key,
                end: self.i - 1,
                next,
            });
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return None;
            }
            self.i += 1;
            self.ws();
            self.value(depth)?;
            if self.separator(at, b'}')? {
                return Some(());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        let at = self.open(Kind::Array, depth)?;
        if self.s.get(self.i) == Some(&b']') {
            return self.close(at);
        }
        loop {
            self.value(depth)?;
            if self.separator(at, b']')? {
                return Some(());
            }
        }
    }

    /// After a member or an item of the container at node `at`: a comma
    /// (and the white space after it) to go on, or `close` to end the
    /// container; whether it ended.
    fn separator(&mut self, at: usize, close: u8) -> Option<bool> {
        self.ws();
        match *self.s.get(self.i)? {
            b',' => {
                self.i += 1;
                self.ws();
                Some(false)
            }
            b if b == close => self.close(at).map(|()| true),
            _ => None,
        }
    }
}

/// The first byte at or after `at` where a string's plain run stops: a
/// quote, a backslash or a control character (below 0x20); `None` past
/// the end. Eight bytes at a time: one pass over a string instead of a
/// search for its end and a second scan for control characters.
fn string_stop(s: &[u8], at: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // A byte's high bit in `zero(x)` is set for the lowest zero byte of
    // `x`; bits above it may be set wrongly (a borrow), below it never.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut rest = s.get(at..)?;
    let mut base = at;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_le_bytes(*chunk);
        // Bytes below 0x20: subtracting 0x20 borrows and the byte had its
        // high bit clear; the lowest such byte is again exact.
        let found = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        rest = tail;
        base += 8;
    }
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| base + i)
}

struct Tree<'a> {
    text: &'a str,
    nodes: &'a [Node],
}

impl Tree<'_> {
    fn key(&self, at: usize) -> &[u8] {
        let node = self.nodes[at];
        &self.text.as_bytes()[node.start..node.end]
    }

    /// The first eight bytes of the key at node `at` as a big-endian
    /// number, zero padded: keys compare by it first (a key holds no zero
    /// byte, so a shorter key still sorts first) and by their bytes only
    /// when it ties. Read as one word where the line has eight bytes from
    /// the key's start (it does but for the last short key of a short
    /// line), the bytes past the key masked off.
    fn head(&self, at: usize) -> u64 {
        let node = self.nodes[at];
        let len = node.end - node.start;
        match self.text.as_bytes().get(node.start..node.start + 8) {
            Some(word) => {
                let word = u64::from_be_bytes(word.try_into().expect("eight bytes"));
                if len >= 8 {
                    word
                } else {
                    word & !(u64::MAX >> (len * 8))
                }
            }
            None => {
                let mut head = [0u8; 8];
                head[..len].copy_from_slice(self.key(at));
                u64::from_be_bytes(head)
            }
        }
    }

    /// Writes the member whose key is node `at` (its value is the node
    /// after it) as `"key":value`. Where the line has nothing between the
    /// key's quote, the colon and the value, the key, the colon and a
    /// plain string's value are copied from it in one piece: the bytes the
    /// key and value would be written as.
    fn member<const CANONICAL: bool>(&self, at: usize, out: &mut Vec<u8>) -> Option<()> {
        let (key, value) = (self.nodes[at], self.nodes[at + 1]);
        let text = self.text.as_bytes();
        if value.start == key.end + 2 {
            if value.kind == Kind::PlainString {
                out.extend_from_slice(&text[key.start - 1..value.end]);
                return Some(());
            }
            out.extend_from_slice(&text[key.start - 1..value.start]);
        } else {
            push_plain_key(out, &self.text[key.start..key.end]);
            out.push(b':');
        }
        self.write::<CANONICAL>(at + 1, out)
    }

    /// Writes the value at node `at` in canonical form (`CANONICAL`) or in
    /// compact form, as [`crate::json::write_value`] does; `None` for a
    /// repeated key (seen in canonical form, where keys are sorted) or a
    /// string the decoder refuses. The form is a constant so that each
    /// has its own code, without a test of it per node. Recursion is
    /// bounded by the depth limit the parser held the line to.
    fn write<const CANONICAL: bool>(&self, at: usize, out: &mut Vec<u8>) -> Option<()> {
        let form = if CANONICAL {
            Form::Canonical
        } else {
            Form::Compact
        };
        let node = self.nodes[at];
        match node.kind {
            // Document order: keys as they are (none has escapes here).
            Kind::Object if !CANONICAL => {
                out.push(b'{');
                let mut i = at + 1;
                while i < node.next {
                    if i > at + 1 {
                        out.push(b',');
                    }
                    self.member::<CANONICAL>(i, out)?;
                    i = self.nodes[i + 1].next;
                }
                out.push(b'}');
            }
            Kind::Object => {
                // Each member as (its key's head, key node).
                let mut members = [(0u64, 0usize); ONE_PASS_KEYS];
                let mut n = 0;
                let mut i = at + 1;
                while i < node.next {
                    members[n] = (self.head(i), i);
                    n += 1;
                    i = self.nodes[i + 1].next;
                }
                let members = &mut members[..n];
                let order = |a: &(u64, usize), b: &(u64, usize)| {
                    a.0.cmp(&b.0).then_with(|| self.key(a.1).cmp(self.key(b.1)))
                };
                members.sort_unstable_by(order);
                if members.windows(2).any(|w| order(&w[0], &w[1]).is_eq()) {
                    return None;
                }
                out.push(b'{');
                for (j, &(_, key)) in members.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    self.member::<CANONICAL>(key, out)?;
                }
                out.push(b'}');
            }
            Kind::Array => {
                out.push(b'[');
                let mut i = at + 1;
                while i < node.next {
                    if i > at + 1 {
                        out.push(b',');
                    }
                    self.write::<CANONICAL>(i, out)?;
                    i = self.nodes[i].next;
                }
                out.push(b']');
            }
            // Checked by the parser and free of escapes: re-encoding would
            // give the same bytes (as `write_scalar` would copy them,
            // without searching them for a backslash again).
            Kind::PlainString => {
                out.extend_from_slice(&self.text.as_bytes()[node.start..node.end]);
            }
            Kind::Scalar => {
                write_scalar(&self.text[node.start..node.end], form, out).ok()?;
            }
            Kind::Key => unreachable!("keys are written with their object"),
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{RawObject, write_members, write_value};

    /// A line's members as the general reader gives them, with its content hash.
    fn general(text: &str) -> Option<(Members<'_>, u64)> {
        let obj: RawObject<'_> = serde_json::from_str(text).ok()?;
        let mut out = Vec::new();
        write_members(obj.0.clone(), Form::Canonical, &mut out).ok()?;
        Some((obj.0, xxhash_rust::xxh3::xxh3_64(&out)))
    }

    #[test]
    fn a_recycled_vector_of_members_is_filled_by_the_next_line() {
        let first = r#"{"event_id":"e1","event_type":"run_started","ts":"2026-01-01T00:00:00Z"}"#;
        let second = r#"{"event_id":"e2","tenant_id":"t"}"#;
        let read = parse(first, 8, 1000).unwrap();
        let capacity = read.members.capacity();
        let at = read.members.as_ptr() as usize;
        assert!(capacity > 0);
        recycle(read.members);
        assert_eq!(spare_members_capacity(), capacity);
        let read = parse(second, 8, 1000).unwrap();
        assert_eq!(spare_members_capacity(), 0, "the next line took it");
        assert_eq!(read.members.as_ptr() as usize, at);
        let keys: Vec<&str> = read.members.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["event_id", "tenant_id"]);
        assert_eq!(read.members[1].1, r#""t""#);
        // A vector grown large (a general-path object) is not kept.
        recycle(Vec::with_capacity(KEPT_MEMBERS + 1));
        assert_eq!(spare_members_capacity(), 0);
    }

    #[test]
    fn takes_plain_lines_and_agrees_with_the_general_path() {
        for text in [
            r#"{"b": 1.50, "a": {"y": [1, 2e0, -0.0, 1E+2], "x": "\u0041"}}"#,
            r#" {"a":{"x":"A","y":[1.0,2]},"b":15e-1} "#,
            r#"{"e":{},"f":[],"g":[[],{}],"h":true,"i":false,"j":null,"k":"é ✓"}"#,
            "{}",
        ] {
            let fast = parse(text, 64, 10_000).expect(text);
            let (members, hash) = general(text).unwrap();
            assert_eq!(fast.members, members, "{text}");
            assert_eq!(fast.content_hash, hash, "{text}");
        }
    }

    #[test]
    fn a_string_stops_at_its_first_quote_backslash_or_control_byte() {
        let naive = |s: &[u8], at: usize| {
            s.get(at..)?
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .map(|i| at + i)
        };
        // Bytes next to the stopping ones in value, and both halves of
        // UTF-8: none of them stops a string.
        let plain = [
            0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa0, 0xdc, 0xe0, 0xff,
        ];
        let stops = [b'"', b'\\', 0x00, 0x01, 0x0a, 0x1f];
        let mut cases = 0;
        for len in 0..=26 {
            for (f, &fill) in plain.iter().enumerate() {
                let mut line: Vec<u8> = (0..len).map(|i| plain[(i + f) % plain.len()]).collect();
                line[..len.min(3)].fill(fill);
                for at in 0..=len + 1 {
                    assert_eq!(
                        string_stop(&line, at),
                        naive(&line, at),
                        "{line:?} from {at}"
                    );
                    cases += 1;
                }
                for pos in 0..len {
                    for &stop in &stops {
                        let mut with = line.clone();
                        with[pos] = stop;
                        // A second stop after the first must not be taken.
                        if pos + 3 < len {
                            with[pos + 3] = b'"';
                        }
                        for at in 0..=len {
                            assert_eq!(
                                string_stop(&with, at),
                                naive(&with, at),
                                "{with:?} from {at}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 10_000);
    }

    #[test]
    fn the_attributes_compact_form_is_what_write_value_writes() {
        let mut generate = crate::json::tests::Gen(3);
        let (mut objects, mut escaped) = (0, 0);
        for _ in 0..20_000 {
            let value = generate.padded(4);
            let text = format!(r#"{{"a":1,"attributes":{value},"z":[{value}]}}"#);
            let Some(read) = parse(&text, 64, 10_000) else {
                // Escaped or repeated keys take the general path.
                continue;
            };
            let raw = value.trim();
            if raw.starts_with('{') {
                let mut expected = Vec::new();
                write_value(raw, Form::Compact, &mut expected).unwrap();
                let compact = read.compact.expect(&text);
                assert_eq!(
                    String::from_utf8_lossy(&compact),
                    String::from_utf8_lossy(&expected),
                    "{text}"
                );
                objects += 1;
                escaped += usize::from(raw.contains('\\'));
            } else {
                assert!(read.compact.is_none(), "{text}");
            }
        }
        assert!(
            objects > 1_000 && escaped > 200,
            "{objects} objects, {escaped} escaped"
        );
    }

    #[test]
    fn objects_in_changing_key_orders_agree_with_the_general_path() {
        // Objects of the same size in turn, keys in changing orders (some
        // sharing their first eight bytes, some shorter than eight), now
        // and then one repeated; the outer object has up to ONE_PASS_KEYS
        // members (the keys and "inner").
        let mut keys = vec![
            "event_id".to_string(),
            "event_ts".to_string(),
            "a".to_string(),
            "ab".to_string(),
            // Sorts before "a" followed by the quote that ends it in the
            // line: a key's head must not take bytes past its end.
            "a!".to_string(),
            "b".to_string(),
            "tenant_id".to_string(),
            "run_id".to_string(),
        ];
        keys.extend((keys.len()..ONE_PASS_KEYS - 1).map(|i| format!("attribute_{i}")));
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for round in 0..400 {
            let n = 2 + next() % (keys.len() - 1);
            let mut picked: Vec<&str> = keys[..n].iter().map(String::as_str).collect();
            // Same order as the last round now and then, shuffled otherwise.
            if round % 3 != 0 {
                for i in (1..n).rev() {
                    picked.swap(i, next() % (i + 1));
                }
            }
            let repeat = round % 7 == 0;
            if repeat {
                let i = next() % n;
                picked[i] = picked[(i + 1) % n];
            }
            let object = |depth: usize| {
                picked
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        format!(
                            "\"{k}\":{}",
                            if depth == 0 && i == 0 {
                                "{\"x\":1}".to_string()
                            } else {
                                i.to_string()
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let text = format!("{{{},\"inner\":{{{}}}}}", object(0), object(1));
            match general(&text) {
                Some((members, hash)) => {
                    let fast = parse(&text, 64, 10_000).expect(&text);
                    assert_eq!(fast.members, members, "{text}");
                    assert_eq!(fast.content_hash, hash, "{text}");
                }
                None => assert!(parse(&text, 64, 10_000).is_none(), "{text}"),
            }
            assert_eq!(general(&text).is_none(), repeat, "{text}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_general_path() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"k\u0065y":1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x\q"}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1} x"#,
            r#"{"a":1}}"#,
            r#"{"a" 1}"#,
            r#"{"a":"unclosed}"#,
            r#"{"a":"ends in a backslash\"#,
            "[1,2]",
            "\"text\"",
            "",
            r#"{"a":[[[1]]]}"#,
        ] {
            assert!(parse(text, 3, 10_000).is_none(), "{text}");
        }
        let many: String = format!(
            "{{{}}}",
            (0..=ONE_PASS_KEYS)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(parse(&many, 64, 10_000).is_none());
        assert!(parse(r#"{"a":1,"b":2,"c":3}"#, 64, 2).is_none());
        assert!(parse(r#"{"a":1,"b":2}"#, 64, 2).is_some());
    }
}
