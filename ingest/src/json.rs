//! Just enough JSON for exact validation.
//!
//! A line is parsed into its top-level members with each value kept as the
//! raw text the producer wrote ([`serde_json::value::RawValue`]). That keeps
//! number text intact (money is read from its digits), lets us refuse
//! duplicate keys, and gives two derived forms: a canonical text (sorted keys,
//! normalized numbers) whose hash tells an exact repeat from a conflicting
//! one, and a compact text for storing `attributes`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decimal::Decimal;

/// The members of a JSON object in document order, values as raw text.
/// Keys are borrowed from the text where they need no unescaping.
#[derive(Debug)]
pub struct RawObject<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

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
                let mut members: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(16);
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
                    }
                    let value: &'a RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// What kind of JSON value a raw text is, for messages.
pub fn describe(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
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

/// Writes the JSON value `raw` in the given form.
pub fn write_value(raw: &RawValue, form: Form, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let obj: RawObject<'_> = serde_json::from_str(text)?;
            write_members(obj.0, form, out)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, form, out)?;
            }
            out.push(b']');
            Ok(())
        }
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
    let (sign, digits) = match text.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", text),
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return false;
    }
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        out.push(b'0');
        return true;
    }
    out.extend_from_slice(sign.as_bytes());
    out.extend_from_slice(significant.as_bytes());
    out.push(b'e');
    out.extend_from_slice((digits.len() - significant.len()).to_string().as_bytes());
    true
}

/// Writes an object from its members (sorted by key in canonical form).
pub fn write_members(
    mut members: Vec<(Cow<'_, str>, &RawValue)>,
    form: Form,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    if form == Form::Canonical {
        members.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out.push(b'{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match &key {
            // Borrowed keys had no escapes in the text: they need none.
            Cow::Borrowed(k) => {
                out.push(b'"');
                out.extend_from_slice(k.as_bytes());
                out.push(b'"');
            }
            Cow::Owned(k) => push_string(out, k),
        }
        out.push(b':');
        write_value(value, form, out)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
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
        write_value(raw, Form::Compact, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":1.50,"a":[true,null]}"#
        );
    }
}
