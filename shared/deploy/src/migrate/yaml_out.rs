//! A small block-style YAML emitter for JSON values. Strings that could read as something else
//! (numbers, booleans, nulls in YAML 1.1 or 1.2, anything with YAML syntax) are written
//! double-quoted with JSON escapes, which are valid YAML escapes.

use serde_json::Value;

/// `value` as block-style YAML text ending in a newline.
#[must_use]
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => mapping(&mut out, value, 0),
        Value::Array(a) if !a.is_empty() => sequence(&mut out, value, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn mapping(out: &mut String, value: &Value, indent: usize) {
    let Value::Object(m) = value else { return };
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str(&string(k));
        out.push(':');
        nested(out, v, indent + 2);
    }
}

fn sequence(out: &mut String, value: &Value, indent: usize) {
    let Value::Array(a) = value else { return };
    let mut first = true;
    for v in a {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => mapping(out, v, indent + 2),
            Value::Array(items) if !items.is_empty() => sequence(out, v, indent + 2),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a scalar on the same line, a collection on the next lines.
fn nested(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, indent);
            mapping(out, v, indent);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            pad(out, indent);
            sequence(out, v, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Plain when it cannot be misread, else double-quoted.
fn string(s: &str) -> String {
    const RESERVED: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}
