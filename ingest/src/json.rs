//! Just enough JSON for exact validation.
//!
//! A line is parsed into its top-level members with each value kept as the
//! raw text the producer wrote ([`serde_json::value::RawValue`]). That keeps
//! number text intact (money is read from its digits), lets us refuse
//! duplicate keys, and gives two derived forms: a canonical text (sorted keys,
//! normalized numbers) whose hash tells an exact repeat from a conflicting
//! one, and a compact text for storing `attributes`.
//!
//! The parser keeps nested values as raw text without recursing (serde_json
//! skips over a `RawValue` with a loop and no depth limit), but the two
//! derived forms are written recursively, one level at a time. So a line is
//! first held to the nesting and key limits by [`check_shape`], one pass over
//! its bytes with no recursion, and [`write_value`] refuses anything deeper
//! than [`MAX_DEPTH_CEILING`] besides.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decimal::Decimal;
use crate::limits::MAX_DEPTH_CEILING;

/// The members of a JSON object in document order, values as raw text
/// (the value's own text, without the white space around it). Keys are
/// borrowed from the text where they need no unescaping.
#[derive(Debug)]
pub struct RawObject<'a>(pub Vec<(Cow<'a, str>, &'a str)>);

/// Deserializes a key, borrowing it from the input where possible.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjVisitor<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members: Vec<(Cow<'a, str>, &'a str)> = Vec::with_capacity(LINEAR_KEYS);
                // Past LINEAR_KEYS members, a set: a scan of every earlier
                // key per key is quadratic in the object's size.
                let mut seen: Option<HashSet<Cow<'a, str>>> = None;
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    let duplicate = match &mut seen {
                        Some(set) => !set.insert(key.clone()),
                        None => {
                            let duplicate = members.iter().any(|(k, _)| *k == key);
                            if !duplicate && members.len() >= LINEAR_KEYS {
                                let mut set: HashSet<Cow<'a, str>> =
                                    HashSet::with_capacity(4 * LINEAR_KEYS);
                                set.extend(members.iter().map(|(k, _)| k.clone()));
                                set.insert(key.clone());
                                seen = Some(set);
                            }
                            duplicate
                        }
                    };
                    if duplicate {
                        return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
                    }
                    let value: &'a RawValue = map.next_value()?;
                    members.push((key, value.get()));
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// The members of an object's JSON text as [`RawObject`] lists them (keys
/// borrowed where they have no escape, each value as its own text without
/// the white space around it), found by one scan that steps over nested
/// values instead of parsing them. `None` for text that is not an object
/// or has a key whose escape does not decode: the caller parses that,
/// which gives the error. Like [`write_value`], `text` must be JSON
/// already read without error (by serde_json or the one pass), repeated
/// keys included: it is not checked again.
pub fn object_members(text: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let skip_blank = |mut i: usize| {
        while bytes.get(i).is_some_and(|&b| blank(b)) {
            i += 1;
        }
        i
    };
    let mut members = Vec::new();
    let mut i = skip_blank(1);
    if bytes.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let (close, escaped) = string_close(bytes, i + 1)?;
        let key = if escaped {
            Cow::Owned(serde_json::from_str::<String>(&text[i..=close]).ok()?)
        } else {
            Cow::Borrowed(&text[i + 1..close])
        };
        i = skip_blank(close + 1);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_blank(i + 1);
        // The value runs to the first ',' or '}' outside its strings and
        // nested values; `last` is just past its last byte that is not
        // white space.
        let (start, mut last, mut open) = (i, i, 0usize);
        loop {
            match *bytes.get(i)? {
                b'"' => {
                    i = string_close(bytes, i + 1)?.0 + 1;
                    last = i;
                    continue;
                }
                b'}' | b']' if open > 0 => open -= 1,
                b',' | b'}' if open == 0 => break,
                b'{' | b'[' => open += 1,
                b if blank(b) => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            i += 1;
            last = i;
        }
        members.push((key, &text[start..last]));
        if bytes[i] == b'}' {
            return Some(members);
        }
        i = skip_blank(i + 1);
    }
}

