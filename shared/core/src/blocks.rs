//! Blocks: the checksum that identifies a block schema, secret fields hidden on read and kept
//! when a client sends the hidden form back, and the naming rules.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What a secret value reads as without `include_secrets` (Prefect's mask).
pub const OBFUSCATED: &str = "********";

/// `lowercase letters, numbers and dashes` (block type slugs, block document names, artifact
/// keys).
#[must_use]
pub fn is_slug(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The checksum Prefect's client and server give a block schema: `sha256:` and the digest of
/// the schema without its `secret_fields` keys and without definitions nothing uses (or that are
/// blocks, or empty), serialised as Python's `json.dumps(((fields,), {}), sort_keys=True)`.
#[must_use]
pub fn schema_checksum(fields: &Value) -> String {
    let mut fields = fields.clone();
    strip_key(&mut fields, "secret_fields");
    prune_definitions(&mut fields);
    let mut text = String::new();
    write_python_json(
        &Value::Array(vec![Value::Array(vec![fields]), Value::Object(Map::new())]),
        &mut text,
    );
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn strip_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| strip_key(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_key(v, key)),
        _ => {}
    }
}

/// `#/definitions/<name>` references anywhere in `value`, in document order.
pub fn definition_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix("#/definitions/") {
                            out.push(name.to_owned());
                        }
                    }
                    _ => definition_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| definition_refs(v, out)),
        _ => {}
    }
}

/// Keeps the definitions that something in the schema refers to (the definitions included,
/// blocks' among them: a nested block's own models count) and that are neither blocks nor
/// empty; drops `definitions` when none is left. This is Prefect's rule: a narrower one gives
/// a nested block type (S3Bucket, whose AwsCredentials refers to AwsClientParameters) another
/// checksum than its client computes.
fn prune_definitions(fields: &mut Value) {
    let mut referred = Vec::new();
    definition_refs(fields, &mut referred);
    let Some(map) = fields.as_object_mut() else {
        return;
    };
    let Some(Value::Object(definitions)) = map.remove("definitions") else {
        return;
    };
    let kept: Map<String, Value> = definitions
        .into_iter()
        .filter(|(name, d)| {
            referred.contains(name)
                && d.as_object()
                    .is_some_and(|o| !o.is_empty() && !o.contains_key("block_type_slug"))
        })
        .collect();
    if !kept.is_empty() {
        map.insert("definitions".to_owned(), Value::Object(kept));
    }
}

