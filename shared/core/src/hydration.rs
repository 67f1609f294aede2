//! Prefect's parameter hydration (`prefect.utilities.schema_tools.hydration`): the UI sends a
//! parameter it could not express as plain JSON as `{"__prefect_kind": KIND, ...}`, and the
//! server turns it into the value before a run gets it or a form is validated.
//!
//! - `none`: its `value`, hydrated in turn.
//! - `json`: its `value` parsed as JSON (a value that is not a string is kept as is); without a
//!   `value` the entry is dropped from its parent.
//! - `workspace_variable`: the value of the variable `variable_name`; without a name the entry
//!   is dropped.
//! - `jinja`: a template. Sluice does not render templates: a run refuses one (400) and the
//!   form check lets it through unchecked, as Prefect does when it does not render.
//! - any other kind: its `value` (null when absent).
//!
//! A failure is a placeholder at its path (Prefect's `HydrationError`), which the form check
//! reports and a run refuses.

use serde_json::{Map, Value};

const KIND: &str = "__prefect_kind";

/// One step of a path into the parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    Property(String),
    Index(usize),
}

/// What hydration left at a path instead of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// A failure, with Prefect's message (`Invalid JSON: ...`, `Variable 'x' not found in
    /// workspace.`, `Missing 'value' key in __prefect object`).
    Error(String),
    /// A template left unrendered: valid, not checked against the schema.
    Template,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hydrated {
    /// The values, placeholders standing as null.
    pub value: Value,
    pub placeholders: Vec<(Vec<PathPart>, Placeholder)>,
}

impl Hydrated {
    /// The first failure, as Prefect's `raise_on_error` raises it.
    pub fn first_error(&self) -> Option<&str> {
        self.placeholders.iter().find_map(|(_, p)| match p {
            Placeholder::Error(message) => Some(message.as_str()),
            Placeholder::Template => None,
        })
    }

    /// Whether a template was left in (a run cannot take one).
    pub fn has_template(&self) -> bool {
        self.placeholders
            .iter()
            .any(|(_, p)| *p == Placeholder::Template)
    }
}

/// The workspace variables `values` names (so a caller can read them before hydrating).
pub fn variable_names(values: &Value) -> Vec<String> {
    let mut names = Vec::new();
    collect_names(values, &mut names);
    names
}

fn collect_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.get(KIND).and_then(Value::as_str) == Some("workspace_variable")
                && let Some(Value::String(name)) = map.get("variable_name")
                && !names.contains(name)
            {
                names.push(name.clone());
            }
            map.values().for_each(|v| collect_names(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

enum Out {
    Value(Value),
    Remove,
    Placeholder(Placeholder),
}

struct Ctx<'a> {
    variable: &'a dyn Fn(&str) -> Option<Value>,
    placeholders: Vec<(Vec<PathPart>, Placeholder)>,
}

/// Hydrates the parameters `values`; `variable` looks a workspace variable up by name.
pub fn hydrate(values: &Map<String, Value>, variable: &dyn Fn(&str) -> Option<Value>) -> Hydrated {
    let mut ctx = Ctx {
        variable,
        placeholders: Vec::new(),
    };
    let mut path = Vec::new();
    let value = match walk(&Value::Object(values.clone()), &mut ctx, &mut path) {
        Out::Value(v) => v,
        // A root that hydrates to nothing, or to a placeholder, is an empty object in Prefect.
        Out::Remove | Out::Placeholder(_) => Value::Object(Map::new()),
    };
    Hydrated {
        value,
        placeholders: ctx.placeholders,
    }
}

fn walk(value: &Value, ctx: &mut Ctx<'_>, path: &mut Vec<PathPart>) -> Out {
    match value {
        Value::Object(map) if map.contains_key(KIND) => kind(map, ctx, path),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                path.push(PathPart::Property(key.clone()));
                match walk(item, ctx, path) {
                    Out::Value(v) => {
                        out.insert(key.clone(), v);
                    }
                    Out::Remove => {}
                    Out::Placeholder(p) => {
                        ctx.placeholders.push((path.clone(), p));
                        out.insert(key.clone(), Value::Null);
                    }
                }
                path.pop();
            }
            Out::Value(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                // Indexes count what is kept, as in the list Prefect builds.
                path.push(PathPart::Index(out.len()));
                match walk(item, ctx, path) {
                    Out::Value(v) => out.push(v),
                    Out::Remove => {}
                    Out::Placeholder(p) => {
                        ctx.placeholders.push((path.clone(), p));
                        out.push(Value::Null);
                    }
                }
                path.pop();
            }
            Out::Value(Value::Array(out))
        }
        other => Out::Value(other.clone()),
    }
}

/// The inner field of a kind, hydrated when it is itself an object.
fn inner(field: &Value, ctx: &mut Ctx<'_>, path: &mut Vec<PathPart>) -> Out {
    if field.is_object() {
        walk(field, ctx, path)
    } else {
        Out::Value(field.clone())
    }
}

