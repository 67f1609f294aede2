//! Differential cases: `tests/data/prefect_templating_cases.json` holds inputs with the outputs
//! Prefect's own templating functions produced for them (see the file's `about`). Sluice must
//! produce the same outputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_core::templating::{
    ApplyOptions, PrefetchedData, TemplateError, apply_values_opt, python_str,
    resolve_block_document_references, resolve_variables,
};

fn cases() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/prefect_templating_cases.json"
    );
    let text = std::fs::read_to_string(path).expect("read cases");
    serde_json::from_str(&text).expect("parse cases")
}

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn python_str_matches_python() {
    let all = cases();
    let table = all["python_str"].as_array().unwrap();
    assert!(table.len() > 50);
    for case in table {
        let input: Value = serde_json::from_str(case["json"].as_str().unwrap()).unwrap();
        // serde_json cannot hold integers beyond u64/i64 exactly; none are in the table.
        assert_eq!(
            python_str(&input),
            case["str"].as_str().unwrap(),
            "str({})",
            case["json"]
        );
    }
}

#[test]
fn apply_values_matches_prefect() {
    let all = cases();
    let shared = obj(&all["apply_values"]["shared_values"]);
    let list = all["apply_values"]["cases"].as_array().unwrap();
    assert!(list.len() > 400);
    for (i, case) in list.iter().enumerate() {
        let values = case.get("values").map_or_else(|| shared.clone(), obj);
        let env: BTreeMap<String, String> = obj(&case["env"])
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect();
        let opts = ApplyOptions {
            remove_notset: case["remove_notset"].as_bool().unwrap(),
            skip_prefixes: case["skip_prefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect(),
            env: &env,
        };
        let got = apply_values_opt(&case["template"], &values, &opts);
        let expected = if case.get("notset").is_some() {
            None
        } else {
            Some(case["value"].clone())
        };
        assert_eq!(got, expected, "case {i}: template {}", case["template"]);
    }
}

#[test]
fn block_resolution_matches_prefect() {
    let all = cases();
    let blocks = &all["blocks"];
    let mut data = PrefetchedData::default();
    for (key, value) in obj(&blocks["by_name"]) {
        let (slug, name) = key.split_once('/').unwrap();
        data = data.with_block(slug, name, value);
    }
    for (id, value) in obj(&blocks["by_id"]) {
        data = data.with_block_id(id, value);
    }
    for case in blocks["cases"].as_array().unwrap() {
        let got = resolve_block_document_references(&case["template"], &data);
        match case.get("error").and_then(Value::as_str) {
            None => assert_eq!(
                got.as_ref().ok(),
                Some(&case["value"]),
                "{}",
                case["template"]
            ),
            Some(kind) => {
                let err = got.expect_err(&case["template"].to_string());
                let matches = match kind {
                    "not_found" => matches!(
                        err,
                        TemplateError::BlockNotFoundById { .. }
                            | TemplateError::BlockNotFoundByName { .. }
                    ),
                    "invalid_placeholder" => {
                        matches!(err, TemplateError::InvalidBlockPlaceholder { .. })
                    }
                    "non_scalar" => matches!(err, TemplateError::NonScalarInline { .. }),
                    "keypath" => matches!(err, TemplateError::UnresolvableKeypath { .. }),
                    other => panic!("unknown error kind {other}"),
                };
                assert!(
                    matches,
                    "{}: expected {kind}, got {err:?}",
                    case["template"]
                );
            }
        }
    }
}

#[test]
fn variable_resolution_matches_prefect() {
    let all = cases();
    let vars = &all["variables"];
    let data = obj(&vars["variables"])
        .into_iter()
        .fold(PrefetchedData::default(), |d, (k, v)| d.with_variable(k, v));
    for case in vars["cases"].as_array().unwrap() {
        assert_eq!(
            resolve_variables(&case["template"], &data),
            case["value"],
            "{}",
            case["template"]
        );
    }
}