/// Objects up to this many members are checked for a repeated key by a
/// linear scan (the common case: no hashing, no allocation); larger ones
/// through a hash set.
pub const LINEAR_KEYS: usize = 16;

/// A limit [`check_shape`] found exceeded, with the measured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeError {
    /// Arrays and objects nest `depth` levels deep somewhere in the text.
    TooDeep {
        /// The deepest nesting, the outermost value being level 1.
        depth: usize,
    },
    /// One object has `keys` members.
    TooManyKeys {
        /// Members of that object.
        keys: usize,
    },
}

/// Checks nesting depth and members per object of JSON text in one pass
/// over its bytes, without recursion and without parsing: it only tracks
/// brackets and colons outside strings, so it needs no valid JSON (the
/// parser that runs after it tells invalid text apart). `max_depth` is
/// capped at [`MAX_DEPTH_CEILING`]. When a limit is exceeded the rest of the
/// text is scanned to measure by how much (still in one pass).
pub fn check_shape(text: &[u8], max_depth: usize, max_keys: usize) -> Result<(), ShapeError> {
    /// The member count of a level that is an array.
    const ARRAY: usize = usize::MAX;
    let max_depth = max_depth.min(MAX_DEPTH_CEILING);
    // Members of each open object, by level; nothing deeper than the
    // ceiling is ever recorded.
    let mut keys = [0usize; MAX_DEPTH_CEILING + 1];
    let mut depth = 0usize;
    let mut bytes = Structure { text, at: 0 };
    while let Some(b) = bytes.next() {
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    let mut deepest = depth;
                    for b in bytes {
                        match b {
                            b'{' | b'[' => {
                                depth += 1;
                                deepest = deepest.max(depth);
                            }
                            b'}' | b']' => depth = depth.saturating_sub(1),
                            _ => {}
                        }
                    }
                    return Err(ShapeError::TooDeep { depth: deepest });
                }
                keys[depth] = if b == b'{' { 0 } else { ARRAY };
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {
                // A colon: one more member of the object at this level.
                if depth == 0 || keys[depth] == ARRAY {
                    continue;
                }
                keys[depth] += 1;
                if keys[depth] > max_keys {
                    let level = depth;
                    let mut count = keys[depth];
                    for b in bytes {
                        match b {
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' => {
                                depth = depth.saturating_sub(1);
                                if depth < level {
                                    break;
                                }
                            }
                            _ if depth == level => count += 1,
                            _ => {}
                        }
                    }
                    return Err(ShapeError::TooManyKeys { keys: count });
                }
            }
        }
    }
    Ok(())
}

/// The bytes `{ [ } ] :` of JSON text that are outside strings.
struct Structure<'t> {
    text: &'t [u8],
    at: usize,
}

impl Iterator for Structure<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        while let Some(&b) = self.text.get(self.at) {
            self.at += 1;
            match b {
                b'"' => self.at = string_end(self.text, self.at),
                b'{' | b'[' | b'}' | b']' | b':' => return Some(b),
                _ => {}
            }
        }
        None
    }
}

/// The offset just past the string whose body starts at `at`, or the end of
/// the text when it is not closed.
fn string_end(text: &[u8], at: usize) -> usize {
    string_close(text, at).map_or(text.len(), |(close, _)| close + 1)
}

/// What kind of JSON value a raw text is, for messages.
pub fn describe(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// How [`write_value`] spells things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Sorted keys, normalized numbers: equal values, equal bytes.
    Canonical,
    /// Document key order and the producer's number text, no white space.
    Compact,
}

