//! A YAML loader that reproduces PyYAML's `safe_load` (YAML 1.1 resolution) and keeps source
//! positions.
//!
//! Why not a serde YAML crate: Prefect reads prefect.yaml with PyYAML, whose YAML 1.1 rules differ
//! from YAML 1.2 ones (`yes`/`on` are booleans, `012` is octal, `1e3` is a string, `<<` merge keys
//! with PyYAML's precedence), and we need the line of every key for error messages. So we take
//! `yaml-rust2`'s event stream (maintained, pure Rust, with a marker on every event), compose the
//! node graph ourselves (anchors and aliases), flatten merge keys exactly like PyYAML's
//! `SafeConstructor.flatten_mapping`, and resolve scalars with PyYAML's implicit resolvers.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A source position: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

type Entry = (Rc<Node>, Rc<Node>);
type Entries = Vec<Entry>;

#[derive(Debug)]
enum Kind {
    Scalar {
        text: String,
        plain: bool,
        tag: Option<Tag>,
    },
    Seq(Vec<Rc<Node>>),
    Map(Entries),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    pos: Pos,
}

/// A YAML problem with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// One loaded document: its JSON value and the position of every value, keyed by JSON pointer
/// (for a mapping entry, the position of its key).
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub positions: HashMap<String, Pos>,
}

enum Frame {
    Seq {
        anchor: usize,
        pos: Pos,
        items: Vec<Rc<Node>>,
    },
    Map {
        anchor: usize,
        pos: Pos,
        entries: Entries,
        key: Option<Rc<Node>>,
    },
}

#[derive(Default)]
struct Composer {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Rc<Node>>,
    docs: Vec<(Rc<Node>, Pos)>,
    doc_start: Option<Pos>,
    error: Option<YamlError>,
}

impl Composer {
    fn push_node(&mut self, node: Rc<Node>) {
        match self.stack.last_mut() {
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            None => {
                let start = self.doc_start.unwrap_or(node.pos);
                self.docs.push((node, start));
            }
        }
    }

    fn finish(&mut self, anchor: usize, node: Node) {
        let node = Rc::new(node);
        if anchor != 0 {
            self.anchors.insert(anchor, Rc::clone(&node));
        }
        self.push_node(node);
    }
}

impl MarkedEventReceiver for Composer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos::from(mark);
        match ev {
            Event::DocumentStart => self.doc_start = Some(pos),
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = Rc::clone(node);
                    self.push_node(node);
                }
                None => {
                    self.error = Some(YamlError {
                        pos,
                        message: "found undefined alias".to_owned(),
                    });
                }
            },
            Event::Scalar(text, style, anchor, tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.finish(
                    anchor,
                    Node {
                        kind: Kind::Scalar { text, plain, tag },
                        pos,
                    },
                );
            }
            Event::SequenceStart(anchor, tag) => {
                if let Some(err) = collection_tag_error(tag.as_ref(), "seq", pos) {
                    self.error = Some(err);
                    return;
                }
                self.stack.push(Frame::Seq {
                    anchor,
                    pos,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(err) = collection_tag_error(tag.as_ref(), "map", pos) {
                    self.error = Some(err);
                    return;
                }
                self.stack.push(Frame::Map {
                    anchor,
                    pos,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { anchor, pos, items }) => self.finish(
                    anchor,
                    Node {
                        kind: Kind::Seq(items),
                        pos,
                    },
                ),
                Some(Frame::Map {
                    anchor,
                    pos,
                    entries,
                    ..
                }) => self.finish(
                    anchor,
                    Node {
                        kind: Kind::Map(entries),
                        pos,
                    },
                ),
                None => {}
            },
            _ => {}
        }
    }
}

/// safe_load constructs only `!!seq`/`!!map` (and the non-specific `!`) for collections.
fn collection_tag_error(tag: Option<&Tag>, expected: &str, pos: Pos) -> Option<YamlError> {
    let tag = tag?;
    let ok = (tag.handle == CORE_TAG && tag.suffix == expected)
        || (tag.handle == "!" && tag.suffix.is_empty());
    (!ok).then(|| YamlError {
        pos,
        message: format!(
            "could not determine a constructor for the tag '{}{}' (safe_load accepts only standard YAML tags)",
            tag.handle, tag.suffix
        ),
    })
}