fn kind(map: &Map<String, Value>, ctx: &mut Ctx<'_>, path: &mut Vec<PathPart>) -> Out {
    let missing = |key: &str| {
        Out::Placeholder(Placeholder::Error(format!(
            "Missing '{key}' key in __prefect object"
        )))
    };
    match map.get(KIND).and_then(Value::as_str) {
        Some("none") => match map.get("value") {
            Some(v) => walk(v, ctx, path),
            None => missing("value"),
        },
        Some("json") => match map.get("value") {
            None => Out::Remove,
            Some(v) => match inner(v, ctx, path) {
                Out::Value(Value::String(text)) => match serde_json::from_str(&text) {
                    Ok(parsed) => Out::Value(parsed),
                    Err(e) => Out::Placeholder(Placeholder::Error(format!("Invalid JSON: {e}"))),
                },
                other => other,
            },
        },
        Some("workspace_variable") => match map.get("variable_name") {
            None => Out::Remove,
            Some(v) => match inner(v, ctx, path) {
                Out::Value(name) => {
                    let name = match &name {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match (ctx.variable)(&name) {
                        Some(found) => Out::Value(found),
                        None => Out::Placeholder(Placeholder::Error(format!(
                            "Variable '{name}' not found in workspace."
                        ))),
                    }
                }
                other => other,
            },
        },
        Some("jinja") => match map.get("template") {
            None => missing("template"),
            Some(v) => match inner(v, ctx, path) {
                Out::Value(_) => Out::Placeholder(Placeholder::Template),
                other => other,
            },
        },
        _ => Out::Value(map.get("value").cloned().unwrap_or(Value::Null)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(values: &Value) -> Hydrated {
        let vars = |name: &str| (name == "region").then(|| json!("eu-west-1"));
        hydrate(values.as_object().expect("an object"), &vars)
    }

    #[test]
    fn kinds_become_values() {
        let h = run(&json!({
            "plain": 1,
            "from_json": {"__prefect_kind": "json", "value": "{\"a\": [1, 2]}"},
            "not_a_string": {"__prefect_kind": "json", "value": 5},
            "wrapped": {"__prefect_kind": "none", "value": {"__prefect_kind": "json", "value": "true"}},
            "var": {"__prefect_kind": "workspace_variable", "variable_name": "region"},
            "dropped": {"__prefect_kind": "json"},
            "list": [{"__prefect_kind": "workspace_variable"}, {"__prefect_kind": "json", "value": "3"}],
            "other": {"__prefect_kind": "something", "value": "kept"}
        }));
        assert_eq!(
            h.value,
            json!({
                "plain": 1, "from_json": {"a": [1, 2]}, "not_a_string": 5, "wrapped": true,
                "var": "eu-west-1", "list": [3], "other": "kept"
            })
        );
        assert!(h.placeholders.is_empty());
        assert_eq!(
            variable_names(
                &json!({"a": [{"__prefect_kind": "workspace_variable", "variable_name": "region"}]})
            ),
            ["region"]
        );
    }

    #[test]
    fn form_errors_nest_as_prefect_reports_them() {
        let schema = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}},
                "cfg": {"type": "object"}
            },
            "required": ["n"]
        });
        let ok = crate::schema::validate_form(&schema, &run(&json!({"n": 3}))).expect("a schema");
        assert_eq!(ok, json!({"errors": [], "valid": true}));
        let bad = run(&json!({
            "items": [{"x": "fine"}, {}],
            "cfg": {"__prefect_kind": "json", "value": "{"}
        }));
        let answer = crate::schema::validate_form(&schema, &bad).expect("a schema");
        assert_eq!(answer["valid"], false);
        let errors = answer["errors"].as_array().expect("errors");
        let under = |key: &str| {
            errors
                .iter()
                .find(|e| e["property"] == key)
                .unwrap_or_else(|| panic!("no {key} in {answer}"))
                .clone()
        };
        assert_eq!(under("n")["errors"].as_array().map(Vec::len), Some(1));
        assert_eq!(under("items")["errors"][0]["index"], 1);
        assert_eq!(under("items")["errors"][0]["errors"][0]["property"], "x");
        let cfg = under("cfg")["errors"][0]
            .as_str()
            .expect("a message")
            .to_owned();
        assert!(cfg.starts_with("Invalid JSON"), "{cfg}");
        let tpl = run(&json!({"n": {"__prefect_kind": "jinja", "template": "{{ x }}"}}));
        let answer = crate::schema::validate_form(&schema, &tpl).expect("a schema");
        assert_eq!(answer["valid"], true, "a template is not checked: {answer}");
        assert!(crate::schema::validate_form(&json!({"type": 5}), &tpl).is_err());
    }

    #[test]
    fn failures_are_placeholders_at_their_path() {
        let h = run(&json!({
            "bad": {"__prefect_kind": "json", "value": "{nope"},
            "nested": [{"x": {"__prefect_kind": "workspace_variable", "variable_name": "gone"}}],
            "tpl": {"__prefect_kind": "jinja", "template": "{{ 1 + 1 }}"},
            "no_value": {"__prefect_kind": "none"}
        }));
        assert_eq!(h.value["bad"], Value::Null);
        let at = |parts: &[PathPart]| {
            h.placeholders
                .iter()
                .find(|(p, _)| p.as_slice() == parts)
                .map(|(_, p)| p.clone())
        };
        assert!(matches!(
            at(&[PathPart::Property("bad".into())]),
            Some(Placeholder::Error(m)) if m.starts_with("Invalid JSON")
        ));
        assert_eq!(
            at(&[
                PathPart::Property("nested".into()),
                PathPart::Index(0),
                PathPart::Property("x".into())
            ]),
            Some(Placeholder::Error(
                "Variable 'gone' not found in workspace.".into()
            ))
        );
        assert_eq!(
            at(&[PathPart::Property("tpl".into())]),
            Some(Placeholder::Template)
        );
        assert_eq!(
            at(&[PathPart::Property("no_value".into())]),
            Some(Placeholder::Error(
                "Missing 'value' key in __prefect object".into()
            ))
        );
        assert!(h.has_template());
        assert!(h.first_error().is_some());
    }
}