/// Writes the JSON value `raw` in the given form. Recurses once per level
/// of nesting: text deeper than [`MAX_DEPTH_CEILING`] is refused with an
/// error, so no input can exhaust the stack; callers hold lines to their
/// (lower) limit with [`check_shape`] first. `raw` must be JSON already
/// read without error (by serde_json or the one pass): in
/// [`Form::Compact`], the text is copied (only strings with escapes are
/// decoded), not parsed again, so a repeated key or a syntax error there
/// is not reported.
pub fn write_value(raw: &str, form: Form, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    write_value_at(raw, form, out, 1)
}

/// The error for nesting past [`MAX_DEPTH_CEILING`].
fn too_deep() -> serde_json::Error {
    de::Error::custom(format!("nesting deeper than {MAX_DEPTH_CEILING} levels"))
}

/// [`write_value`] for a value at nesting `level` (1 outermost).
fn write_value_at(
    text: &str,
    form: Form,
    out: &mut Vec<u8>,
    level: usize,
) -> Result<(), serde_json::Error> {
    let depth = (MAX_DEPTH_CEILING + 1).saturating_sub(level);
    if form == Form::Compact && push_compact_copy(text, depth, out) {
        return Ok(());
    }
    write_parsed(text, form, out, level)
}

/// Appends valid JSON `text` in [`Form::Compact`] in one pass: the text
/// without the white space outside its strings (numbers and literals are
/// kept as written in that form anyway), each string with an escape
/// decoded and encoded again as [`push_string`] spells it, the others
/// copied (encoding them again would give the same bytes). False, with
/// nothing appended, for text nesting deeper than `depth` levels or with
/// an escape that does not decode (a lone surrogate): the caller then
/// parses the text, which gives the error. Parsing would read a nested
/// value again at every level. Every caller's text has been read as JSON
/// before (by serde_json or the one pass).
fn push_compact_copy(text: &str, depth: usize, out: &mut Vec<u8>) -> bool {
    let bytes = text.as_bytes();
    let start = out.len();
    out.reserve(bytes.len());
    let mut open = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                let Some((end, escaped)) = string_close(bytes, i + 1) else {
                    out.truncate(start);
                    return false;
                };
                let literal = &text[i..=end];
                if escaped {
                    let Ok(decoded) = serde_json::from_str::<String>(literal) else {
                        out.truncate(start);
                        return false;
                    };
                    push_string(out, &decoded);
                } else {
                    out.extend_from_slice(literal.as_bytes());
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                open += 1;
                if open > depth {
                    out.truncate(start);
                    return false;
                }
                out.push(b);
            }
            b'}' | b']' => {
                open = open.saturating_sub(1);
                out.push(b);
            }
            _ => out.push(b),
        }
        i += 1;
    }
    true
}

/// The offset of the quote closing the string whose body starts at `at`,
/// and whether the body has an escape; `None` when it is not closed.
fn string_close(text: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        at += memchr::memchr2(b'"', b'\\', text.get(at..)?)?;
        if text[at] == b'"' {
            return Some((at, escaped));
        }
        // An escape: the next byte is never the end of the string.
        escaped = true;
        at += 2;
    }
}

/// [`write_value_at`] by parsing `text`, for any text and form.
fn write_parsed(
    text: &str,
    form: Form,
    out: &mut Vec<u8>,
    level: usize,
) -> Result<(), serde_json::Error> {
    match text.as_bytes().first() {
        Some(b'{') => {
            let obj: RawObject<'_> = serde_json::from_str(text)?;
            write_members_at(obj.0, form, out, level)
        }
        Some(b'[') => {
            if level > MAX_DEPTH_CEILING {
                return Err(too_deep());
            }
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value_at(item.get(), form, out, level + 1)?;
            }
            out.push(b']');
            Ok(())
        }
        _ => write_scalar(text, form, out),
    }
}