/// Parses every document of `text`. Each document is returned with the position of its start.
pub fn load_all(text: &str) -> Result<Vec<(Document, Pos)>, YamlError> {
    let mut composer = Composer::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut composer, true).map_err(|e| YamlError {
        pos: Pos::from(*e.marker()),
        message: e.info().to_owned(),
    })?;
    if let Some(err) = composer.error {
        return Err(err);
    }
    let mut out = Vec::new();
    for (root, start) in composer.docs {
        let mut conv = Converter {
            positions: HashMap::new(),
            budget: NODE_BUDGET,
        };
        let value = conv.convert(&root, "")?;
        out.push((
            Document {
                value,
                positions: conv.positions,
            },
            start,
        ));
    }
    Ok(out)
}

/// Aliases are expanded into copies; this caps the expanded size (a "billion laughs" guard).
const NODE_BUDGET: usize = 1_000_000;

struct Converter {
    positions: HashMap<String, Pos>,
    budget: usize,
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

fn is_merge_key(node: &Node) -> bool {
    match &node.kind {
        Kind::Scalar { text, plain, tag } => match tag {
            Some(t) => t.handle == CORE_TAG && t.suffix == "merge",
            None => *plain && text == "<<",
        },
        _ => false,
    }
}

fn kind_name(node: &Node) -> &'static str {
    match node.kind {
        Kind::Scalar { .. } => "a scalar",
        Kind::Seq(_) => "a sequence",
        Kind::Map(_) => "a mapping",
    }
}

/// PyYAML's `flatten_mapping`: merged entries come first (so explicit keys, later, win); for a
/// list of merges, earlier mappings win over later ones.
fn flatten(entries: &[Entry]) -> Result<Entries, YamlError> {
    let mut merged = Vec::new();
    let mut own = Vec::new();
    for (k, v) in entries {
        if !is_merge_key(k) {
            own.push((Rc::clone(k), Rc::clone(v)));
            continue;
        }
        match &v.kind {
            Kind::Map(sub) => merged.extend(flatten(sub)?),
            Kind::Seq(items) => {
                let mut subs = Vec::new();
                for item in items {
                    match &item.kind {
                        Kind::Map(sub) => subs.push(flatten(sub)?),
                        _ => {
                            return Err(YamlError {
                                pos: item.pos,
                                message: format!(
                                    "while constructing a mapping: expected a mapping for merging, but found {}",
                                    kind_name(item)
                                ),
                            });
                        }
                    }
                }
                for sub in subs.into_iter().rev() {
                    merged.extend(sub);
                }
            }
            Kind::Scalar { .. } => {
                return Err(YamlError {
                    pos: v.pos,
                    message: "while constructing a mapping: expected a mapping or list of mappings for merging, but found a scalar".to_owned(),
                });
            }
        }
    }
    merged.extend(own);
    Ok(merged)
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Converter {
    fn convert(&mut self, node: &Node, pointer: &str) -> Result<Value, YamlError> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| YamlError {
            pos: node.pos,
            message: "document too large after expanding aliases".to_owned(),
        })?;
        self.positions.entry(pointer.to_owned()).or_insert(node.pos);
        match &node.kind {
            Kind::Scalar { text, plain, tag } => {
                resolve_scalar(text, *plain, tag.as_ref(), node.pos)
            }
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.convert(item, &format!("{pointer}/{i}"))?);
                }
                Ok(Value::Array(out))
            }
            Kind::Map(entries) => {
                let mut out = Map::new();
                for (k, v) in flatten(entries)? {
                    let key = self.key_string(&k)?;
                    let child = format!("{pointer}/{}", escape_pointer(&key));
                    // Later duplicates win, as in PyYAML; the position is the winning key's.
                    self.positions.insert(child.clone(), k.pos);
                    let value = self.convert(&v, &child)?;
                    out.insert(key, value);
                }
                Ok(Value::Object(out))
            }
        }
    }

    /// JSON object keys are strings; a scalar key is resolved and written as `json.dumps` would
    /// write a Python dict key (`1` → "1", `true` → "true", `null` → "null").
    fn key_string(&mut self, node: &Node) -> Result<String, YamlError> {
        match &node.kind {
            Kind::Scalar { text, plain, tag } => Ok(
                match resolve_scalar(text, *plain, tag.as_ref(), node.pos)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            ),
            _ => Err(YamlError {
                pos: node.pos,
                message: format!(
                    "mapping key is {}; only scalar keys are supported",
                    kind_name(node)
                ),
            }),
        }
    }
}

