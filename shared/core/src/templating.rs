//! Prefect-compatible `{{ placeholder }}` templating.
//!
//! This reproduces the observable behaviour of Prefect's `prefect.utilities.templating`
//! (`apply_values`, `resolve_block_document_references`, `resolve_variables`) on JSON values.
//! Prefect fetches blocks and variables over HTTP while it walks the template; this crate does
//! no I/O, so that work is split in two phases: [`find_block_references`] and
//! [`find_variable_references`] tell the caller what to fetch, and the `resolve_*` functions
//! read the fetched data through [`TemplateData`].
//!
//! Where Prefect's result depends on Python `set` iteration order (a substituted value that
//! itself contains placeholder text), Sluice substitutes every placeholder in one left-to-right
//! pass and never re-templates inserted text.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use serde_json::{Map, Value};

/// Names starting with this refer to a block document: `prefect.blocks.<slug>.<name>[.<keypath>]`.
pub const BLOCK_DOCUMENT_PREFIX: &str = "prefect.blocks.";
/// Names starting with this refer to a Prefect variable: `prefect.variables.<name>`.
pub const VARIABLE_PREFIX: &str = "prefect.variables.";
/// Names starting with this refer to an environment variable: `$NAME`.
pub const ENV_VAR_PREFIX: char = '$';

/// What a placeholder refers to, decided by the prefix of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceholderKind {
    /// Looked up in the values passed to [`apply_values`].
    Standard,
    /// `prefect.blocks.…`, resolved by [`resolve_block_document_references`].
    BlockDocument,
    /// `prefect.variables.…`, resolved by [`resolve_variables`].
    Variable,
    /// `$NAME`, read from the environment by [`apply_values`].
    EnvVar,
}

impl PlaceholderKind {
    /// Classifies a placeholder name by its prefix (block, then variable, then `$`).
    #[must_use]
    pub fn of(name: &str) -> Self {
        if name.starts_with(BLOCK_DOCUMENT_PREFIX) {
            Self::BlockDocument
        } else if name.starts_with(VARIABLE_PREFIX) {
            Self::Variable
        } else if name.starts_with(ENV_VAR_PREFIX) {
            Self::EnvVar
        } else {
            Self::Standard
        }
    }
}

/// One distinct placeholder found in a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placeholder {
    /// The exact matched text, braces and inner whitespace included (`{{ name }}`).
    pub full_match: String,
    /// The name between the braces, without surrounding whitespace.
    pub name: String,
    /// What the name refers to.
    pub kind: PlaceholderKind,
}

/// A match of the placeholder grammar inside a string, by byte offsets.
#[derive(Debug, Clone, Copy)]
struct Span<'s> {
    start: usize,
    end: usize,
    name: &'s str,
}

impl Span<'_> {
    fn text<'a>(&self, s: &'a str) -> &'a str {
        &s[self.start..self.end]
    }
}

/// Python's `\w` for `str` patterns is "alphanumeric or underscore"; Rust's notion of
/// alphanumeric is the closest std equivalent (it also admits a few combining marks).
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']' | '$')
}

/// Python's `\s` is `str.isspace()`, which adds the ASCII separators U+001C..U+001F to
/// Unicode's White_Space set.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Tries the grammar `{{ \s* name \s* }}` at byte offset `start` (which holds `{{`).
fn match_at(s: &str, start: usize) -> Option<Span<'_>> {
    let rest = &s[start + 2..];
    let after_ws = rest.trim_start_matches(is_py_space);
    let name_len = after_ws
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(after_ws.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &after_ws[..name_len];
    let tail = after_ws[name_len..].trim_start_matches(is_py_space);
    if !tail.starts_with("}}") {
        return None;
    }
    let end = s.len() - tail.len() + 2;
    Some(Span { start, end, name })
}

/// Every non-overlapping match, left to right, like `re.findall`: a failed attempt moves on by
/// one character, a match resumes after itself.
fn scan(s: &str) -> Vec<Span<'_>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(offset) = s[from..].find("{{") {
        let start = from + offset;
        match match_at(s, start) {
            Some(span) => {
                from = span.end;
                spans.push(span);
            }
            // `{` is one byte, so `start + 1` is a char boundary.
            None => from = start + 1,
        }
    }
    spans
}

/// The distinct placeholders of a string, in order of first occurrence.
///
/// Two spellings of one name (`{{a}}` and `{{ a }}`) are two placeholders, as in Prefect.
#[must_use]
pub fn find_placeholders_in_str(s: &str) -> Vec<Placeholder> {
    let mut found: Vec<Placeholder> = Vec::new();
    for span in scan(s) {
        let text = span.text(s);
        if !found.iter().any(|p| p.full_match == text) {
            found.push(Placeholder {
                full_match: text.to_owned(),
                name: span.name.to_owned(),
                kind: PlaceholderKind::of(span.name),
            });
        }
    }
    found
}

/// The distinct placeholders in every string of a JSON tree (object keys are not templates).
#[must_use]
pub fn find_placeholders(template: &Value) -> Vec<Placeholder> {
    let mut found = Vec::new();
    collect_placeholders(template, &mut found);
    found
}

