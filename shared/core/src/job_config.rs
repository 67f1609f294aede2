//! Building a job configuration from a base job template and job variables.
//!
//! This follows Prefect's `BaseJobConfiguration.from_template_and_values` and
//! `resolve_for_flow_run` (`src/prefect/workers/base.py`): template defaults, then deployment
//! job variables, then flow-run job variables, with `env` merged per key. Blocks and variables
//! come from a [`TemplateData`] the caller filled beforehand (see [`data_references`]).

use serde_json::{Map, Value};

use crate::templating::{
    self, ApplyOptions, BlockRef, EnvSource, TemplateData, TemplateError, python_str, python_truthy,
};

/// Errors while building a job configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobConfigError {
    /// The base job template has no `job_configuration` object.
    #[error("the base job template has no 'job_configuration' object")]
    MissingJobConfiguration,
    /// A dotted job variable goes through a key that already holds a non-object value.
    #[error(
        "job variable '{key}' sets a path through '{parent}', which holds a value that is not an object"
    )]
    ConflictingPath {
        /// The dotted key.
        key: String,
        /// The segment that is not an object.
        parent: String,
    },
    /// An `env` that must be merged key by key is not an object.
    #[error("{source_name} must be an object to be merged into the job configuration's env")]
    EnvNotObject {
        /// Which `env` it was.
        source_name: &'static str,
    },
    /// Resolving a block reference failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// The defaults of a variables schema: every `properties.<name>.default` that is present and
/// not null (Prefect leaves null defaults out so the model's own defaults apply).
#[must_use]
pub fn variable_defaults(variables_schema: &Value) -> Map<String, Value> {
    let Some(properties) = variables_schema
        .get("properties")
        .and_then(Value::as_object)
    else {
        return Map::new();
    };
    properties
        .iter()
        .filter_map(|(name, attrs)| {
            let default = attrs.as_object()?.get("default")?;
            (!default.is_null()).then(|| (name.clone(), default.clone()))
        })
        .collect()
}