/// PyYAML's implicit resolvers (YAML 1.1) for plain scalars, and the core explicit tags.
fn resolve_scalar(
    text: &str,
    plain: bool,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        let bad = |what: &str| YamlError {
            pos,
            message: format!("could not convert '{text}' to {what}"),
        };
        if tag.handle != CORE_TAG {
            // `!` alone is the non-specific tag: a plain string.
            if tag.handle == "!" && tag.suffix.is_empty() {
                return Ok(Value::String(text.to_owned()));
            }
            return Err(YamlError {
                pos,
                message: format!(
                    "could not determine a constructor for the tag '{}{}' (safe_load accepts only standard YAML tags)",
                    tag.handle, tag.suffix
                ),
            });
        }
        return match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
            "null" => Ok(Value::Null),
            "bool" => as_bool(text).map(Value::Bool).ok_or_else(|| bad("a bool")),
            "int" => as_int(text).ok_or_else(|| bad("an int")),
            "float" => as_float(text)
                .or_else(|| {
                    as_int(text)
                        .and_then(|v| v.as_f64())
                        .and_then(Number::from_f64)
                        .map(Value::Number)
                })
                .ok_or_else(|| bad("a float")),
            other => Err(YamlError {
                pos,
                message: format!("could not determine a constructor for the tag '!!{other}'"),
            }),
        };
    }
    if !plain {
        return Ok(Value::String(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = as_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = as_int(text) {
        return Ok(i);
    }
    if let Some(f) = as_float(text) {
        return Ok(f);
    }
    // Timestamps (`2024-01-01`, `2024-01-01T10:00:00Z`) become datetime objects in PyYAML; they
    // are kept as their text here, which is how they reach JSON in practice.
    Ok(Value::String(text.to_owned()))
}

fn as_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

fn int_value(neg: bool, magnitude: u128) -> Value {
    let signed = i128::try_from(magnitude)
        .ok()
        .map(|m| if neg { -m } else { m });
    match signed {
        Some(v) => {
            if let Ok(i) = i64::try_from(v) {
                Value::Number(i.into())
            } else if let Ok(u) = u64::try_from(v) {
                Value::Number(u.into())
            } else {
                Number::from_f64(v as f64).map_or(Value::Null, Value::Number)
            }
        }
        None => Value::Null,
    }
}

/// `[-+]?0b[01_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ |
/// [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`
fn as_int(text: &str) -> Option<Value> {
    let (neg, body) = split_sign(text);
    let parse = |digits: &str, radix: u32| -> Option<u128> {
        let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
        if cleaned.is_empty() {
            return Some(0);
        }
        u128::from_str_radix(&cleaned, radix).ok()
    };
    if let Some(bin) = body.strip_prefix("0b") {
        if all(bin, |c| matches!(c, '0' | '1' | '_')) {
            return parse(bin, 2).map(|m| int_value(neg, m));
        }
        return None;
    }
    if let Some(hex) = body.strip_prefix("0x") {
        if all(hex, |c| c.is_ascii_hexdigit() || c == '_') {
            return parse(hex, 16).map(|m| int_value(neg, m));
        }
        return None;
    }
    if body == "0" {
        return Some(int_value(neg, 0));
    }
    if let Some(oct) = body.strip_prefix('0') {
        if all(oct, |c| matches!(c, '0'..='7' | '_')) {
            return parse(oct, 8).map(|m| int_value(neg, m));
        }
        return None;
    }
    let first_ok = body.chars().next().is_some_and(|c| matches!(c, '1'..='9'));
    if !first_ok {
        return None;
    }
    if all(body, |c| c.is_ascii_digit() || c == '_') {
        return parse(body, 10).map(|m| int_value(neg, m));
    }
    // Sexagesimal (base 60): 1:30 == 90.
    let mut parts = body.split(':');
    let head = parts.next()?;
    if !all(head, |c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    let mut total = parse(head, 10)?;
    let mut any = false;
    for part in parts {
        if !is_sexagesimal_digit_group(part) {
            return None;
        }
        total = total.checked_mul(60)?.checked_add(parse(part, 10)?)?;
        any = true;
    }
    any.then(|| int_value(neg, total))
}

/// `[0-5]?[0-9]`
fn is_sexagesimal_digit_group(part: &str) -> bool {
    let b = part.as_bytes();
    match b.len() {
        1 => b[0].is_ascii_digit(),
        2 => matches!(b[0], b'0'..=b'5') && b[1].is_ascii_digit(),
        _ => false,
    }
}

/// `[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9_]+([eE][-+][0-9]+)? |
/// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)`
fn as_float(text: &str) -> Option<Value> {
    let (neg, body) = split_sign(text);
    let signed = text.starts_with(['-', '+']);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        // JSON has no infinity; keep PyYAML's spelling as text.
        return Some(Value::String(text.to_owned()));
    }
    if !signed && matches!(body, ".nan" | ".NaN" | ".NAN") {
        return Some(Value::String(text.to_owned()));
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(exp) = exponent {
        let (_, digits) = split_sign(exp);
        if !exp.starts_with(['-', '+']) || !all(digits, |c| c.is_ascii_digit()) {
            return None;
        }
    }
    let dot = mantissa.find('.')?;
    let (int_part, frac) = (&mantissa[..dot], &mantissa[dot + 1..]);
    if !frac.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    let value: f64 = if int_part.is_empty() {
        if signed || frac.is_empty() || frac.starts_with('_') && frac.chars().all(|c| c == '_') {
            return None;
        }
        let cleaned: String = body.chars().filter(|&c| c != '_').collect();
        cleaned.parse().ok()?
    } else if int_part.contains(':') {
        if exponent.is_some() {
            return None;
        }
        let mut parts = int_part.split(':');
        let head = parts.next()?;
        if !head.starts_with(|c: char| c.is_ascii_digit())
            || !all(head, |c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let mut total: f64 = head.replace('_', "").parse().ok()?;
        for part in parts {
            if !is_sexagesimal_digit_group(part) {
                return None;
            }
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        let frac_clean: String = frac.chars().filter(|&c| c != '_').collect();
        let frac_value: f64 = if frac_clean.is_empty() {
            0.0
        } else {
            format!("0.{frac_clean}").parse().ok()?
        };
        total + frac_value
    } else {
        if !int_part.starts_with(|c: char| c.is_ascii_digit())
            || !all(int_part, |c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let cleaned: String = body.chars().filter(|&c| c != '_').collect();
        let cleaned = if cleaned.contains(['e', 'E']) || !cleaned.ends_with('.') {
            cleaned.replace(".e", ".0e").replace(".E", ".0E")
        } else {
            format!("{cleaned}0")
        };
        cleaned.parse().ok()?
    };
    let value = if neg { -value } else { value };
    Number::from_f64(value).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        match load_all(text) {
            Ok(mut docs) if !docs.is_empty() => docs.remove(0).0.value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn yaml11_scalars() {
        let v = one(
            "a: yes\nb: off\nc: 012\nd: 0x1F\ne: 1_000\nf: 1:30\ng: 1e3\nh: 1.5e+3\ni: 3.\nj: ~\nk:\nl: '12'\nm: .5\nn: 0b101\no: 2024-01-02\np: -7\nq: 1.0\nr: 09\n",
        );
        assert_eq!(
            v,
            json!({"a": true, "b": false, "c": 10, "d": 31, "e": 1000, "f": 90, "g": "1e3",
                   "h": 1500.0, "i": 3.0, "j": null, "k": null, "l": "12", "m": 0.5, "n": 5,
                   "o": "2024-01-02", "p": -7, "q": 1.0, "r": "09"})
        );
    }

    #[test]
    fn explicit_tags() {
        let v = one("a: !!str 12\nb: !!int '7'\nc: !!float 1\n");
        assert_eq!(v, json!({"a": "12", "b": 7, "c": 1.0}));
        assert!(load_all("a: !Ref x\n").is_err());
    }
}