/// Writes a string, number or literal (`true`, `false`, `null`) of valid
/// JSON text in the given form: a string without escapes and every
/// literal as written; an escaped string re-encoded; a number, in
/// canonical form, as [`Decimal::canonical`] spells it. The one place both
/// [`write_value`] and the one-pass path ([`crate::onepass`]) spell leaves.
pub fn write_scalar(text: &str, form: Form, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match text.as_bytes().first() {
        Some(b'"') => {
            if text.contains('\\') {
                let s: String = serde_json::from_str(text)?;
                push_string(out, &s);
            } else {
                // Checked by the parser and free of escapes: re-encoding
                // would give the same bytes.
                out.extend_from_slice(text.as_bytes());
            }
            Ok(())
        }
        Some(b'-' | b'0'..=b'9') if form == Form::Canonical => {
            if write_canonical_integer(text, out) {
                return Ok(());
            }
            match Decimal::from_json_number(text) {
                Some(d) => out.extend_from_slice(d.canonical().as_bytes()),
                None => out.extend_from_slice(text.as_bytes()),
            }
            Ok(())
        }
        _ => {
            out.extend_from_slice(text.as_bytes());
            Ok(())
        }
    }
}

/// Writes a plain JSON integer (no fraction or exponent) in the canonical
/// number form of [`Decimal::canonical`] without building a `Decimal`;
/// false for any other number.
fn write_canonical_integer(text: &str, out: &mut Vec<u8>) -> bool {
    let bytes = text.as_bytes();
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return false;
    }
    let zeros = digits.iter().rev().take_while(|&&b| b == b'0').count();
    if zeros == digits.len() {
        out.push(b'0');
        return true;
    }
    // The sign and the significant digits are the text without its
    // trailing zeros, which the exponent counts.
    out.extend_from_slice(&bytes[..bytes.len() - zeros]);
    out.push(b'e');
    push_decimal(out, zeros);
    true
}

/// Appends a key, in quotes, whose text had no escapes (so it needs none).
pub fn push_plain_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.push(b'"');
}

