//! Just enough JSON for exact validation.
//!
//! A line is parsed into its top-level members with each value kept as the
//! raw text the producer wrote ([`serde_json::value::RawValue`]). That keeps
//! number text intact (money is read from its digits), lets us refuse
//! duplicate keys, and gives two derived forms: a canonical text (sorted keys,
//! normalized numbers) whose hash tells an exact repeat from a conflicting
//! one, and a compact text for storing `attributes`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decimal::Decimal;

/// The members of a JSON object in document order, values as raw text.
#[derive(Debug)]
pub struct RawObject<'a>(pub Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjVisitor<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members: Vec<(String, &'a RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
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
            let s: String = serde_json::from_str(text)?;
            push_string(out, &s);
            Ok(())
        }
        Some(b'-' | b'0'..=b'9') if form == Form::Canonical => {
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

/// Writes an object from its members (sorted by key in canonical form).
pub fn write_members(
    mut members: Vec<(String, &RawValue)>,
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
        push_string(out, &key);
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