/// Python's `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, keys sorted,
/// non-ASCII escaped as `\uXXXX`.
fn write_python_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_python_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(k, out);
                out.push_str(": ");
                write_python_json(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)` for the values schemas hold (`1.0`, `0.5`, `1e-05`).
fn python_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        let s = format!("{f}");
        if s.contains('e') || s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The top-level fields of a document's data that point at another document, as Prefect's
/// client sends a nested block that was saved: `{"$ref": {"block_document_id": "<id>"}}`.
/// Only top-level fields are references (so Prefect's server reads them too).
pub fn references(data: &Value) -> Result<Vec<(String, uuid::Uuid)>, String> {
    let Some(map) = data.as_object() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, value) in map {
        let Some(target) = value.as_object().and_then(|o| o.get("$ref")) else {
            continue;
        };
        let id = target
            .get("block_document_id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("data.{key}: a block reference needs a block_document_id"))?;
        let id = uuid::Uuid::parse_str(id)
            .map_err(|_| format!("data.{key}: block_document_id {id:?} is not a UUID"))?;
        out.push((key.clone(), id));
    }
    Ok(out)
}

/// The schema's `secret_fields`: dotted paths, a `*` segment standing for every key there.
#[must_use]
pub fn secret_paths(fields: &Value) -> Vec<String> {
    let mut paths: Vec<String> = fields
        .get("secret_fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    paths.dedup();
    paths
}

/// Every non-null value at a secret path, replaced by [`OBFUSCATED`]. Paths walk objects;
/// `*` matches every key at its level.
#[must_use]
pub fn obfuscate(data: &Value, secret_paths: &[String]) -> Value {
    let mut out = data.clone();
    for path in secret_paths {
        let segments: Vec<&str> = path.split('.').collect();
        mask(&mut out, &segments);
    }
    out
}

fn mask(value: &mut Value, path: &[&str]) {
    let Some((head, rest)) = path.split_first() else {
        if !value.is_null() {
            *value = Value::String(OBFUSCATED.to_owned());
        }
        return;
    };
    let Some(map) = value.as_object_mut() else {
        return;
    };
    if *head == "*" {
        map.values_mut().for_each(|v| mask(v, rest));
    } else if let Some(v) = map.get_mut(*head) {
        mask(v, rest);
    }
}

/// `new` with every [`OBFUSCATED`] value at a secret path replaced by what `old` holds there:
/// a client that read a block without its secrets and sends it back does not erase them.
#[must_use]
pub fn keep_secrets(new: &Value, old: &Value, secret_paths: &[String]) -> Value {
    let mut out = new.clone();
    for path in secret_paths {
        let segments: Vec<&str> = path.split('.').collect();
        restore(&mut out, Some(old), &segments);
    }
    out
}

fn restore(new: &mut Value, old: Option<&Value>, path: &[&str]) {
    let Some((head, rest)) = path.split_first() else {
        if new.as_str() == Some(OBFUSCATED)
            && let Some(previous) = old
        {
            *new = previous.clone();
        }
        return;
    };
    let Some(map) = new.as_object_mut() else {
        return;
    };
    if *head == "*" {
        for (k, v) in map.iter_mut() {
            restore(v, old.and_then(|o| o.get(k)), rest);
        }
    } else if let Some(v) = map.get_mut(*head) {
        restore(v, old.and_then(|o| o.get(*head)), rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_top_level_ref_fields_with_a_document_id() {
        let id = "4d839dde-2f5d-459a-81b0-91d74d814354";
        let data = json!({
            "bucket_name": "data",
            "credentials": {"$ref": {"block_document_id": id}},
            "nested": {"inner": {"$ref": {"block_document_id": id}}},
        });
        assert_eq!(
            references(&data).expect("well-formed"),
            [(
                "credentials".to_owned(),
                uuid::Uuid::parse_str(id).expect("uuid")
            )]
        );
        let bad = references(&json!({"c": {"$ref": {}}})).expect_err("no id");
        assert!(bad.contains("data.c"), "{bad}");
        assert!(references(&json!({"c": {"$ref": {"block_document_id": "x"}}})).is_err());
        assert!(references(&json!("plain")).expect("no refs").is_empty());
    }

    #[test]
    fn slugs_are_lowercase_digits_and_dashes() {
        assert!(is_slug("aws-credentials-2"));
        assert!(is_slug(""));
        assert!(!is_slug("AWS"));
        assert!(!is_slug("a_b"));
        assert!(!is_slug("a b"));
    }

    #[test]
    fn python_json_matches_json_dumps_with_sorted_keys() {
        let mut s = String::new();
        write_python_json(
            &json!({"b": [1, 2.5, true, null], "a": "é\n\"x\"", "c": 1.0, "d": "😀"}),
            &mut s,
        );
        assert_eq!(
            s,
            r#"{"a": "\u00e9\n\"x\"", "b": [1, 2.5, true, null], "c": 1.0, "d": "\ud83d\ude00"}"#
        );
    }

    #[test]
    fn checksums_ignore_secret_fields_and_unused_definitions() {
        let base = json!({
            "title": "Creds", "type": "object",
            "properties": {"key": {"type": "string"}, "opts": {"$ref": "#/definitions/Opts"}},
            "definitions": {
                "Opts": {"type": "object", "properties": {"x": {"type": "integer"}}},
                "Unused": {"type": "object"},
                "Empty": {},
                "Nested": {"block_type_slug": "other", "type": "object"}
            }
        });
        let mut with_secrets = base.clone();
        with_secrets["secret_fields"] = json!(["key"]);
        let mut pruned = base.clone();
        pruned["definitions"] = json!({"Opts": base["definitions"]["Opts"].clone()});
        assert_eq!(schema_checksum(&base), schema_checksum(&with_secrets));
        assert_eq!(schema_checksum(&base), schema_checksum(&pruned));
        let mut changed = base.clone();
        changed["title"] = json!("Other");
        assert_ne!(schema_checksum(&base), schema_checksum(&changed));
        assert!(schema_checksum(&base).starts_with("sha256:"));
        assert_eq!(schema_checksum(&base).len(), "sha256:".len() + 64);
    }

    /// A block whose field takes one of two block types, one of which refers to a plain model:
    /// its schema and checksum as Prefect 3.9.1's client computes them
    /// (`Outer.model_json_schema()`, `Outer._calculate_schema_checksum()`). `Params` is only
    /// referred to from inside the `InnerCreds` block definition, and still counts.
    #[test]
    fn a_nested_block_schema_has_the_clients_checksum() {
        let fields = json!({
            "block_schema_references": {"creds": [
                {"block_schema_checksum": "sha256:590b41dcdd48830750cac00670bfb11354e505b25355082aa93901ac2569ff5c", "block_type_slug": "othercreds"},
                {"block_schema_checksum": "sha256:ea54c2adf4a38b0f78d55b7c812c1a205bd241622234cc09e027a4722a73073a", "block_type_slug": "innercreds"}
            ]},
            "block_type_slug": "outer",
            "properties": {
                "creds": {"anyOf": [{"$ref": "#/definitions/OtherCreds"}, {"$ref": "#/definitions/InnerCreds"}], "title": "Creds", "position": 0},
                "name": {"default": "n", "title": "Name", "type": "string", "position": 1}
            },
            "required": ["creds"], "secret_fields": [], "title": "Outer", "type": "object",
            "definitions": {
                "InnerCreds": {"block_schema_references": {}, "block_type_slug": "innercreds",
                    "properties": {
                        "params": {"$ref": "#/definitions/Params", "default": {"retries": 3}, "position": 0},
                        "token": {"default": "x", "title": "Token", "type": "string", "position": 1}
                    },
                    "secret_fields": [], "title": "InnerCreds", "type": "object"},
                "OtherCreds": {"block_schema_references": {}, "block_type_slug": "othercreds",
                    "properties": {"key": {"default": "k", "title": "Key", "type": "string", "position": 0}},
                    "secret_fields": [], "title": "OtherCreds", "type": "object"},
                "Params": {"properties": {"retries": {"default": 3, "title": "Retries", "type": "integer"}},
                    "title": "Params", "type": "object"}
            }
        });
        assert_eq!(
            schema_checksum(&fields),
            "sha256:e333847b810ca1d2ee406c39210857b324d091a9359e5982af06b6a20e99e517"
        );
    }

    #[test]
    fn secrets_are_masked_and_kept_when_sent_back_masked() {
        let paths = vec![
            "value".to_owned(),
            "headers.*".to_owned(),
            "creds.password".to_owned(),
        ];
        let data = json!({
            "value": "s3cr3t", "headers": {"a": "1", "b": "2"},
            "creds": {"user": "u", "password": "p"}, "plain": "x", "none": null
        });
        let masked = obfuscate(&data, &paths);
        assert_eq!(
            masked,
            json!({
                "value": OBFUSCATED, "headers": {"a": OBFUSCATED, "b": OBFUSCATED},
                "creds": {"user": "u", "password": OBFUSCATED}, "plain": "x", "none": null
            })
        );
        assert_eq!(
            obfuscate(&json!({"value": null}), &paths),
            json!({"value": null}),
            "null is not a secret"
        );
        let mut sent = masked.clone();
        sent["creds"]["user"] = json!("v");
        sent["headers"]["b"] = json!("new");
        let kept = keep_secrets(&sent, &data, &paths);
        assert_eq!(
            kept,
            json!({
                "value": "s3cr3t", "headers": {"a": "1", "b": "new"},
                "creds": {"user": "v", "password": "p"}, "plain": "x", "none": null
            })
        );
    }

    #[test]
    fn secret_paths_come_from_the_schema_once() {
        let fields = json!({"secret_fields": ["value", "value", "a.b"]});
        assert_eq!(secret_paths(&fields), ["value", "a.b"]);
        assert!(secret_paths(&json!({})).is_empty());
    }
}
