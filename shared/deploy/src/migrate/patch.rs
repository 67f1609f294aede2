//! The JSON Patch (RFC 6902) operations ECSTask customizations use: `add`, `remove`, `replace`,
//! plus `test`, `move` and `copy`.

use serde_json::{Map, Value};

/// Escapes one JSON Pointer segment (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn segments(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("path {pointer:?} must start with '/'"));
    };
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index(segment: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && segment == "-" {
        return Ok(len);
    }
    let i: usize = segment
        .parse()
        .map_err(|_| format!("{segment:?} is not a list index"))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("list index {i} is out of range"));
    }
    Ok(i)
}

fn parent<'a>(doc: &'a mut Value, path: &[String], full: &str) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(seg)
                .ok_or_else(|| format!("{full}: no member {seg:?}"))?,
            Value::Array(a) => {
                let i = index(seg, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(format!("{full}: {seg:?} is below a scalar")),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segs = segments(path)?;
    let Some((last, init)) = segs.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => return Err(format!("{path}: the parent is not a container")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let segs = segments(path)?;
    let Some((last, init)) = segs.split_last() else {
        return Err("cannot remove the whole document".to_owned());
    };
    match parent(doc, init, path)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("{path}: no member {last:?}")),
        Value::Array(a) => {
            let i = index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("{path}: the parent is not a container")),
    }
}

fn get(doc: &Value, path: &str) -> Result<Value, String> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| format!("{path}: not found"))
}

/// Applies `patches` in order; on error `doc` may be partly patched (callers patch a copy).
pub fn apply_patch(doc: &mut Value, patches: &[Value]) -> Result<(), String> {
    for (n, p) in patches.iter().enumerate() {
        let field = |k: &str| p.get(k).and_then(Value::as_str);
        let (Some(op), Some(path)) = (field("op"), field("path")) else {
            return Err(format!("patch #{n} needs `op` and `path`"));
        };
        let value = || {
            p.get("value")
                .cloned()
                .ok_or_else(|| format!("patch #{n} ({op} {path}) needs a `value`"))
        };
        match op {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                let v = value()?;
                remove(doc, path)?;
                add(doc, path, v)?;
            }
            "test" => {
                if get(doc, path)? != value()? {
                    return Err(format!("patch #{n}: test of {path} failed"));
                }
            }
            "move" | "copy" => {
                let from =
                    field("from").ok_or_else(|| format!("patch #{n} ({op}) needs `from`"))?;
                let v = if op == "move" {
                    remove(doc, from)?
                } else {
                    get(doc, from)?
                };
                add(doc, path, v)?;
            }
            other => return Err(format!("patch #{n}: unknown op {other:?}")),
        }
    }
    Ok(())
}

/// The smallest document the patches can apply to: the parents of every path as mappings, and
/// for `replace`/`remove` the target itself (null), as prefect-aws's
/// `assemble_document_for_patches` does.
pub(crate) fn assemble_document(patches: &[Value]) -> Value {
    let mut doc = Map::new();
    for p in patches {
        let op = p.get("op").and_then(Value::as_str).unwrap_or_default();
        let Some(Ok(segs)) = p.get("path").and_then(Value::as_str).map(segments) else {
            continue;
        };
        let Some((last, init)) = segs.split_last() else {
            continue;
        };
        let mut cur = &mut doc;
        for seg in init {
            cur = descend(cur, seg);
        }
        if matches!(op, "replace" | "remove") {
            cur.entry(last.clone()).or_insert(Value::Null);
        }
    }
    Value::Object(doc)
}

/// The mapping at `m[seg]`, made (or made a mapping) if needed.
pub(crate) fn descend<'a>(m: &'a mut Map<String, Value>, seg: &str) -> &'a mut Map<String, Value> {
    let slot = m
        .entry(seg.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(next) => next,
        _ => unreachable!("made a mapping just above"),
    }
}