fn collect_placeholders(template: &Value, found: &mut Vec<Placeholder>) {
    match template {
        Value::String(s) => {
            for p in find_placeholders_in_str(s) {
                if !found.contains(&p) {
                    found.push(p);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_placeholders(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_placeholders(v, found)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Path lookup (Prefect's `get_from_dict`)
// ---------------------------------------------------------------------------------------------

/// One segment of a lookup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    /// The segment parses as a Python `int` (`None` when it is too large to be an index); the
    /// text is kept, since a mapping is looked up by the text first.
    Int(Option<i64>, &'a str),
    Str(&'a str),
}

impl<'a> Key<'a> {
    /// The segment as written.
    fn text(self) -> &'a str {
        match self {
            Key::Int(_, text) | Key::Str(text) => text,
        }
    }
}

/// The first code point of each run of ten Unicode decimal digits (category Nd), which Python's
/// `int()` accepts as digits.
const DECIMAL_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

fn decimal_digit(c: char) -> Option<u32> {
    let cp = u32::from(c);
    DECIMAL_ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&cp))
        .map(|&zero| cp - zero)
}

/// Python's `int(segment)` for base 10: optional sign, digits, single underscores between digits.
fn python_int(segment: &str) -> Option<Option<i64>> {
    let (negative, digits) = match segment.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, segment.strip_prefix('+').unwrap_or(segment)),
    };
    let mut value: Option<i128> = Some(0);
    let mut previous_was_digit = false;
    let mut any_digit = false;
    for c in digits.chars() {
        if c == '_' {
            if !previous_was_digit {
                return None;
            }
            previous_was_digit = false;
            continue;
        }
        let d = decimal_digit(c)?;
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(i128::from(d)));
        previous_was_digit = true;
        any_digit = true;
    }
    if !any_digit || !previous_was_digit {
        return None;
    }
    let signed = value.map(|v| if negative { -v } else { v });
    Some(signed.and_then(|v| i64::try_from(v).ok()))
}

/// Splits a path already passed through [`normalized_path`].
fn parse_path(path: &str) -> Vec<Key<'_>> {
    path.split('.')
        .map(|segment| python_int(segment).map_or(Key::Str(segment), |i| Key::Int(i, segment)))
        .collect()
}

/// Prefect turns `[` into `.` and deletes `]` before splitting a path on `.`.
fn normalized_path(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// Python-style index into a sequence of `len` items (negative counts from the end).
fn py_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if index < 0 { index + len } else { index };
    if (0..len).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

fn lookup_keys(mut current: &Value, keys: &[Key<'_>]) -> Option<Value> {
    for (position, key) in keys.iter().enumerate() {
        match (current, *key) {
            // Prefect 3.9 looks a numeric segment up in a mapping by its text first
            // (`years.2026`); its fallback to the integer key never matches a JSON object's
            // string keys.
            (Value::Object(map), k) => current = map.get(k.text())?,
            (Value::Array(items), Key::Int(Some(i), _)) => {
                current = items.get(py_index(i, items.len())?)?
            }
            (Value::String(s), Key::Int(Some(i), _)) => {
                // Python strings are sequences of code points, so `"abc"[1]` is `"b"`.
                let chars: Vec<char> = s.chars().collect();
                let c = chars.get(py_index(i, chars.len())?)?;
                let one = Value::String(c.to_string());
                return lookup_keys(&one, &keys[position + 1..]);
            }
            _ => return None,
        }
    }
    Some(current.clone())
}

/// Prefect's `get_from_dict` on any JSON value: `[` becomes `.`, `]` is deleted, the path is
/// split on `.`, and segments that parse as integers index lists (negative from the end) or
/// strings. `None` means "missing" (KeyError, IndexError or TypeError in Python).
#[must_use]
pub fn lookup_path(root: &Value, path: &str) -> Option<Value> {
    let path = normalized_path(path);
    let keys = parse_path(&path);
    lookup_keys(root, &keys)
}

/// [`lookup_path`] with a map of values as the root, as `apply_values` does.
#[must_use]
pub fn lookup_in_map(values: &Map<String, Value>, path: &str) -> Option<Value> {
    let path = normalized_path(path);
    let keys = parse_path(&path);
    match keys.split_first() {
        Some((first, rest)) => lookup_keys(values.get(first.text())?, rest),
        None => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Python `str()` / `repr()` of JSON-decoded values
// ---------------------------------------------------------------------------------------------

/// Python's `str(value)` for the value `json.loads` would produce: strings as they are, every
/// other value as its `repr` (`True`, `None`, `1.0`, `{'a': 1}`, `[1, 'two', None]`).
#[must_use]
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr(value)` for the value `json.loads` would produce.
#[must_use]
pub fn python_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64() {
                out.push_str(&python_float_repr(f));
            }
        }
        Value::String(s) => out.push_str(&python_str_repr(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&python_str_repr(key));
                out.push_str(": ");
                write_repr(item, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional when the decimal
/// exponent is in -4..16, scientific (`1e-05`, `1.5e+16`) otherwise, always with a `.0` or an
/// exponent so it reads back as a float.
#[must_use]
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` yields the same shortest round-trip digits as Python's repr.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // Position of the decimal point relative to the first digit, as in Python's dtoa.
    let point = exponent + 1;
    let body = if point <= -4 || point > 16 {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{exp_sign}{:02}", exponent.unsigned_abs())
    } else if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        format!("0.{zeros}{digits}")
    } else {
        let point = point.unsigned_abs() as usize;
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`; backslash escapes for
/// the quote, `\\`, `\t`, `\n`, `\r`; `\xhh`/`\uhhhh`/`\Uhhhhhhhh` for non-printable characters.
#[must_use]
pub fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if python_printable(c) => out.push(c),
            c => {
                let cp = u32::from(c);
                if cp <= 0xff {
                    out.push_str(&format!("\\x{cp:02x}"));
                } else if cp <= 0xffff {
                    out.push_str(&format!("\\u{cp:04x}"));
                } else {
                    out.push_str(&format!("\\U{cp:08x}"));
                }
            }
        }
    }
    out.push(quote);
    out
}

/// Format characters (category Cf), which `str.isprintable()` rejects.
const FORMAT_CHARS: [(u32, u32); 21] = [
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// `str.isprintable()` for one character: false for controls, format characters, separators
/// other than the ASCII space, and private-use characters. (Unassigned code points, which
/// Python also rejects, are not tracked here.)
fn python_printable(c: char) -> bool {
    let cp = u32::from(c);
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    let separator = matches!(
        cp,
        0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    );
    let private_use = matches!(cp, 0xE000..=0xF8FF | 0xF_0000..=0xF_FFFD | 0x10_0000..=0x10_FFFD);
    let format = FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp));
    !(separator || private_use || format)
}

/// Python truthiness of a JSON-decoded value.
#[must_use]
pub fn python_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

// ---------------------------------------------------------------------------------------------
// apply_values
// ---------------------------------------------------------------------------------------------

/// Where `{{ $NAME }}` placeholders read environment variables. The crate never reads the
/// process environment itself; callers pass one in.
pub trait EnvSource {
    /// The value of the environment variable `name`, if it is set.
    fn env_var(&self, name: &str) -> Option<String>;
}

/// An empty environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl EnvSource for NoEnv {
    fn env_var(&self, _name: &str) -> Option<String> {
        None
    }
}

impl<S: BuildHasher> EnvSource for HashMap<String, String, S> {
    fn env_var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn env_var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvSource for F {
    fn env_var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Options of [`apply_values`], mirroring Prefect's keyword arguments.
pub struct ApplyOptions<'a> {
    /// Drop dict keys whose value is missing (else keep the original template value), and
    /// blank out missing placeholders inside text (else leave them verbatim). Default `true`.
    pub remove_notset: bool,
    /// Placeholders whose names start with any of these are left untouched (e.g. `ctx.`).
    pub skip_prefixes: Vec<String>,
    /// Source of `{{ $NAME }}` values.
    pub env: &'a dyn EnvSource,
}

impl Default for ApplyOptions<'_> {
    fn default() -> Self {
        Self {
            remove_notset: true,
            skip_prefixes: Vec::new(),
            env: &NoEnv,
        }
    }
}

impl<'a> ApplyOptions<'a> {
    /// Default options reading `{{ $NAME }}` from `env`.
    #[must_use]
    pub fn with_env(env: &'a dyn EnvSource) -> Self {
        Self {
            env,
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for ApplyOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("remove_notset", &self.remove_notset)
            .field("skip_prefixes", &self.skip_prefixes)
            .finish_non_exhaustive()
    }
}

/// Replaces placeholders in `template` with `values`, exactly as Prefect's `apply_values`.
///
/// Prefect can return its `NotSet` marker at the top level (a template that is exactly one
/// missing `{{ name }}`); this function returns the template unchanged in that case, the way
/// Prefect's callers treat `NotSet`. Use [`apply_values_opt`] to observe it.
#[must_use]
pub fn apply_values(
    template: &Value,
    values: &Map<String, Value>,
    opts: &ApplyOptions<'_>,
) -> Value {
    apply_values_opt(template, values, opts).unwrap_or_else(|| template.clone())
}

/// [`apply_values`], returning `None` where Prefect returns `NotSet`: only when `template` is a
/// string made of exactly one standard placeholder whose value is missing.
#[must_use]
pub fn apply_values_opt(
    template: &Value,
    values: &Map<String, Value>,
    opts: &ApplyOptions<'_>,
) -> Option<Value> {
    match template {
        Value::Null | Value::Bool(_) | Value::Number(_) => Some(template.clone()),
        Value::String(s) => apply_to_str(s, values, opts),
        // Prefect 3.9 treats list items as dict values: a missing one is dropped only with
        // `remove_notset`, and kept as written otherwise (older Prefect always dropped it).
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|item| match apply_values_opt(item, values, opts) {
                    Some(applied) => Some(applied),
                    None if !opts.remove_notset => Some(item.clone()),
                    None => None,
                })
                .collect(),
        )),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                match apply_values_opt(item, values, opts) {
                    Some(applied) => {
                        out.insert(key.clone(), applied);
                    }
                    None if !opts.remove_notset => {
                        out.insert(key.clone(), item.clone());
                    }
                    None => {}
                }
            }
            Some(Value::Object(out))
        }
    }
}

fn apply_to_str(s: &str, values: &Map<String, Value>, opts: &ApplyOptions<'_>) -> Option<Value> {
    let placeholders: Vec<Placeholder> = find_placeholders_in_str(s)
        .into_iter()
        .filter(|p| {
            !opts
                .skip_prefixes
                .iter()
                .any(|prefix| p.name.starts_with(prefix.as_str()))
        })
        .collect();
    if placeholders.is_empty() {
        return Some(Value::String(s.to_owned()));
    }
    if let [only] = placeholders.as_slice()
        && only.full_match == s
        && only.kind == PlaceholderKind::Standard
    {
        // The whole string is one placeholder: the value keeps its JSON type.
        return lookup_in_map(values, &only.name);
    }
    let mut replacements: HashMap<&str, Option<String>> = HashMap::new();
    for p in &placeholders {
        let found = match p.kind {
            PlaceholderKind::Standard => lookup_in_map(values, &p.name).map(|v| python_str(&v)),
            PlaceholderKind::EnvVar => opts.env.env_var(p.name.trim_start_matches(ENV_VAR_PREFIX)),
            // Blocks and variables are resolved later, by their own passes.
            PlaceholderKind::BlockDocument | PlaceholderKind::Variable => continue,
        };
        let replacement = match found {
            Some(text) => Some(text),
            None if opts.remove_notset => Some(String::new()),
            None => None,
        };
        replacements.insert(p.full_match.as_str(), replacement);
    }
    Some(Value::String(substitute(s, |text| {
        replacements.get(text).cloned().flatten()
    })))
}

/// Rebuilds `s` with each placeholder match replaced by `replace(match_text)`, or kept verbatim
/// when that returns `None`.
fn substitute(s: &str, mut replace: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for span in scan(s) {
        let text = span.text(s);
        out.push_str(&s[last..span.start]);
        match replace(text) {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(text),
        }
        last = span.end;
    }
    out.push_str(&s[last..]);
    out
}

/// Fallible form of [`substitute`].
fn try_substitute<E>(
    s: &str,
    mut replace: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for span in scan(s) {
        let text = span.text(s);
        out.push_str(&s[last..span.start]);
        match replace(text)? {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(text),
        }
        last = span.end;
    }
    out.push_str(&s[last..]);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Blocks and variables
// ---------------------------------------------------------------------------------------------

/// Already-fetched blocks and variables, read by the `resolve_*` functions.
///
/// Block lookups return the block document's `data`. Every method defaults to "not found", so
/// an implementation only provides what it has.
pub trait TemplateData {
    /// The `data` of the block document with this id.
    fn block_by_id(&self, _id: &str) -> Option<Value> {
        None
    }
    /// The `data` of the block document `name` of the block type `block_type_slug`.
    fn block_by_name(&self, _block_type_slug: &str, _name: &str) -> Option<Value> {
        None
    }
    /// The value of the Prefect variable `name`.
    fn variable(&self, _name: &str) -> Option<Value> {
        None
    }
}

/// No blocks and no variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoData;

impl TemplateData for NoData {}

/// An in-memory [`TemplateData`], filled by a caller after it fetched what
/// [`find_block_references`] and [`find_variable_references`] asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefetchedData {
    /// Block document `data` by block document id.
    pub blocks_by_id: HashMap<String, Value>,
    /// Block document `data` by (block type slug, block document name).
    pub blocks_by_name: HashMap<(String, String), Value>,
    /// Variable values by name.
    pub variables: HashMap<String, Value>,
}

impl PrefetchedData {
    /// Adds a block document reachable by id.
    #[must_use]
    pub fn with_block_id(mut self, id: impl Into<String>, data: Value) -> Self {
        self.blocks_by_id.insert(id.into(), data);
        self
    }

    /// Adds a block document reachable by type slug and name.
    #[must_use]
    pub fn with_block(
        mut self,
        slug: impl Into<String>,
        name: impl Into<String>,
        data: Value,
    ) -> Self {
        self.blocks_by_name.insert((slug.into(), name.into()), data);
        self
    }

    /// Adds a variable.
    #[must_use]
    pub fn with_variable(mut self, name: impl Into<String>, value: Value) -> Self {
        self.variables.insert(name.into(), value);
        self
    }
}

impl TemplateData for PrefetchedData {
    fn block_by_id(&self, id: &str) -> Option<Value> {
        self.blocks_by_id.get(id).cloned()
    }
    fn block_by_name(&self, block_type_slug: &str, name: &str) -> Option<Value> {
        self.blocks_by_name
            .get(&(block_type_slug.to_owned(), name.to_owned()))
            .cloned()
    }
    fn variable(&self, name: &str) -> Option<Value> {
        self.variables.get(name).cloned()
    }
}

/// A block document a template refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockRef {
    /// `{"$ref": {"block_document_id": id}}`.
    ById(String),
    /// `{{ prefect.blocks.<slug>.<name>[.<keypath>] }}`.
    ByName {
        /// The block type slug.
        slug: String,
        /// The block document name.
        name: String,
    },
}

/// Errors of [`resolve_block_document_references`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A block placeholder without a document name.
    #[error(
        "invalid block placeholder format: '{name}'; expected prefect.blocks.<block-type-slug>.<block-document-name>"
    )]
    InvalidBlockPlaceholder {
        /// The placeholder name.
        name: String,
    },
    /// No block document with this type slug and name.
    #[error(
        "block not found: '{name}' of type '{block_type_slug}'; it is referenced by the deployment or work pool configuration but does not exist"
    )]
    BlockNotFoundByName {
        /// The block type slug.
        block_type_slug: String,
        /// The block document name.
        name: String,
    },
    /// No block document with this id.
    #[error(
        "block not found: id '{id}'; it is referenced by the deployment or work pool configuration but does not exist"
    )]
    BlockNotFoundById {
        /// The block document id.
        id: String,
    },
    /// The keypath after the block document name is not in the block's data.
    #[error(
        "invalid template: {template:?}; could not resolve the keypath of '{placeholder}' in the block document data"
    )]
    UnresolvableKeypath {
        /// The template string.
        template: String,
        /// The placeholder text.
        placeholder: String,
    },
    /// A block placeholder inside text resolved to an object or array.
    #[error(
        "invalid template: {template:?}; block placeholder '{placeholder}' resolved to a {kind}, which cannot be used for inline string substitution; resolve a scalar attribute instead (e.g. '.value' or '.url')"
    )]
    NonScalarInline {
        /// The template string.
        template: String,
        /// The placeholder text.
        placeholder: String,
        /// `dict` or `list`, as Python names them.
        kind: &'static str,
    },
}

/// The id of a `{"$ref": {"block_document_id": id}}` object, if the object is one.
///
/// Prefect only looks at the `$ref` key, so other keys beside it are ignored, and a falsy id
/// (`null`, `""`) makes the object an ordinary dict.
fn block_ref_id(map: &Map<String, Value>) -> Option<String> {
    let id = map.get("$ref")?.as_object()?.get("block_document_id")?;
    python_truthy(id).then(|| python_str(id))
}

/// `(slug, document name, keypath)` of a block placeholder name, split on its first two dots
/// after removing the prefix (wherever it occurs, as Prefect's `str.replace` does).
fn split_block_name(name: &str) -> Option<(String, String, Option<String>)> {
    let rest = name.replace(BLOCK_DOCUMENT_PREFIX, "");
    let mut parts = rest.splitn(3, '.');
    let slug = parts.next()?.to_owned();
    let doc = parts.next()?.to_owned();
    Some((slug, doc, parts.next().map(str::to_owned)))
}

fn variable_name(name: &str) -> String {
    name.replace(VARIABLE_PREFIX, "")
}

/// Every block document the template refers to, in order of first appearance. Malformed block
/// placeholders are skipped here; [`resolve_block_document_references`] reports them.
#[must_use]
pub fn find_block_references(template: &Value) -> Vec<BlockRef> {
    let mut found = Vec::new();
    collect_block_refs(template, &mut found);
    found
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn collect_block_refs(template: &Value, found: &mut Vec<BlockRef>) {
    match template {
        Value::Object(map) => match block_ref_id(map) {
            Some(id) => push_unique(found, BlockRef::ById(id)),
            None => map.values().for_each(|v| collect_block_refs(v, found)),
        },
        Value::Array(items) => items.iter().for_each(|v| collect_block_refs(v, found)),
        Value::String(s) => {
            for p in find_placeholders_in_str(s) {
                if p.kind == PlaceholderKind::BlockDocument
                    && let Some((block_type_slug, name, _)) = split_block_name(&p.name)
                {
                    push_unique(
                        found,
                        BlockRef::ByName {
                            slug: block_type_slug,
                            name,
                        },
                    );
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Every variable name the template refers to through `{{ prefect.variables.<name> }}`, in
/// order of first appearance.
#[must_use]
pub fn find_variable_references(template: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for p in find_placeholders(template) {
        if p.kind == PlaceholderKind::Variable {
            push_unique(&mut found, variable_name(&p.name));
        }
    }
    found
}

/// Looks blocks up once per resolution, like Prefect's per-call cache.
struct BlockLookup<'d> {
    data: &'d dyn TemplateData,
    by_id: HashMap<String, Value>,
    by_name: HashMap<(String, String), Value>,
}

impl BlockLookup<'_> {
    fn by_id(&mut self, id: &str) -> Result<Value, TemplateError> {
        if let Some(found) = self.by_id.get(id) {
            return Ok(found.clone());
        }
        let found = self
            .data
            .block_by_id(id)
            .ok_or_else(|| TemplateError::BlockNotFoundById { id: id.to_owned() })?;
        self.by_id.insert(id.to_owned(), found.clone());
        Ok(found)
    }

    fn by_name(&mut self, slug: &str, name: &str) -> Result<Value, TemplateError> {
        let key = (slug.to_owned(), name.to_owned());
        if let Some(found) = self.by_name.get(&key) {
            return Ok(found.clone());
        }
        let found = self.data.block_by_name(slug, name).ok_or_else(|| {
            TemplateError::BlockNotFoundByName {
                block_type_slug: slug.to_owned(),
                name: name.to_owned(),
            }
        })?;
        self.by_name.insert(key, found.clone());
        Ok(found)
    }

    fn placeholder_value(
        &mut self,
        p: &Placeholder,
        template: &str,
    ) -> Result<Value, TemplateError> {
        let (slug, doc, keypath) =
            split_block_name(&p.name).ok_or_else(|| TemplateError::InvalidBlockPlaceholder {
                name: p.name.clone(),
            })?;
        let data = self.by_name(&slug, &doc)?;
        // System blocks (Secret, String, …) hold a single `value`; it is what a bare reference
        // means, unless the keypath already names it.
        let unwrap_value = data
            .as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key("value"))
            && !keypath.as_deref().is_some_and(|k| k.starts_with("value"));
        let base = if unwrap_value {
            data.get("value").cloned().unwrap_or(Value::Null)
        } else {
            data
        };
        match keypath {
            None => Ok(base),
            Some(path) => {
                lookup_path(&base, &path).ok_or_else(|| TemplateError::UnresolvableKeypath {
                    template: template.to_owned(),
                    placeholder: p.full_match.clone(),
                })
            }
        }
    }

    fn resolve(&mut self, template: &Value) -> Result<Value, TemplateError> {
        match template {
            Value::Object(map) => {
                if let Some(id) = block_ref_id(map) {
                    return self.by_id(&id);
                }
                let mut out = Map::new();
                for (key, item) in map {
                    out.insert(key.clone(), self.resolve(item)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|item| self.resolve(item))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::String(s) => self.resolve_str(s),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(template.clone()),
        }
    }

    fn resolve_str(&mut self, s: &str) -> Result<Value, TemplateError> {
        let placeholders = find_placeholders_in_str(s);
        if !placeholders
            .iter()
            .any(|p| p.kind == PlaceholderKind::BlockDocument)
        {
            return Ok(Value::String(s.to_owned()));
        }
        if let [only] = placeholders.as_slice()
            && only.full_match == s
        {
            return self.placeholder_value(only, s);
        }
        let mut inline: HashMap<String, String> = HashMap::new();
        for p in placeholders
            .iter()
            .filter(|p| p.kind == PlaceholderKind::BlockDocument)
        {
            let value = self.placeholder_value(p, s)?;
            let kind = match value {
                Value::Object(_) => Some("dict"),
                Value::Array(_) => Some("list"),
                _ => None,
            };
            if let Some(kind) = kind {
                return Err(TemplateError::NonScalarInline {
                    template: s.to_owned(),
                    placeholder: p.full_match.clone(),
                    kind,
                });
            }
            inline.insert(p.full_match.clone(), python_str(&value));
        }
        // Other placeholder kinds stay for their own passes.
        try_substitute(s, |text| Ok::<_, TemplateError>(inline.get(text).cloned()))
            .map(Value::String)
    }
}

/// Replaces block references with block data, as Prefect's `resolve_block_document_references`:
///
/// - `{"$ref": {"block_document_id": id}}` becomes a copy of that block's data;
/// - a string that is exactly `{{ prefect.blocks.<slug>.<name>[.<keypath>] }}` becomes the data
///   (or the value at the keypath) with its JSON type; data that is exactly `{"value": X}`
///   yields `X` unless the keypath starts with `value`;
/// - inside text, each block placeholder becomes `str(value)`; objects and arrays are an error.
///
/// # Errors
/// A malformed placeholder, a missing block, an unknown keypath, or a non-scalar inline value.
pub fn resolve_block_document_references(
    template: &Value,
    data: &dyn TemplateData,
) -> Result<Value, TemplateError> {
    BlockLookup {
        data,
        by_id: HashMap::new(),
        by_name: HashMap::new(),
    }
    .resolve(template)
}

/// Replaces `{{ prefect.variables.<name> }}` placeholders, as Prefect's `resolve_variables`: a
/// string that is exactly one such placeholder becomes the variable's JSON value (or `""` when
/// the variable does not exist); inside text each becomes `str(value)`, or nothing when missing.
#[must_use]
pub fn resolve_variables(template: &Value, data: &dyn TemplateData) -> Value {
    let mut cache: HashMap<String, Option<Value>> = HashMap::new();
    resolve_variables_in(template, data, &mut cache)
}

fn read_variable(
    name: &str,
    data: &dyn TemplateData,
    cache: &mut HashMap<String, Option<Value>>,
) -> Option<Value> {
    let name = variable_name(name);
    cache
        .entry(name)
        .or_insert_with_key(|name| data.variable(name))
        .clone()
}

fn resolve_variables_in(
    template: &Value,
    data: &dyn TemplateData,
    cache: &mut HashMap<String, Option<Value>>,
) -> Value {
    match template {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve_variables_in(v, data, cache)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve_variables_in(v, data, cache))
                .collect(),
        ),
        Value::String(s) => {
            let placeholders = find_placeholders_in_str(s);
            if !placeholders
                .iter()
                .any(|p| p.kind == PlaceholderKind::Variable)
            {
                return template.clone();
            }
            if let [only] = placeholders.as_slice()
                && only.full_match == *s
            {
                return read_variable(&only.name, data, cache)
                    .unwrap_or_else(|| Value::String(String::new()));
            }
            let mut inline: HashMap<String, String> = HashMap::new();
            for p in placeholders
                .iter()
                .filter(|p| p.kind == PlaceholderKind::Variable)
            {
                let text = read_variable(&p.name, data, cache)
                    .map(|v| python_str(&v))
                    .unwrap_or_default();
                inline.insert(p.full_match.clone(), text);
            }
            Value::String(substitute(s, |text| inline.get(text).cloned()))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => template.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;

    fn values(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn apply(template: &Value, vals: Value) -> Value {
        apply_values(template, &values(vals), &ApplyOptions::default())
    }

    type Expected<'a> = &'a [(&'a str, &'a str, PlaceholderKind)];

    #[test]
    fn placeholder_grammar() {
        use PlaceholderKind::{BlockDocument as B, EnvVar as E, Standard as S, Variable as V};
        let table: &[(&str, Expected<'_>)] = &[
            ("", &[]),
            ("plain text", &[]),
            ("Hello {{name}}!", &[("{{name}}", "name", S)]),
            (
                "{{first_name}} {{last_name}}",
                &[
                    ("{{first_name}}", "first_name", S),
                    ("{{last_name}}", "last_name", S),
                ],
            ),
            (
                "Hello {{    first_name }}",
                &[("{{    first_name }}", "first_name", S)],
            ),
            ("{{x}}{{x}}", &[("{{x}}", "x", S)]),
            ("{{x}}{{ x }}", &[("{{x}}", "x", S), ("{{ x }}", "x", S)]),
            (
                "{{\n\ta.b[0]-c$ \r}}",
                &[("{{\n\ta.b[0]-c$ \r}}", "a.b[0]-c$", S)],
            ),
            ("{{\u{1c}a\u{1f}}}", &[("{{\u{1c}a\u{1f}}}", "a", S)]),
            ("{{\u{a0}a\u{3000}}}", &[("{{\u{a0}a\u{3000}}}", "a", S)]),
            ("{{ café_名前١ }}", &[("{{ café_名前١ }}", "café_名前١", S)]),
            ("{{ a b }} {{}} {{ }} {{a|b}} {{ a } {a}}", &[]),
            ("{{{ a }}}", &[("{{ a }}", "a", S)]),
            ("{{ {{ a }}", &[("{{ a }}", "a", S)]),
            (
                "{{ prefect.blocks.secret.x }}",
                &[(
                    "{{ prefect.blocks.secret.x }}",
                    "prefect.blocks.secret.x",
                    B,
                )],
            ),
            (
                "{{ prefect.blocks }}",
                &[("{{ prefect.blocks }}", "prefect.blocks", S)],
            ),
            (
                "{{prefect.variables.v}}",
                &[("{{prefect.variables.v}}", "prefect.variables.v", V)],
            ),
            (
                "{{ $HOME }}/{{$$X}}",
                &[("{{ $HOME }}", "$HOME", E), ("{{$$X}}", "$$X", E)],
            ),
            ("{{ a$ }}", &[("{{ a$ }}", "a$", S)]),
            (
                "x{{ ctx.flow.name }}y",
                &[("{{ ctx.flow.name }}", "ctx.flow.name", S)],
            ),
        ];
        for (input, expected) in table {
            let got: Vec<(String, String, PlaceholderKind)> = find_placeholders_in_str(input)
                .into_iter()
                .map(|p| (p.full_match, p.name, p.kind))
                .collect();
            let expected: Vec<(String, String, PlaceholderKind)> = expected
                .iter()
                .map(|(f, n, k)| ((*f).to_owned(), (*n).to_owned(), *k))
                .collect();
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn placeholders_in_trees_skip_keys_and_scalars() {
        let template = json!({
            "greeting": "Hello {{name}}!",
            "{{ key }}": {"text": "{{greeting}}", "n": 1, "b": true, "z": null},
            "list": ["{{ name }}", "{{$GREETING}}"]
        });
        let names: Vec<String> = find_placeholders(&template)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["name", "greeting", "name", "$GREETING"]);
    }

    #[test]
    fn path_lookup_follows_get_from_dict() {
        let root = json!({
            "a": {"b": {"c": [1, 2, 3, 4]}, "1": "digit key", "": "empty key"},
            "people": [{"name": "Arthur"}, {"name": "Zaphod"}],
            "s": "héllo",
            "n": null,
            "m": {"1_0": "u"}
        });
        let table = [
            ("a.b.c[1]", Some(json!(2))),
            ("a.b.c.1", Some(json!(2))),
            ("a.b.c[-1]", Some(json!(4))),
            ("a.b.c.-4", Some(json!(1))),
            ("a.b.c.-5", None),
            ("a.b.c.4", None),
            ("a.b.c.99999999999999999999999", None),
            ("a.b.c[0_1]", Some(json!(2))),
            ("a.b.c.١", Some(json!(2))),
            ("a.b.c._1", None),
            ("a.b.c.1_", None),
            ("a.b.c.x", None),
            // A mapping is looked up by the segment's text first (Prefect 3.9's
            // `get_from_dict`); `01` names no key.
            ("a.1", Some(json!("digit key"))),
            ("a.01", None),
            ("a.", Some(json!("empty key"))),
            (
                "a]",
                Some(json!({"b": {"c": [1, 2, 3, 4]}, "1": "digit key", "": "empty key"})),
            ),
            ("people[1].name", Some(json!("Zaphod"))),
            ("people.0.name.0", Some(json!("A"))),
            ("people.0.name.-1.0", Some(json!("r"))),
            ("s.1", Some(json!("é"))),
            ("s.5", None),
            ("s.x", None),
            ("n", Some(Value::Null)),
            ("n.x", None),
            ("m.1_0", Some(json!("u"))),
            ("missing", None),
            ("", None),
        ];
        for (path, expected) in table {
            assert_eq!(lookup_path(&root, path), expected, "{path}");
        }
        let map = values(root);
        assert_eq!(lookup_in_map(&map, "people[0].name"), Some(json!("Arthur")));
        assert_eq!(lookup_in_map(&map, "0"), None);
        assert_eq!(
            lookup_in_map(&values(json!({"1": "x"})), "1"),
            Some(json!("x"))
        );
    }

    #[test]
    fn python_str_of_json_values() {
        let table = [
            (json!(null), "None"),
            (json!(true), "True"),
            (json!(false), "False"),
            (json!(0), "0"),
            (json!(-17), "-17"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1.0), "1.0"),
            (json!(-2.5), "-2.5"),
            (json!(0.1), "0.1"),
            (json!(1e-5), "1e-05"),
            (json!(0.0001), "0.0001"),
            (json!(1.5e-7), "1.5e-07"),
            (json!(1e16), "1e+16"),
            (json!(1e15), "1000000000000000.0"),
            (json!(123_456.789), "123456.789"),
            (
                json!(1.797_693_134_862_315_7e308),
                "1.7976931348623157e+308",
            ),
            (json!(5e-324), "5e-324"),
            (json!("raw text"), "raw text"),
            (json!(""), ""),
            (json!([]), "[]"),
            (json!({}), "{}"),
            (json!([1, "two", null]), "[1, 'two', None]"),
            (json!({"a": 1, "b": "x"}), "{'a': 1, 'b': 'x'}"),
            (
                json!({"k": {"n": [1.0, {"m": false}]}}),
                "{'k': {'n': [1.0, {'m': False}]}}",
            ),
            (json!(["it's"]), "[\"it's\"]"),
            (json!(["say \"hi\""]), "['say \"hi\"']"),
            (json!(["both ' and \""]), "['both \\' and \"']"),
            (json!(["back\\slash"]), "['back\\\\slash']"),
            (json!(["t\tn\nr\r"]), "['t\\tn\\nr\\r']"),
            (
                json!(["\u{0}\u{7}\u{1f}\u{7f}\u{85}"]),
                "['\\x00\\x07\\x1f\\x7f\\x85']",
            ),
            (json!(["café 中文 😀"]), "['café 中文 😀']"),
            (
                json!(["\u{a0}\u{ad}\u{200b}\u{2028}\u{e000}\u{f0000}"]),
                "['\\xa0\\xad\\u200b\\u2028\\ue000\\U000f0000']",
            ),
            (json!({"x'y": "q\"r"}), "{\"x'y\": 'q\"r'}"),
        ];
        for (value, expected) in table {
            assert_eq!(python_str(&value), expected, "{value}");
        }
        assert_eq!(python_repr(&json!("x")), "'x'");
        assert_eq!(python_float_repr(-0.0), "-0.0");
        assert_eq!(python_float_repr(f64::INFINITY), "inf");
        assert_eq!(python_float_repr(f64::NAN), "nan");
    }

    #[test]
    fn truthiness() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!python_truthy(&falsy), "{falsy}");
        }
        for truthy in [
            json!(true),
            json!(-1),
            json!(0.5),
            json!(" "),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(python_truthy(&truthy), "{truthy}");
        }
    }

    #[test]
    fn whole_value_placeholders_keep_their_type() {
        let vals = json!({
            "i": 30, "f": 1.5, "b": false, "n": null, "d": {"first_name": "Superman", "age": 30},
            "l": [1, "a"], "s": "text", "people": [{"name": "Arthur"}]
        });
        let table = [
            ("{{ i }}", json!(30)),
            ("{{f}}", json!(1.5)),
            ("{{ b }}", json!(false)),
            ("{{ n }}", json!(null)),
            ("{{ d }}", json!({"first_name": "Superman", "age": 30})),
            ("{{ l }}", json!([1, "a"])),
            ("{{ s }}", json!("text")),
            ("{{ people[0] }}", json!({"name": "Arthur"})),
            ("{{ d.age }}", json!(30)),
        ];
        for (template, expected) in table {
            assert_eq!(
                apply(&json!({"k": template}), vals.clone()),
                json!({"k": expected}),
                "{template}"
            );
        }
    }

    #[test]
    fn text_placeholders_use_python_str() {
        let vals = json!({
            "t": true, "n": null, "f": 1.0, "d": {"a": 1}, "l": [1, "two", null], "s": "x",
            "person": {"name": "Arthur"}, "people": [{"name": "Arthur"}], "first_name": "Alice",
            "last_name": "Smith"
        });
        let table = [
            ("v={{ t }}", "v=True"),
            ("v={{ n }}", "v=None"),
            ("v={{ f }}", "v=1.0"),
            ("v={{ d }}", "v={'a': 1}"),
            ("v={{ l }}", "v=[1, 'two', None]"),
            (" {{ s }}", " x"),
            ("{{ s }}{{ s }}", "xx"),
            ("{{s}}-{{ s }}", "x-x"),
            ("Hello {{ person.name }}!", "Hello Arthur!"),
            ("Hello {{ people[0].name }}!", "Hello Arthur!"),
            (
                "Hello, {{first_name}} {{last_name}}!",
                "Hello, Alice Smith!",
            ),
            ("{{ missing }}-{{ s }}", "-x"),
            (
                "Hello {{prefect.blocks.document.name}}! {{ s }}",
                "Hello {{prefect.blocks.document.name}}! x",
            ),
            ("{{ prefect.variables.v }}", "{{ prefect.variables.v }}"),
            ("{{ a b }} {{ s }}", "{{ a b }} x"),
        ];
        for (template, expected) in table {
            assert_eq!(
                apply(&json!(template), vals.clone()),
                json!(expected),
                "{template}"
            );
        }
    }

    #[test]
    fn missing_values_drop_keys_and_items() {
        let vals = json!({"first_name": "Alice", "age": 30});
        assert_eq!(
            apply(
                &json!({"last_name": "{{last_name}}", "age": "{{age}}"}),
                vals.clone()
            ),
            json!({"age": 30})
        );
        assert_eq!(
            apply(&json!({"last_name": null, "age": "{{age}}"}), vals.clone()),
            json!({"last_name": null, "age": 30})
        );
        assert_eq!(
            apply(
                &json!(["{{ age }}", "{{ missing }}", {"k": "{{ missing }}"}, 1]),
                vals.clone()
            ),
            json!([30, {}, 1])
        );
        assert_eq!(
            apply(&json!({"n": "Bob {{last_name}}"}), vals),
            json!({"n": "Bob "})
        );
    }

    #[test]
    fn remove_notset_false_keeps_originals() {
        let opts = ApplyOptions {
            remove_notset: false,
            ..ApplyOptions::default()
        };
        let template = json!({
            "name": "Bob {{last_name}}",
            "whole": "{{ last_name }}",
            "age": "{{age}}",
            "list": ["{{ missing }}", "{{ age }}"],
            "env": "{{ $NOPE }}"
        });
        assert_eq!(
            apply_values(&template, &values(json!({"age": 30})), &opts),
            json!({
                "name": "Bob {{last_name}}",
                "whole": "{{ last_name }}",
                "age": 30,
                // Prefect 3.9 keeps a missing list item as written, as it keeps a dict value.
                "list": ["{{ missing }}", 30],
                "env": "{{ $NOPE }}"
            })
        );
    }

    #[test]
    fn top_level_notset() {
        let empty = Map::new();
        let opts = ApplyOptions::default();
        assert_eq!(apply_values_opt(&json!("{{ name }}"), &empty, &opts), None);
        assert_eq!(
            apply_values(&json!("{{ name }}"), &empty, &opts),
            json!("{{ name }}")
        );
        assert_eq!(
            apply_values_opt(&json!("x{{ name }}"), &empty, &opts),
            Some(json!("x"))
        );
        for scalar in [json!(123), json!(2.5), json!(true), json!(null)] {
            assert_eq!(
                apply_values_opt(&scalar, &values(json!({"flag": false})), &opts),
                Some(scalar)
            );
        }
    }

    #[test]
    fn skip_prefixes_leave_placeholders_alone() {
        let opts = ApplyOptions {
            skip_prefixes: vec!["ctx.".to_owned()],
            ..ApplyOptions::default()
        };
        let vals = values(json!({"version": "1.0", "build-image": {"image": "img:latest"}}));
        let table = [
            (json!("{{ ctx.flow.name }}"), json!("{{ ctx.flow.name }}")),
            (
                json!("job-{{ ctx.flow.name }}/{{ ctx.flow_run.name }}"),
                json!("job-{{ ctx.flow.name }}/{{ ctx.flow_run.name }}"),
            ),
            (
                json!("{{ ctx.flow.name }}-{{ version }}"),
                json!("{{ ctx.flow.name }}-1.0"),
            ),
            (
                json!({"name": "{{ ctx.flow.name }}", "image": "{{ build-image.image }}", "tags": ["{{ ctx.flow_run.name }}", "{{ missing }}"]}),
                json!({"name": "{{ ctx.flow.name }}", "image": "img:latest", "tags": ["{{ ctx.flow_run.name }}"]}),
            ),
        ];
        for (template, expected) in table {
            assert_eq!(
                apply_values(&template, &vals, &opts),
                expected,
                "{template}"
            );
        }
    }

    #[test]
    fn env_placeholders_read_the_given_environment() {
        let env: BTreeMap<String, String> = [("HOME", "/home/me"), ("GREETING", "hi")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let opts = ApplyOptions::with_env(&env);
        let vals = values(json!({"name": "Dan", "$HOME": "not used"}));
        let table = [
            ("{{ $HOME }}", "/home/me"),
            ("{{ $$HOME }}/x", "/home/me/x"),
            ("{{$$$HOME}}", "/home/me"),
            ("{{ $MISSING_ENV_VAR }}", ""),
            ("{{$$}}", ""),
            ("Hello {{name}}! {{$GREETING}}", "Hello Dan! hi"),
            (
                r#"{"greeting": "Hello {{name}}!", "message": {"text": "{{$$}}"}}"#,
                r#"{"greeting": "Hello Dan!", "message": {"text": ""}}"#,
            ),
        ];
        for (template, expected) in table {
            assert_eq!(
                apply_values(&json!(template), &vals, &opts),
                json!(expected),
                "{template}"
            );
        }
        // Closures and the empty environment work too.
        let lookup = |name: &str| (name == "X").then(|| "from-closure".to_owned());
        assert_eq!(
            apply_values(
                &json!("{{ $X }}"),
                &Map::new(),
                &ApplyOptions::with_env(&lookup)
            ),
            json!("from-closure")
        );
        assert_eq!(
            apply_values(
                &json!("[{{ $HOME }}]"),
                &Map::new(),
                &ApplyOptions::default()
            ),
            json!("[]")
        );
    }

    #[test]
    fn substituted_values_are_not_templated_again() {
        let vals = json!({"a": "{{ b }}", "b": "B"});
        assert_eq!(apply(&json!("{{ a }}"), vals.clone()), json!("{{ b }}"));
        assert_eq!(apply(&json!("{{ a }}|{{ b }}"), vals), json!("{{ b }}|B"));
    }

    struct CountingData {
        inner: PrefetchedData,
        calls: RefCell<Vec<String>>,
    }

    impl TemplateData for CountingData {
        fn block_by_id(&self, id: &str) -> Option<Value> {
            self.calls.borrow_mut().push(format!("id:{id}"));
            self.inner.block_by_id(id)
        }
        fn block_by_name(&self, slug: &str, name: &str) -> Option<Value> {
            self.calls.borrow_mut().push(format!("name:{slug}/{name}"));
            self.inner.block_by_name(slug, name)
        }
        fn variable(&self, name: &str) -> Option<Value> {
            self.calls.borrow_mut().push(format!("var:{name}"));
            self.inner.variable(name)
        }
    }

    fn block_data() -> PrefetchedData {
        PrefetchedData::default()
            .with_block("arbitraryblock", "my-block", json!({"a": 1, "b": "hello"}))
            .with_block("secret", "tok", json!({"value": "s3cr3t"}))
            .with_block(
                "secret",
                "nested",
                json!({"value": {"key": {"nested-key": "nested-value"}, "list": [{"list-key": "list-value"}, 1, 2]}}),
            )
            .with_block("webhook", "hook", json!({"url": "https://example.com"}))
            .with_block_id("b1", json!({"nested": {"value": "hello"}}))
    }

    #[test]
    fn block_references_are_found() {
        let template = json!({
            "a": {"$ref": {"block_document_id": "b1"}, "ignored": "{{ prefect.blocks.x.hidden }}"},
            "b": ["{{ prefect.blocks.secret.tok }}/x/{{ prefect.blocks.webhook.hook.url }}"],
            "c": "{{ prefect.blocks.secret.tok.value }}",
            "d": "{{ prefect.blocks.only-type }}",
            "e": {"$ref": {"block_document_id": null}, "f": "{{ prefect.variables.v }}"}
        });
        assert_eq!(
            find_block_references(&template),
            vec![
                BlockRef::ById("b1".into()),
                BlockRef::ByName {
                    slug: "secret".into(),
                    name: "tok".into()
                },
                BlockRef::ByName {
                    slug: "webhook".into(),
                    name: "hook".into()
                },
            ]
        );
        assert_eq!(find_variable_references(&template), vec!["v".to_owned()]);
    }

    #[test]
    fn blocks_resolve_like_prefect() {
        let data = block_data();
        let table = [
            (json!({"key": "value"}), json!({"key": "value"})),
            (
                json!({"key": {"$ref": {"block_document_id": "b1"}}}),
                json!({"key": {"nested": {"value": "hello"}}}),
            ),
            (
                json!([{"$ref": {"block_document_id": "b1"}, "other": 1}]),
                json!([{"nested": {"value": "hello"}}]),
            ),
            (
                json!("{{ prefect.blocks.arbitraryblock.my-block }}"),
                json!({"a": 1, "b": "hello"}),
            ),
            (
                json!("prefix-{{ prefect.blocks.arbitraryblock.my-block.b }}-suffix"),
                json!("prefix-hello-suffix"),
            ),
            (
                json!("{{ prefect.blocks.arbitraryblock.my-block.a }}"),
                json!(1),
            ),
            (json!("{{ prefect.blocks.secret.tok }}"), json!("s3cr3t")),
            (
                json!("{{ prefect.blocks.secret.tok.value }}/my-image-name"),
                json!("s3cr3t/my-image-name"),
            ),
            (
                json!("{{ prefect.blocks.secret.nested.value.key }}"),
                json!({"nested-key": "nested-value"}),
            ),
            (
                json!("{{ prefect.blocks.secret.nested.value.key.nested-key }}"),
                json!("nested-value"),
            ),
            (
                json!("{{ prefect.blocks.secret.nested.value.list[0].list-key }}"),
                json!("list-value"),
            ),
            (
                json!("{{ prefect.blocks.secret.nested.list.-1 }}"),
                json!(2),
            ),
            (
                json!("{{ standard }}/{{ prefect.blocks.arbitraryblock.my-block.b }}"),
                json!("{{ standard }}/hello"),
            ),
            (
                json!("{{ prefect.blocks.webhook.hook.url }}"),
                json!("https://example.com"),
            ),
            (
                json!({"key": "{{ standard_placeholder }}"}),
                json!({"key": "{{ standard_placeholder }}"}),
            ),
            (json!([3, null, true]), json!([3, null, true])),
        ];
        for (template, expected) in table {
            assert_eq!(
                resolve_block_document_references(&template, &data),
                Ok(expected),
                "{template}"
            );
        }
    }

    #[test]
    fn block_errors() {
        let data = block_data();
        let table = [
            (
                json!("{{ prefect.blocks.only-type }}"),
                "invalid block placeholder format: 'prefect.blocks.only-type'; expected prefect.blocks.<block-type-slug>.<block-document-name>",
            ),
            (
                json!({"block_ref": "{{ prefect.blocks.aws-credentials.nonexistent-block }}"}),
                "block not found: 'nonexistent-block' of type 'aws-credentials'; it is referenced by the deployment or work pool configuration but does not exist",
            ),
            (
                json!({"block_ref": {"$ref": {"block_document_id": "nope"}}}),
                "block not found: id 'nope'; it is referenced by the deployment or work pool configuration but does not exist",
            ),
            (
                json!("{{ prefect.blocks.webhook.hook.missing }}"),
                "invalid template: \"{{ prefect.blocks.webhook.hook.missing }}\"; could not resolve the keypath of '{{ prefect.blocks.webhook.hook.missing }}' in the block document data",
            ),
            (
                json!("{{ prefect.blocks.arbitraryblock.my-block }} extra text"),
                "invalid template: \"{{ prefect.blocks.arbitraryblock.my-block }} extra text\"; block placeholder '{{ prefect.blocks.arbitraryblock.my-block }}' resolved to a dict, which cannot be used for inline string substitution; resolve a scalar attribute instead (e.g. '.value' or '.url')",
            ),
        ];
        for (template, message) in table {
            let err = resolve_block_document_references(&template, &data).expect_err("fails");
            assert_eq!(err.to_string(), message);
        }
        assert!(matches!(
            resolve_block_document_references(
                &json!("x {{ prefect.blocks.secret.nested.value.list }}"),
                &data
            ),
            Err(TemplateError::NonScalarInline { kind: "list", .. })
        ));
    }

    #[test]
    fn blocks_and_variables_are_read_once_per_resolution() {
        let data = CountingData {
            inner: block_data().with_variable("my_var", json!({"key": "val"})),
            calls: RefCell::new(Vec::new()),
        };
        let template = json!({
            "full": "{{ prefect.blocks.arbitraryblock.my-block }}",
            "inline": "prefix-{{ prefect.blocks.arbitraryblock.my-block.b }}-suffix",
            "first": {"$ref": {"block_document_id": "b1"}},
            "second": {"$ref": {"block_document_id": "b1"}}
        });
        let resolved = resolve_block_document_references(&template, &data).unwrap();
        assert_eq!(resolved["inline"], json!("prefix-hello-suffix"));
        assert_eq!(
            *data.calls.borrow(),
            ["name:arbitraryblock/my-block", "id:b1"]
        );

        data.calls.borrow_mut().clear();
        let template = json!({
            "full": "{{ prefect.variables.my_var }}",
            "inline": "prefix-{{ prefect.variables.my_var }}-suffix",
            "missing_full": "{{ prefect.variables.gone }}",
            "missing_inline": "x{{ prefect.variables.gone }}y",
            "nested": {"repeat": "{{ prefect.variables.my_var }}", "other": "{{ prefect.variables.gone }}"}
        });
        assert_eq!(
            resolve_variables(&template, &data),
            json!({
                "full": {"key": "val"},
                "inline": "prefix-{'key': 'val'}-suffix",
                "missing_full": "",
                "missing_inline": "xy",
                "nested": {"repeat": {"key": "val"}, "other": ""}
            })
        );
        assert_eq!(*data.calls.borrow(), ["var:my_var", "var:gone"]);
    }

    #[test]
    fn variables_resolve_like_prefect() {
        let data = PrefetchedData::default()
            .with_variable("v1", json!("test_value_1"))
            .with_variable("v2", json!("test_value_2"))
            .with_variable("n", Value::Null)
            .with_variable("i", json!(3));
        let table = [
            (
                json!("This is a simple string."),
                json!("This is a simple string."),
            ),
            (
                json!("placeholder: {{ prefect.variables.v1 }}."),
                json!("placeholder: test_value_1."),
            ),
            (
                json!("{{ prefect.variables.v1 }} - {{ prefect.variables.v2 }}"),
                json!("test_value_1 - test_value_2"),
            ),
            (
                json!({"k": "v", "k2": "{{ prefect.variables.v1 }}", "k3": {"k4": "{{ prefect.variables.v2 }}"}}),
                json!({"k": "v", "k2": "test_value_1", "k3": {"k4": "test_value_2"}}),
            ),
            (
                json!(["value1", "{{ prefect.variables.v1 }}", 42]),
                json!(["value1", "test_value_1", 42]),
            ),
            (json!(42), json!(42)),
            (json!("{{ prefect.variables.missing_variable }}"), json!("")),
            (
                json!("{{ prefect.variables.missing_1 }} - {{ prefect.variables.missing_2 }}"),
                json!(" - "),
            ),
            (json!("{{ prefect.variables.n }}"), json!(null)),
            (json!("n={{ prefect.variables.n }}"), json!("n=None")),
            (
                json!("{{ prefect.variables.i }}{{prefect.variables.i}}"),
                json!("33"),
            ),
            (
                json!({"key": "{{ another }}", "key2": "{{ prefect.blocks.a.b }}", "key3": "{{ $another }}"}),
                json!({"key": "{{ another }}", "key2": "{{ prefect.blocks.a.b }}", "key3": "{{ $another }}"}),
            ),
        ];
        for (template, expected) in table {
            assert_eq!(resolve_variables(&template, &data), expected, "{template}");
        }
    }
}