/// Appends `n` in decimal digits (what `n.to_string()` gives, without
/// allocating).
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes an object from its members (sorted by key in canonical form).
/// Like [`write_value`], refuses nesting deeper than [`MAX_DEPTH_CEILING`].
pub fn write_members(
    members: Vec<(Cow<'_, str>, &str)>,
    form: Form,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    write_members_at(members, form, out, 1)
}

/// [`write_members`] for an object at nesting `level` (1 outermost).
fn write_members_at(
    mut members: Vec<(Cow<'_, str>, &str)>,
    form: Form,
    out: &mut Vec<u8>,
    level: usize,
) -> Result<(), serde_json::Error> {
    if level > MAX_DEPTH_CEILING {
        return Err(too_deep());
    }
    if form == Form::Canonical {
        members.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out.push(b'{');
    push_members(members, form, out, level)?;
    out.push(b'}');
    Ok(())
}

/// Appends `members` of an object at nesting `level`, comma separated,
/// without the braces.
fn push_members(
    members: Vec<(Cow<'_, str>, &str)>,
    form: Form,
    out: &mut Vec<u8>,
    level: usize,
) -> Result<(), serde_json::Error> {
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match &key {
            // Borrowed keys had no escapes in the text: they need none.
            Cow::Borrowed(k) => push_plain_key(out, k),
            Cow::Owned(k) => push_string(out, k),
        }
        out.push(b':');
        write_value_at(value, form, out, level + 1)?;
    }
    Ok(())
}

/// Adds `members` at the end of the object `out` holds in [`Form::Compact`]
/// (as [`write_value`] wrote it), or writes them as an object of their
/// own when `out` is empty: the bytes [`write_members`] writes for the
/// object's members followed by these, without listing the object's
/// members again.
pub fn extend_compact_object(
    out: &mut Vec<u8>,
    members: Vec<(Cow<'_, str>, &str)>,
) -> Result<(), serde_json::Error> {
    if out.is_empty() {
        out.push(b'{');
    } else {
        let close = out.pop();
        assert_eq!(close, Some(b'}'), "not a compact object");
        if out.len() > 1 && !members.is_empty() {
            out.push(b',');
        }
    }
    push_members(members, Form::Compact, out, 1)?;
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn canonical(line: &str) -> String {
        let obj: RawObject<'_> = serde_json::from_str(line).unwrap();
        let mut out = Vec::new();
        write_members(obj.0, Form::Canonical, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn key_order_white_space_and_number_spelling_do_not_matter() {
        let a = canonical(r#"{"b": 1.50, "a": {"y": [1, 2e0], "x": "\u0041"}}"#);
        let b = canonical(r#"{"a":{"x":"A","y":[1.0,2]},"b":15e-1}"#);
        assert_eq!(a, b);
        assert_ne!(a, canonical(r#"{"a":{"x":"A","y":[2,1]},"b":1.5}"#));
    }

    #[test]
    fn the_integer_fast_path_matches_decimal() {
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "10",
            "1500",
            "-1500",
            "123456789000",
            "100000",
            "5",
        ] {
            let mut fast = Vec::new();
            assert!(write_canonical_integer(text, &mut fast), "{text}");
            let slow = Decimal::from_json_number(text).unwrap().canonical();
            assert_eq!(String::from_utf8(fast).unwrap(), slow, "{text}");
        }
        for text in ["1.5", "1e3", "01", "-", "", "1-"] {
            assert!(!write_canonical_integer(text, &mut Vec::new()), "{text}");
        }
        // Every sign, significant digits of several lengths (some with
        // zeros inside) and up to 24 trailing zeros, so that exponents of
        // one and two digits are both written.
        for sign in ["", "-"] {
            for significant in ["1", "12", "907", "30000000000000000000001"] {
                for zeros in 0..=24 {
                    let text = format!("{sign}{significant}{}", "0".repeat(zeros));
                    let mut fast = Vec::new();
                    assert!(write_canonical_integer(&text, &mut fast), "{text}");
                    let slow = Decimal::from_json_number(&text).unwrap().canonical();
                    assert_eq!(String::from_utf8(fast).unwrap(), slow, "{text}");
                }
            }
        }
    }

    #[test]
    fn decimal_digits_are_what_to_string_gives() {
        for n in [0, 1, 9, 10, 11, 99, 100, 12_345, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn escaped_and_plain_spellings_hash_alike() {
        assert_eq!(
            canonical(r#"{"k\u0065y":"v\u0061l","n":10}"#),
            canonical(r#"{"key":"val","n":1e1}"#)
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = serde_json::from_str::<RawObject<'_>>(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
    }

    #[test]
    fn compact_form_keeps_order_and_number_text() {
        let raw: &RawValue =
            serde_json::from_str(r#"{ "z" : 1.50 , "a" : [ true, null ] }"#).unwrap();
        let mut out = Vec::new();
        write_value(raw.get(), Form::Compact, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":1.50,"a":[true,null]}"#
        );
    }

    #[test]
    fn the_shape_scan_measures_depth_and_keys_outside_strings() {
        let shape = |t: &str| check_shape(t.as_bytes(), 3, 2);
        assert_eq!(shape(r#"{"a":[{"b":1,"c":2}]}"#), Ok(()));
        assert_eq!(
            shape(r#"{"a":[{"b":[[1]]}]}"#),
            Err(ShapeError::TooDeep { depth: 5 })
        );
        assert_eq!(
            shape(r#"{"a":1,"b":{"c":1},"d":2,"e":3}"#),
            Err(ShapeError::TooManyKeys { keys: 4 })
        );
        // Brackets, colons and escaped quotes inside strings are text.
        assert_eq!(shape(r#"{"[[[[:":"{{{{\"[[[[","x":"\\"}"#), Ok(()));
        // Colons in arrays are not members; unbalanced and unclosed text
        // is the parser's to refuse.
        assert_eq!(shape(r#"[1:2:3:4]"#), Ok(()));
        assert_eq!(shape("]]]}}}{}"), Ok(()));
        assert_eq!(shape(r#"{"a":"unclosed"#), Ok(()));
        assert_eq!(shape(r#"{"a":"ends in a backslash\"#), Ok(()));
        assert_eq!(
            check_shape("[".repeat(1_000_000).as_bytes(), 64, 10),
            Err(ShapeError::TooDeep { depth: 1_000_000 })
        );
        // No limit is set above the ceiling.
        assert_eq!(
            check_shape("[".repeat(200).as_bytes(), usize::MAX, 10),
            Err(ShapeError::TooDeep { depth: 200 })
        );
    }

    #[test]
    fn repeated_keys_are_found_in_linear_time() {
        // 50,000 keys: a scan of the earlier keys for each key takes about
        // 40 s here (a debug build), a set well under one.
        let mut text = String::from("{");
        for i in 0..50_000 {
            text.push_str(&format!(r#""key{i}":{i},"#));
        }
        let started = std::time::Instant::now();
        let ok = format!("{}}}", text.trim_end_matches(','));
        assert_eq!(
            serde_json::from_str::<RawObject<'_>>(&ok).unwrap().0.len(),
            50_000
        );
        let again = format!(r#"{text}"key49999":0}}"#);
        let err = serde_json::from_str::<RawObject<'_>>(&again).unwrap_err();
        assert!(
            err.to_string().contains(r#"duplicate key "key49999""#),
            "{err}"
        );
        // An escaped spelling of a key is the same key.
        let escaped = format!(r#"{text}"k\u0065y5":0}}"#);
        assert!(serde_json::from_str::<RawObject<'_>>(&escaped).is_err());
        let mut out = Vec::new();
        let obj = serde_json::from_str::<RawObject<'_>>(&ok).unwrap();
        write_members(obj.0, Form::Canonical, &mut out).unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// Random JSON text: nested objects (no repeated keys, some keys
    /// escaped) and arrays, strings plain, escaped and not ASCII, numbers
    /// in several spellings, literals, and white space of every kind
    /// between tokens.
    pub(crate) struct Gen(pub(crate) u64);

    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.next(from.len() as u64) as usize]
        }
        fn ws(&mut self) -> &'static str {
            self.pick(&["", "", " ", "\n\t", "  ", "\r\n"])
        }
        pub(crate) fn pad(&mut self, out: &mut String) {
            let ws = self.ws();
            out.push_str(ws);
        }
        /// A value nesting up to `depth` more levels, with white space
        /// before and after it.
        pub(crate) fn padded(&mut self, depth: usize) -> String {
            let mut text = String::new();
            self.pad(&mut text);
            self.value(depth, &mut text);
            self.pad(&mut text);
            text
        }
        fn string(&mut self) -> &'static str {
            self.pick(&[
                r#""abc""#,
                r#""""#,
                r#""a b, c: [d]""#,
                r#""café ✓""#,
                r#""a\nb""#,
                r#""\u00e9""#,
                r#""q\"q""#,
                r#""\/""#,
            ])
        }
        pub(crate) fn value(&mut self, depth: usize, out: &mut String) {
            match self.next(if depth == 0 { 3 } else { 5 }) {
                0 => out.push_str(self.string()),
                1 => out.push_str(self.pick(&["0", "-1", "1.50", "1e5", "2E-3", "-0.0", "10"])),
                2 => out.push_str(self.pick(&["true", "false", "null"])),
                3 => {
                    out.push('{');
                    for i in 0..self.next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.pad(out);
                        // `\u006a` is "j", so an escaped key never
                        // repeats another (the index follows it).
                        let key = self.pick(&["k", "é", "a b", "", "[x]", r"\u006a"]);
                        out.push_str(&format!("\"{key}{i}\""));
                        self.pad(out);
                        out.push(':');
                        self.pad(out);
                        self.value(depth - 1, out);
                        self.pad(out);
                    }
                    out.push('}');
                }
                _ => {
                    out.push('[');
                    for i in 0..self.next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.pad(out);
                        self.value(depth - 1, out);
                        self.pad(out);
                    }
                    out.push(']');
                }
            }
        }
    }

    #[test]
    fn the_compact_copy_writes_what_parsing_writes() {
        let mut generate = Gen(5);
        let (mut plain, mut escaped) = (0, 0);
        for _ in 0..20_000 {
            let text = generate.padded(4);
            let text = text.trim();
            let mut fast = Vec::new();
            write_value(text, Form::Compact, &mut fast).unwrap();
            let mut slow = Vec::new();
            write_parsed(text, Form::Compact, &mut slow, 1).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow),
                "{text}"
            );
            let same = |t: &[u8]| serde_json::from_slice::<serde_json::Value>(t).unwrap();
            assert_eq!(same(&fast), same(text.as_bytes()), "{text}");
            if text.contains('\\') {
                escaped += 1;
            } else {
                plain += 1;
            }
        }
        enough_of_both(plain, escaped);
    }

    /// Generated cases covered text with escapes and without, enough of each.
    fn enough_of_both(plain: usize, escaped: usize) {
        assert!(
            plain > 1_000 && escaped > 1_000,
            "{plain} without escapes, {escaped} with"
        );
    }

    #[test]
    fn object_members_are_what_parsing_lists() {
        // Whether the object has an escape somewhere.
        let check = |text: &str| {
            let parsed: RawObject<'_> = serde_json::from_str(text).unwrap();
            let scanned = object_members(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(scanned, parsed.0, "{text}");
            // Keys are borrowed exactly where parsing borrows them (no
            // escape), so that both are written alike.
            let borrowed = |members: &[(Cow<'_, str>, &str)]| {
                let keys = members.iter().map(|(k, _)| matches!(k, Cow::Borrowed(_)));
                keys.collect::<Vec<_>>()
            };
            assert_eq!(borrowed(&scanned), borrowed(&parsed.0), "{text}");
            text.contains('\\')
        };
        for text in [
            "{}",
            "{ }",
            "{\n\t}",
            r#"{"a" : { "b" : [ 1 , "}" ] } , "c":"{,", "d" :[ ] ,"e":{"f":{}}}"#,
            r#"{"":null,"x":-1.50e3 }"#,
            r#"{"a\"":"\\" , "\u0062" : ["\"]"]}"#,
        ] {
            check(text);
        }
        for text in ["[1]", r#""{""#, "1", r#"{"\ud800":1}"#] {
            assert_eq!(object_members(text), None, "{text}");
        }
        let mut generate = Gen(11);
        let (mut plain, mut escaped) = (0, 0);
        for _ in 0..40_000 {
            let text = generate.padded(4);
            let text = text.trim();
            if text.starts_with('{') {
                if check(text) {
                    escaped += 1;
                } else {
                    plain += 1;
                }
            }
        }
        enough_of_both(plain, escaped);
    }

    #[test]
    fn writing_refuses_nesting_past_the_ceiling_without_overflowing() {
        let at = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let outcome = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let (ok, deep) = (at(MAX_DEPTH_CEILING), at(MAX_DEPTH_CEILING + 1));
                let ok: &RawValue = serde_json::from_str(&ok).unwrap();
                let deep: &RawValue = serde_json::from_str(&deep).unwrap();
                let mut out = Vec::new();
                let ok = write_value(ok.get(), Form::Canonical, &mut out).is_ok();
                let deep =
                    write_value(deep.get(), Form::Compact, &mut out).map_err(|e| e.to_string());
                (ok, deep)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.0);
        assert!(
            outcome
                .1
                .unwrap_err()
                .contains("nesting deeper than 128 levels"),
            "refused"
        );
    }
}
