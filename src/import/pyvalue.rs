//! Python values as `str()`/`repr()` print them in training logs (Megatron's arguments block,
//! torchtitan's job config dict), read into JSON so they can be compared as config.
//!
//! Read: `True`, `False`, `None`, integers, floats (`1e-05`, `inf`, `nan` stay strings: JSON has
//! no such numbers), quoted strings, and `[…]`, `(…)`, `{…}` of those. Anything else inside a
//! container (`PosixPath('/x')`, `<Enum.A: 1>`) is kept as its text, so one odd value never loses
//! the rest of a config. Nesting deeper than [`MAX_DEPTH`] is kept as text too.

use serde_json::{Map, Number, Value};

/// Containers nested deeper than this are kept as text rather than recursed into.
const MAX_DEPTH: usize = 32;

/// Reads a value printed on its own (the rest of an argument line): a literal, else the text.
pub(super) fn scalar(text: &str) -> Value {
    let t = text.trim();
    let mut p = Parser { s: t, pos: 0 };
    match p.value(0) {
        Some(v) if p.rest().trim().is_empty() => v,
        _ => Value::String(t.to_string()),
    }
}

/// Reads a printed dict (`{'job': {'seed': 1}}`); `None` if `text` does not start with one.
pub(super) fn dict(text: &str) -> Option<Map<String, Value>> {
    let mut p = Parser {
        s: text.trim(),
        pos: 0,
    };
    match p.value(0)? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or_default()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        self.skip_ws();
        let first = self.rest().chars().next()?;
        match first {
            '{' | '[' | '(' if depth < MAX_DEPTH => self.container(first, depth),
            '\'' | '"' => self.string(first).map(Value::String),
            _ => {
                let token = self.bare();
                Some(atom(token))
            }
        }
    }

    /// Reads a token up to the next `,`, `:` or closing bracket at depth 0 (quotes respected).
    fn bare(&mut self) -> &'a str {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        for (i, c) in self.rest().char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(' | '[' | '{' | '<') => depth += 1,
                (None, ')' | ']' | '}' | '>') if depth > 0 => depth -= 1,
                (None, ',' | ':' | ')' | ']' | '}') if depth == 0 => {
                    self.pos = start + i;
                    return self.s.get(start..self.pos).unwrap_or_default().trim();
                }
                _ => {}
            }
        }
        self.pos = self.s.len();
        self.s.get(start..).unwrap_or_default().trim()
    }

    fn string(&mut self, q: char) -> Option<String> {
        self.pos += q.len_utf8();
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c if c == q => {
                    self.pos += i + c.len_utf8();
                    return Some(out);
                }
                c => out.push(c),
            }
        }
        None
    }

    fn container(&mut self, open: char, depth: usize) -> Option<Value> {
        let close = match open {
            '{' => '}',
            '[' => ']',
            _ => ')',
        };
        self.pos += 1;
        let mut list = Vec::new();
        let mut map = Map::new();
        loop {
            if self.eat(close) {
                break;
            }
            let v = self.value(depth + 1)?;
            if open == '{' {
                if !self.eat(':') {
                    return None;
                }
                let key = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let item = self.value(depth + 1)?;
                map.insert(key, item);
            } else {
                list.push(v);
            }
            if !self.eat(',') {
                if self.eat(close) {
                    break;
                }
                return None;
            }
        }
        Some(match open {
            '{' => Value::Object(map),
            _ => Value::Array(list),
        })
    }
}

/// Reads a bare token: a number, `True`, `False`, `None`, else the text itself.
fn atom(token: &str) -> Value {
    match token {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    if let Ok(i) = token.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = token.parse::<u64>() {
        return Value::from(u);
    }
    let numeric = token
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    match token.parse::<f64>() {
        Ok(x) if numeric && x.is_finite() => Number::from_f64(x).map_or(Value::Null, Value::Number),
        _ => Value::String(token.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argument_values_as_megatron_prints_them() {
        // Megatron's _print_args: '  {} {} {}'.format(arg, dots, getattr(args, arg)).
        assert_eq!(scalar("0.00015"), json!(0.00015));
        assert_eq!(scalar("1e-05"), json!(1e-5));
        assert_eq!(scalar("1234"), json!(1234));
        assert_eq!(scalar("True"), json!(true));
        assert_eq!(scalar("None"), json!(null));
        assert_eq!(scalar("GPT2BPETokenizer"), json!("GPT2BPETokenizer"));
        assert_eq!(scalar("torch.bfloat16"), json!("torch.bfloat16"));
        assert_eq!(scalar("[0.9, 0.95]"), json!([0.9, 0.95]));
        assert_eq!(scalar("['a', 'b']"), json!(["a", "b"]));
        assert_eq!(scalar("nan"), json!("nan"));
        assert_eq!(scalar("inf"), json!("inf"));
    }

    #[test]
    fn a_job_config_dict_as_torchtitan_prints_it() {
        // print(job_config.to_dict()) of a nested dataclass config.
        let d = dict("{'job': {'dump_folder': './outputs', 'print_args': True}, 'training': {'seed': 42, 'lr': 0.0008, 'steps': (1, 2), 'path': PosixPath('/x, y'), 'mode': <Mode.A: 1>}, 'opt': {}}").unwrap();
        assert_eq!(d["job"]["print_args"], json!(true));
        assert_eq!(d["training"]["seed"], json!(42));
        assert_eq!(d["training"]["steps"], json!([1, 2]));
        assert_eq!(d["training"]["path"], json!("PosixPath('/x, y')"));
        assert_eq!(d["training"]["mode"], json!("<Mode.A: 1>"));
        assert_eq!(d["opt"], json!({}));
        assert!(dict("{'a': 1").is_none());
        assert!(dict("[1]").is_none());
    }

    #[test]
    fn deep_or_broken_input_never_panics() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let _ = scalar(&deep);
        for s in [
            "{",
            "{'a'",
            "{'a':",
            "'unterminated",
            "[1,",
            "(,)",
            "{1: 2}",
            "é'\\",
        ] {
            let _ = scalar(s);
            let _ = dict(s);
        }
    }
}
