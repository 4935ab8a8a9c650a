//! JSON as training scripts actually write it: Python's `json.dumps` writes a NaN loss as a bare
//! `NaN` (and `Infinity`, `-Infinity`), which strict JSON parsers refuse; and every JSON parser
//! silently keeps the last of two equal keys, so `{"loss": 2.5, "loss": 9.1}` would import one of
//! two claims as if it were the only one. This module reads the first and refuses the second.
//!
//! Bare non-finite literals become the strings `"nan"`, `"inf"`, `"-inf"` (the spelling lossdiff
//! and Megatron-LM use), so a metric value reads as non-finite and a config value stays visible.

use crate::error::{Error, Result};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::path::Path;

/// The bare literals Python and JavaScript engines write, and the string each becomes.
const NON_FINITE: [(&str, &str); 3] = [
    ("-Infinity", "\"-inf\""),
    ("Infinity", "\"inf\""),
    ("NaN", "\"nan\""),
];

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` outside strings as JSON strings.
///
/// Only a literal standing where a value may start (after `:`, `,`, `[` or at the start) and
/// ending at a delimiter is rewritten, so `"NaNny"` or a key stays as written. Line numbers are
/// kept, so parse errors still point at the right line. Time: `O(n)`.
pub(crate) fn quote_non_finite(text: &str) -> Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut value_may_start) = (false, false, true);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if value_may_start {
            let rest = &text[i..];
            let hit = NON_FINITE.iter().find(|(lit, _)| {
                rest.starts_with(lit)
                    && rest[lit.len()..]
                        .bytes()
                        .next()
                        .is_none_or(|c| c.is_ascii_whitespace() || b",]}".contains(&c))
            });
            if let Some((lit, quoted)) = hit {
                out.push_str(&text[copied..i]);
                out.push_str(quoted);
                i += lit.len();
                copied = i;
                value_may_start = false;
                continue;
            }
        }
        match b {
            b'"' => {
                in_string = true;
                value_may_start = false;
            }
            b':' | b',' | b'[' => value_may_start = true,
            c if c.is_ascii_whitespace() => {}
            _ => value_may_start = false,
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The first duplicate key met, with the object it is in (its key in the parent, if any).
#[derive(Debug, Clone, PartialEq)]
struct Duplicate {
    key: String,
    parent: Option<String>,
}

/// Builds a `Value` like serde_json's own, but fails at the first duplicate key and records it.
#[derive(Clone, Copy)]
struct Strict<'a> {
    dup: &'a RefCell<Option<Duplicate>>,
    parent: Option<&'a str>,
    /// Whether to build the value (false: only check, for files too large to hold as a `Value`).
    build: bool,
    depth: usize,
}

/// Nesting beyond this is refused rather than recursed into (serde_json's own limit is 128).
const MAX_DEPTH: usize = 120;

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(match self.build {
            true => Value::String(v.to_string()),
            false => Value::Null,
        })
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let child = self.child(self.parent)?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(child)? {
            if self.build {
                out.push(v);
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if !seen.insert(key.clone().into_owned()) {
                *self.dup.borrow_mut() = Some(Duplicate {
                    key: key.into_owned(),
                    parent: self.parent.map(str::to_string),
                });
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(self.child(Some(&key))?)?;
            if self.build {
                out.insert(key.into_owned(), v);
            }
        }
        Ok(Value::Object(out))
    }
}

impl<'a> Strict<'a> {
    fn child<'b, E: serde::de::Error>(
        &self,
        parent: Option<&'b str>,
    ) -> std::result::Result<Strict<'b>, E>
    where
        'a: 'b,
    {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(Strict {
            dup: self.dup,
            parent,
            build: self.build,
            depth: self.depth + 1,
        })
    }
}

fn run(text: &str, path: &Path, place: Option<&str>, build: bool) -> Result<Value> {
    let dup = RefCell::new(None);
    let seed = Strict {
        dup: &dup,
        parent: None,
        build,
        depth: 0,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match dup.into_inner() {
        Some(d) => {
            let at = match place {
                Some(p) => p.to_string(),
                None => format!("line {}", e.line()),
            };
            Error::DuplicateKey {
                path: path.to_path_buf(),
                place: match d.parent {
                    Some(parent) => format!("{at}, in {}", quote(&parent)),
                    None => at,
                },
                key: quote(&d.key),
            }
        }
        None => match place {
            Some(p) => Error::Parse {
                path: path.to_path_buf(),
                place: p.to_string(),
                expected: format!("a JSON object ({e})"),
                got: quote(text),
            },
            None => Error::json(path, &e),
        },
    })
}

/// Parses a whole JSON document as Python writes it, refusing duplicate keys.
///
/// # Errors
/// [`Error::Json`] (line and column) for malformed JSON; [`Error::DuplicateKey`] naming the key,
/// its line and the object holding it.
pub(crate) fn parse_document(text: &str, path: &Path) -> Result<Value> {
    run(&quote_non_finite(text), path, None, true)
}

/// Parses one line of a JSON Lines file; errors name `place` (`line 7`).
///
/// # Errors
/// [`Error::Parse`] for malformed JSON; [`Error::DuplicateKey`].
pub(crate) fn parse_line(line: &str, path: &Path, place: &str) -> Result<Value> {
    run(&quote_non_finite(line), path, Some(place), true)
}

/// Checks a document for duplicate keys without building it (a trace of millions of steps).
///
/// # Errors
/// [`Error::DuplicateKey`]; [`Error::Json`] for malformed JSON.
pub(crate) fn refuse_duplicate_keys(text: &str, path: &Path) -> Result<()> {
    run(text, path, None, false).map(drop)
}

/// Quotes a piece of input for an error message, cut to a readable length.
pub(crate) fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 60;
    if s.chars().count() > MAX_CHARS {
        let cut: String = s.chars().take(MAX_CHARS).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(text: &str) -> Result<Value> {
        parse_document(text, Path::new("m.json"))
    }

    #[test]
    fn python_non_finite_literals_become_strings() {
        // python3 -c 'import json; print(json.dumps({"loss": float("nan"), "g": [float("inf"), -float("inf")]}))'
        let v = doc(r#"{"loss": NaN, "g": [Infinity, -Infinity], "s": "NaN, Infinity"}"#).unwrap();
        assert_eq!(
            v,
            json!({"loss": "nan", "g": ["inf", "-inf"], "s": "NaN, Infinity"})
        );
        // Not a literal where it is part of a longer word (still an error, not a rewrite).
        assert!(doc(r#"{"a": NaNa}"#).is_err());
        assert!(matches!(quote_non_finite("{\"NaN\": 1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_key_twice_is_refused_naming_it_and_its_object() {
        let err = doc("{\"lm loss\": {\"values\": {\"5\": 1.0,\n \"5\": 2.0}}}").unwrap_err();
        match &err {
            Error::DuplicateKey { place, key, .. } => {
                assert_eq!(key, "\"5\"");
                assert_eq!(place, "line 2, in \"values\"");
            }
            other => panic!("{other}"),
        }
        let err = parse_line(
            r#"{"step": 1, "loss": 2.5, "loss": 9.1}"#,
            Path::new("m"),
            "line 3",
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateKey { place, key, .. } if place == "line 3" && key == "\"loss\""),
            "{err}"
        );
        assert!(err.to_string().contains("twice"), "{err}");
        // The same key in two different objects is fine.
        assert!(doc(r#"{"a": {"x": 1}, "b": {"x": 2}}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(10_000);
        assert!(doc(&deep).is_err());
        assert!(refuse_duplicate_keys(&deep, Path::new("m")).is_err());
    }
}