/// Recursively merges `over` into a copy of `base`: where both hold objects they are merged,
/// anywhere else the value from `over` wins.
#[must_use]
pub fn deep_merge(base: &Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut out = base.clone();
    for (key, value) in over {
        let merged = match (out.get(key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => Value::Object(deep_merge(a, b)),
            _ => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    out
}

/// Sets `value` at a dotted path (`[` counts as a dot, `]` is dropped), creating objects on the
/// way, as Prefect's `set_in_dict`.
fn set_at_path(
    root: &mut Map<String, Value>,
    key: &str,
    value: Value,
) -> Result<(), JobConfigError> {
    let path = key.replace('[', ".").replace(']', "");
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return Ok(());
    };
    let mut current = root;
    for parent in parents {
        let slot = current
            .entry((*parent).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        current = match slot {
            Value::Object(map) => map,
            _ => {
                return Err(JobConfigError::ConflictingPath {
                    key: key.to_owned(),
                    parent: (*parent).to_owned(),
                });
            }
        };
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

/// Expands dotted job variables (`"env.FOO": "bar"` → `{"env": {"FOO": "bar"}}`), then lays the
/// plain keys over them: deep-merged where both are objects (the plain key wins per leaf),
/// replacing otherwise.
///
/// # Errors
/// [`JobConfigError::ConflictingPath`] when a dotted key runs through a non-object value set by
/// an earlier dotted key (Prefect raises `TypeError` there).
pub fn normalize_job_variables(
    values: &Map<String, Value>,
) -> Result<Map<String, Value>, JobConfigError> {
    let mut out = Map::new();
    for (key, value) in values.iter().filter(|(k, _)| k.contains('.')) {
        set_at_path(&mut out, key, value.clone())?;
    }
    for (key, value) in values.iter().filter(|(k, _)| !k.contains('.')) {
        let merged = match (out.get(key), value) {
            (Some(Value::Object(dotted)), Value::Object(plain)) => {
                Value::Object(deep_merge(dotted, plain))
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    Ok(out)
}

/// Lays a flow run's job variables over its deployment's: `env` is merged per key with the run
/// winning; every other top-level key from the run replaces the deployment's.
///
/// Dotted keys are not special here; [`normalize_job_variables`] expands them later (so a run's
/// `"env.FOO"` loses to a deployment's `env.FOO`, as in Prefect). A run `env` that is not an
/// object replaces the deployment's (Prefect fails on it).
#[must_use]
pub fn merge_deployment_and_run_variables(
    deployment: &Map<String, Value>,
    run: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = deployment.clone();
    for (key, value) in run {
        let merged = match (key.as_str(), out.get(key), value) {
            ("env", Some(Value::Object(base)), Value::Object(over)) => {
                let mut env = base.clone();
                env.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(env)
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    out
}

/// Python's `dict | other` for the `env` merges, which require both sides to be objects.
fn env_union(
    base: &Map<String, Value>,
    over: &Value,
    source_name: &'static str,
) -> Result<Value, JobConfigError> {
    let over = over
        .as_object()
        .ok_or(JobConfigError::EnvNotObject { source_name })?;
    let mut env = base.clone();
    env.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Value::Object(env))
}

/// Renders a base job template with job variables, as Prefect's
/// `BaseJobConfiguration.from_template_and_values` before it builds the model:
///
/// 1. copy `job_configuration`; start the variables from the schema defaults (present, not null);
/// 2. a non-empty default `env` is merged into an object `job_configuration.env` (defaults win
///    on clashes) or replaces whatever `job_configuration.env` is;
/// 3. normalise `values` ([`normalize_job_variables`]) and lay them over the defaults, replacing
///    top-level keys;
/// 4. if `job_configuration.env` is an object and the variables' `env` is non-empty, merge it in
///    (job variables win);
/// 5. [`templating::apply_values`] with `env` for `{{ $NAME }}`, then resolve blocks, then
///    variables from `data`.
///
/// Apply [`finalize_base_fields`] to the result for the fields Prefect's model normalises.
///
/// # Errors
/// A template without `job_configuration`, a conflicting dotted key, an `env` that is not an
/// object where one must be merged, or a failed block resolution.
pub fn build_job_configuration(
    base_job_template: &Value,
    values: &Map<String, Value>,
    env: &dyn EnvSource,
    data: &dyn TemplateData,
) -> Result<Value, JobConfigError> {
    let mut config = base_job_template
        .get("job_configuration")
        .and_then(Value::as_object)
        .cloned()
        .ok_or(JobConfigError::MissingJobConfiguration)?;
    let schema = base_job_template.get("variables").unwrap_or(&Value::Null);
    let mut variables = variable_defaults(schema);

    if let Some(default_env) = variables.get("env").filter(|e| python_truthy(e)) {
        let merged = match config.get("env") {
            Some(Value::Object(current)) => {
                env_union(current, default_env, "the default of variable 'env'")?
            }
            _ => default_env.clone(),
        };
        config.insert("env".to_owned(), merged);
    }

    for (key, value) in normalize_job_variables(values)? {
        variables.insert(key, value);
    }

    if let (Some(Value::Object(current)), Some(job_env)) = (config.get("env"), variables.get("env"))
        && python_truthy(job_env)
    {
        let merged = env_union(current, job_env, "job variable 'env'")?;
        config.insert("env".to_owned(), merged);
    }

    let opts = ApplyOptions::with_env(env);
    let applied = templating::apply_values(&Value::Object(config), &variables, &opts);
    let with_blocks = templating::resolve_block_document_references(&applied, data)?;
    Ok(templating::resolve_variables(&with_blocks, data))
}

/// Normalises the fields every Prefect job configuration has (`BaseJobConfiguration`):
///
/// - `command`: missing, null or `""` becomes null;
/// - `env`: missing (or null) becomes `{}`; each value that is not null becomes a string with
///   Python's `str()` (`42` → `"42"`, `true` → `"True"`);
/// - `labels`: missing (or null) becomes `{}`;
/// - `name`: missing becomes null.
///
/// These four come first, in that order (the model's field order); every other key follows
/// unchanged. A non-object input is returned as it is. Prefect rejects a null `env` or `labels`;
/// Sluice reads them as empty.
#[must_use]
pub fn finalize_base_fields(config: Value) -> Value {
    let Value::Object(mut fields) = config else {
        return config;
    };
    let command = match fields.shift_remove("command") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(other) => other,
    };
    let env = match fields.shift_remove("env") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(env)) => Value::Object(
            env.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null | Value::String(_) => v,
                        other => Value::String(python_str(&other)),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Some(other) => other,
    };
    let labels = match fields.shift_remove("labels") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(other) => other,
    };
    let name = fields.shift_remove("name").unwrap_or(Value::Null);

    let mut out = Map::new();
    out.insert("command".to_owned(), command);
    out.insert("env".to_owned(), env);
    out.insert("labels".to_owned(), labels);
    out.insert("name".to_owned(), name);
    out.extend(fields);
    Value::Object(out)
}

/// What a caller must fetch before [`build_job_configuration`]: blocks and variables referenced
/// by the template's `job_configuration`, by its variable defaults, or by the job variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataReferences {
    /// Referenced block documents, in order of first appearance.
    pub blocks: Vec<BlockRef>,
    /// Referenced variable names, in order of first appearance.
    pub variables: Vec<String>,
}

/// Collects the blocks and variables a rendering of `base_job_template` with `values` can read.
///
/// Values are inserted without re-templating, so every reference in the rendered configuration
/// comes from one of these three places, except references inside fetched block data: scan that
/// data with [`templating::find_variable_references`] too.
#[must_use]
pub fn data_references(base_job_template: &Value, values: &Map<String, Value>) -> DataReferences {
    let schema = base_job_template.get("variables").unwrap_or(&Value::Null);
    let sources = [
        base_job_template
            .get("job_configuration")
            .cloned()
            .unwrap_or(Value::Null),
        Value::Object(variable_defaults(schema)),
        Value::Object(values.clone()),
    ];
    let mut refs = DataReferences::default();
    for source in &sources {
        for block in templating::find_block_references(source) {
            if !refs.blocks.contains(&block) {
                refs.blocks.push(block);
            }
        }
        for variable in templating::find_variable_references(source) {
            if !refs.variables.contains(&variable) {
                refs.variables.push(variable);
            }
        }
    }
    refs
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templating::{NoData, NoEnv, PrefetchedData};

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn build(template: &Value, values: Value) -> Value {
        finalize_base_fields(
            build_job_configuration(template, &obj(values), &NoEnv, &NoData).expect("builds"),
        )
    }

    #[test]
    fn defaults_are_present_and_not_null() {
        let schema = json!({"properties": {
            "a": {"type": "string", "default": "x"},
            "b": {"type": "string", "default": null},
            "c": {"type": "integer"},
            "d": true,
            "e": {"default": {"k": 1}},
            "f": {"default": false}
        }});
        assert_eq!(
            variable_defaults(&schema),
            obj(json!({"a": "x", "e": {"k": 1}, "f": false}))
        );
        assert!(variable_defaults(&json!({})).is_empty());
        assert!(variable_defaults(&json!({"properties": []})).is_empty());
    }

    #[test]
    fn dotted_keys_are_expanded_then_plain_keys_win() {
        let table = [
            (
                json!({"env.EXTRA_PIP_PACKAGES": "s3fs"}),
                json!({"env": {"EXTRA_PIP_PACKAGES": "s3fs"}}),
            ),
            (
                json!({"env.FOO": "bar", "env.BAZ": "qux"}),
                json!({"env": {"FOO": "bar", "BAZ": "qux"}}),
            ),
            (
                json!({"env.FOO": "from_dot", "env": {"FOO": "from_nested", "BAR": "also_nested"}}),
                json!({"env": {"FOO": "from_nested", "BAR": "also_nested"}}),
            ),
            (
                json!({"env.FOO": "from_dot", "env": {"BAR": "from_nested"}}),
                json!({"env": {"FOO": "from_dot", "BAR": "from_nested"}}),
            ),
            // Plain keys win even when they come first.
            (
                json!({"env": {"FOO": "plain"}, "env.FOO": "dot"}),
                json!({"env": {"FOO": "plain"}}),
            ),
            // A plain key that is not an object replaces the expanded one.
            (
                json!({"env.FOO": "dot", "env": "{{ x }}"}),
                json!({"env": "{{ x }}"}),
            ),
            (
                json!({"a.b.c": 1, "a.b.d": 2, "a.e": 3}),
                json!({"a": {"b": {"c": 1, "d": 2}, "e": 3}}),
            ),
            (
                json!({"a.b": {"x": {"y": 1}}, "a": {"b": {"x": {"z": 2}}}}),
                json!({"a": {"b": {"x": {"y": 1, "z": 2}}}}),
            ),
            (json!({"a.b.c": 1, "a.b": 2}), json!({"a": {"b": 2}})),
            (
                json!({"list[0]": 1, "x.list[1]": 2}),
                json!({"list[0]": 1, "x": {"list": {"1": 2}}}),
            ),
            (
                json!({"cpu": 1, "image": "i"}),
                json!({"cpu": 1, "image": "i"}),
            ),
        ];
        for (input, expected) in table {
            assert_eq!(
                normalize_job_variables(&obj(input.clone())).unwrap(),
                obj(expected),
                "{input}"
            );
        }
        assert_eq!(
            normalize_job_variables(&obj(json!({"a.b": 1, "a.b.c": 2}))),
            Err(JobConfigError::ConflictingPath {
                key: "a.b.c".into(),
                parent: "b".into()
            })
        );
        assert_eq!(
            JobConfigError::ConflictingPath {
                key: "a.b.c".into(),
                parent: "b".into()
            }
            .to_string(),
            "job variable 'a.b.c' sets a path through 'b', which holds a value that is not an object"
        );
    }

    #[test]
    fn run_variables_override_deployment_variables() {
        let table = [
            (
                json!({"env": {"A": "1", "B": "2"}}),
                json!({"env": {"B": "3", "C": "4"}}),
                json!({"env": {"A": "1", "B": "3", "C": "4"}}),
            ),
            (
                json!({"env": {"A": "1"}, "image": "d"}),
                json!({"image": "r", "cpu": 1}),
                json!({"env": {"A": "1"}, "image": "r", "cpu": 1}),
            ),
            (
                json!({"labels": {"a": "1"}}),
                json!({"labels": {"b": "2"}}),
                json!({"labels": {"b": "2"}}),
            ),
            (
                json!({}),
                json!({"env": {"A": "1"}}),
                json!({"env": {"A": "1"}}),
            ),
            (
                json!({"env": "{{ x }}"}),
                json!({"env": {"A": "1"}}),
                json!({"env": {"A": "1"}}),
            ),
            (
                json!({"env": {"A": "1"}}),
                json!({"env": null}),
                json!({"env": null}),
            ),
            (
                json!({"env": {"A": "1"}}),
                json!({"env.A": "2"}),
                json!({"env": {"A": "1"}, "env.A": "2"}),
            ),
        ];
        for (deployment, run, expected) in table {
            assert_eq!(
                merge_deployment_and_run_variables(&obj(deployment.clone()), &obj(run.clone())),
                obj(expected),
                "{deployment} + {run}"
            );
        }
        // A run's dotted key loses to the deployment's plain env once normalised, as in Prefect.
        let merged = merge_deployment_and_run_variables(
            &obj(json!({"env": {"A": "1"}})),
            &obj(json!({"env.A": "2"})),
        );
        assert_eq!(
            normalize_job_variables(&merged).unwrap(),
            obj(json!({"env": {"A": "1"}}))
        );
    }

    #[test]
    fn template_defaults_and_overrides() {
        // Prefect's test_base_job_configuration_from_template_and_overrides and
        // test_job_configuration_from_template_and_overrides.
        let base = json!({
            "job_configuration": {"command": "{{ command }}", "env": "{{ env }}", "labels": "{{ labels }}", "name": "{{ name }}"},
            "variables": {"properties": {
                "command": {"type": "string", "default": "echo hello"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}}
            }}
        });
        assert_eq!(
            build(&base, json!({})),
            json!({"command": "echo hello", "env": {}, "labels": {}, "name": null})
        );
        assert_eq!(
            build(
                &base,
                json!({"command": "echo hi", "env": {"A": "1"}, "labels": {"l": "v"}, "name": "n"})
            ),
            json!({"command": "echo hi", "env": {"A": "1"}, "labels": {"l": "v"}, "name": "n"})
        );
        let vars = json!({
            "job_configuration": {"var1": "{{ var1 }}", "var2": "{{ var2 }}"},
            "variables": {"properties": {
                "var1": {"type": "string", "default": "hello"},
                "var2": {"type": "integer", "default": 42},
                "var3": {"type": "integer", "default": 21},
                "command": {"type": "string", "default": "echo hello"}
            }}
        });
        let expected = |var1: &str| json!({"command": null, "env": {}, "labels": {}, "name": null, "var1": var1, "var2": 42});
        assert_eq!(build(&vars, json!({})), expected("hello"));
        assert_eq!(build(&vars, json!({"var1": "woof!"})), expected("woof!"));
        // Falsy commands become null.
        for falsy in [json!(null), json!("")] {
            let t = json!({"job_configuration": {"command": "{{ command }}"}, "variables": {"properties": {"command": {"type": "string"}}}});
            assert_eq!(build(&t, json!({"command": falsy}))["command"], Value::Null);
        }
    }

    #[test]
    fn env_merging_follows_prefect() {
        // (job_configuration.env, variables.env default, job variables, expected env)
        let table = [
            // Defaults replace a templated env.
            (
                json!("{{ env }}"),
                json!({"A": "1"}),
                json!({}),
                json!({"A": "1"}),
            ),
            // Defaults win over a literal env, job variables win over both.
            (
                json!({"A": "cfg", "B": "cfg"}),
                json!({"B": "default"}),
                json!({}),
                json!({"A": "cfg", "B": "default"}),
            ),
            (
                json!({"A": "cfg", "B": "cfg"}),
                json!({"B": "default"}),
                json!({"env": {"B": "job", "C": "job"}}),
                json!({"A": "cfg", "B": "job", "C": "job"}),
            ),
            // Job variables merge into an env made from the defaults, key by key.
            (
                json!("{{ env }}"),
                json!({"A": "1", "B": "2"}),
                json!({"env": {"B": "3"}}),
                json!({"A": "1", "B": "3"}),
            ),
            (
                json!("{{ env }}"),
                json!({"A": "1"}),
                json!({"env.B": "2"}),
                json!({"A": "1", "B": "2"}),
            ),
            // Without defaults a templated env is the job variable as given.
            (
                json!("{{ env }}"),
                json!({}),
                json!({"env": {"B": "3"}}),
                json!({"B": "3"}),
            ),
            (
                json!({"BASE_VAR": "base_value"}),
                json!({}),
                json!({"env.EXTRA": "s3fs"}),
                json!({"BASE_VAR": "base_value", "EXTRA": "s3fs"}),
            ),
            // Values are stringified; null stays.
            (
                json!({"MY_ENV_VAR": 42, "OTHER": null, "B": true, "F": 1.0}),
                json!({}),
                json!({}),
                json!({"MY_ENV_VAR": "42", "OTHER": null, "B": "True", "F": "1.0"}),
            ),
            // Env values are templates too.
            (
                json!({"WHO": "{{ name }}"}),
                json!({}),
                json!({"name": "me"}),
                json!({"WHO": "me"}),
            ),
        ];
        for (config_env, default_env, job_vars, expected) in table {
            let template = json!({
                "job_configuration": {"env": config_env.clone()},
                "variables": {"properties": {"env": {"type": "object", "default": default_env.clone()}, "name": {"type": "string"}}}
            });
            assert_eq!(
                build(&template, job_vars.clone())["env"],
                expected,
                "{config_env} {default_env} {job_vars}"
            );
        }
        // A default env lands in a job_configuration that has none.
        let template = json!({"job_configuration": {"x": 1}, "variables": {"properties": {"env": {"default": {"A": "1"}}}}});
        assert_eq!(
            build_job_configuration(&template, &Map::new(), &NoEnv, &NoData).unwrap(),
            json!({"x": 1, "env": {"A": "1"}})
        );
    }

    #[test]
    fn env_that_cannot_be_merged_is_an_error() {
        let template = json!({"job_configuration": {"env": {"A": "1"}}, "variables": {"properties": {"env": {"default": "text"}}}});
        let err = build_job_configuration(&template, &Map::new(), &NoEnv, &NoData).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the default of variable 'env' must be an object to be merged into the job configuration's env"
        );
        let template = json!({"job_configuration": {"env": {"A": "1"}}, "variables": {}});
        let err = build_job_configuration(&template, &obj(json!({"env": ["x"]})), &NoEnv, &NoData)
            .unwrap_err();
        assert_eq!(
            err,
            JobConfigError::EnvNotObject {
                source_name: "job variable 'env'"
            }
        );
        // An empty env is simply not merged.
        assert!(
            build_job_configuration(&template, &obj(json!({"env": ""})), &NoEnv, &NoData).is_ok()
        );
    }

    #[test]
    fn template_errors() {
        for bad in [json!({}), json!({"job_configuration": "x"}), json!(null)] {
            assert_eq!(
                build_job_configuration(&bad, &Map::new(), &NoEnv, &NoData),
                Err(JobConfigError::MissingJobConfiguration)
            );
        }
        // A template without `variables` has no defaults.
        let template =
            json!({"job_configuration": {"config": {"var1": 1, "var2": 1.1, "var3": true}}});
        assert_eq!(
            build(&template, json!({}))["config"],
            json!({"var1": 1, "var2": 1.1, "var3": true})
        );
    }

    #[test]
    fn environment_blocks_and_variables_are_applied() {
        let template = json!({
            "job_configuration": {
                "home": "{{ $HOME }}/work",
                "image": "{{ image }}",
                "creds": "{{ creds }}",
                "tag": "{{ prefect.variables.tag }}"
            },
            "variables": {"properties": {"image": {"type": "string"}, "creds": {"type": "object"}}}
        });
        let env = |name: &str| (name == "HOME").then(|| "/home/me".to_owned());
        let data = PrefetchedData::default()
            .with_block(
                "secret",
                "registry",
                json!({"value": "registry.example.com"}),
            )
            .with_block_id("c1", json!({"key": "k"}))
            .with_variable("tag", json!(7));
        let values = obj(json!({
            "image": "{{ prefect.blocks.secret.registry }}/app:{{ prefect.variables.tag }}",
            "creds": {"$ref": {"block_document_id": "c1"}}
        }));
        let refs = data_references(&template, &values);
        assert_eq!(refs.variables, ["tag"]);
        assert_eq!(refs.blocks.len(), 2);
        let raw = build_job_configuration(&template, &values, &env, &data).unwrap();
        assert_eq!(
            raw,
            json!({"home": "/home/me/work", "image": "registry.example.com/app:7", "creds": {"key": "k"}, "tag": 7})
        );
        let missing = build_job_configuration(&template, &values, &env, &NoData).unwrap_err();
        assert!(matches!(
            missing,
            JobConfigError::Template(TemplateError::BlockNotFoundByName { .. })
        ));
    }

    #[test]
    fn base_fields_are_finalized() {
        let table = [
            (
                json!({}),
                json!({"command": null, "env": {}, "labels": {}, "name": null}),
            ),
            (
                json!({"x": 1, "name": "n", "command": "", "env": null, "labels": null}),
                json!({"command": null, "env": {}, "labels": {}, "name": "n", "x": 1}),
            ),
            (
                json!({"command": "run", "env": {"A": 1, "B": null, "C": "c", "D": {"k": [1.5]}, "E": false}, "labels": {"l": "v"}}),
                json!({"command": "run", "env": {"A": "1", "B": null, "C": "c", "D": "{'k': [1.5]}", "E": "False"}, "labels": {"l": "v"}, "name": null}),
            ),
            (
                json!({"name": ""}),
                json!({"command": null, "env": {}, "labels": {}, "name": ""}),
            ),
            (json!("not an object"), json!("not an object")),
        ];
        for (input, expected) in table {
            let got = finalize_base_fields(input.clone());
            assert_eq!(got, expected, "{input}");
            assert_eq!(
                got.to_string(),
                expected.to_string(),
                "key order of {input}"
            );
        }
    }
}
