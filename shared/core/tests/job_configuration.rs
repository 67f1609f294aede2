//! Rendering Prefect's published base job templates (as bundled in the `prefect` package)
//! and checking them, end to end through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Map, Value, json};
use sluice_core::job_config::{
    build_job_configuration, data_references, finalize_base_fields,
    merge_deployment_and_run_variables,
};
use sluice_core::schema::{
    JobVariablesError, JobVariablesValidation, TemplateValidation, validate_base_job_template,
    validate_base_job_template_with, validate_job_variables, validate_job_variables_with,
};
use sluice_core::templating::{BlockRef, NoData, NoEnv, PrefetchedData};

const TEMPLATE_NAMES: [&str; 4] = ["process", "ecs", "kubernetes", "docker"];

/// Prefect's published templates (from the installed `prefect` package, else the outside
/// snapshot): `None` when they are not here, with the test recorded as skipped.
fn real_templates(test: &str) -> Option<Templates> {
    let mut found = Vec::new();
    for name in TEMPLATE_NAMES {
        let (template, _) = sluice_testkit::prefect_template(test, name)?;
        found.push((name, template));
    }
    Some(Templates(found))
}

struct Templates(Vec<(&'static str, Value)>);

impl Templates {
    fn get(&self, name: &str) -> Value {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no published template named {name}"))
    }
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn render(template: &Value, values: Value, data: &PrefetchedData) -> Value {
    finalize_base_fields(
        build_job_configuration(template, &map(values), &NoEnv, data).expect("renders"),
    )
}

/// Compares values and key order (the CLI prints these).
fn assert_same_json(got: &Value, expected: &Value) {
    assert_eq!(got, expected);
    assert_eq!(
        serde_json::to_string_pretty(got).unwrap(),
        serde_json::to_string_pretty(expected).unwrap()
    );
}

#[test]
fn process_template_renders_exactly() {
    let Some(templates) = real_templates("process_template_renders_exactly") else {
        return;
    };
    let template = templates.get("process");
    let got = render(
        &template,
        json!({"env": {"A": "1", "N": 5}, "command": "", "name": "my-run", "working_dir": "/tmp/x"}),
        &PrefetchedData::default(),
    );
    assert_same_json(
        &got,
        &json!({
            "command": null,
            "env": {"A": "1", "N": "5"},
            "labels": {},
            "name": "my-run",
            "stream_output": true,
            "working_dir": "/tmp/x"
        }),
    );

    // With no job variables only the `stream_output` default survives; missing values drop keys.
    let raw = build_job_configuration(&template, &Map::new(), &NoEnv, &NoData).unwrap();
    assert_same_json(&raw, &json!({"stream_output": true}));
    assert_same_json(
        &finalize_base_fields(raw),
        &json!({"command": null, "env": {}, "labels": {}, "name": null, "stream_output": true}),
    );
}

#[test]
fn ecs_template_renders_exactly() {
    let Some(templates) = real_templates("ecs_template_renders_exactly") else {
        return;
    };
    let template = templates.get("ecs");
    let got = render(
        &template,
        json!({
            "image": "repo/flow:1",
            "cpu": 512,
            "env.EXTRA": "x",
            "env": {"A": "1"},
            "labels": {"team": "data"},
            "cluster": "prod",
            "launch_type": "FARGATE_SPOT",
            "capacity_provider_strategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}],
            "vpc_id": "vpc-1",
            "name": "run-{{ ctx.flow.name }}"
        }),
        &PrefetchedData::default(),
    );
    assert_same_json(
        &got,
        &json!({
            "command": null,
            "env": {"EXTRA": "x", "A": "1"},
            "labels": {"team": "data"},
            "name": "run-{{ ctx.flow.name }}",
            "task_definition": {
                "containerDefinitions": [{"image": "repo/flow:1"}],
                "cpu": 512
            },
            "task_run_request": {
                "launchType": "FARGATE_SPOT",
                "cluster": "prod",
                "overrides": {
                    "containerOverrides": [{"environment": {"EXTRA": "x", "A": "1"}, "cpu": 512}],
                    "cpu": 512
                },
                "tags": {"team": "data"},
                "capacityProviderStrategy": [
                    {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}
                ]
            },
            "task_start_timeout_seconds": 300,
            "task_watch_poll_interval": 5.0,
            "auto_deregister_task_definition": false,
            "vpc_id": "vpc-1",
            "cluster": "prod",
            "match_latest_revision_in_family": false
        }),
    );
}

#[test]
fn ecs_template_resolves_blocks_and_variables() {
    let Some(templates) = real_templates("ecs_template_resolves_blocks_and_variables") else {
        return;
    };
    let template = templates.get("ecs");
    let values = json!({
        "aws_credentials": "{{ prefect.blocks.aws-credentials.prod }}",
        "image": "{{ prefect.blocks.secret.registry }}/flow:{{ prefect.variables.image_tag }}",
        "execution_role_arn": {"$ref": {"block_document_id": "11111111-1111-1111-1111-111111111111"}}
    });
    let refs = data_references(&template, &map(values.clone()));
    assert_eq!(
        refs.blocks,
        vec![
            BlockRef::ByName {
                slug: "aws-credentials".into(),
                name: "prod".into()
            },
            BlockRef::ByName {
                slug: "secret".into(),
                name: "registry".into()
            },
            BlockRef::ById("11111111-1111-1111-1111-111111111111".into()),
        ]
    );
    assert_eq!(refs.variables, vec!["image_tag".to_owned()]);

    let data = PrefetchedData::default()
        .with_block(
            "aws-credentials",
            "prod",
            json!({"region_name": "us-east-1"}),
        )
        .with_block(
            "secret",
            "registry",
            json!({"value": "registry.example.com"}),
        )
        .with_block_id(
            "11111111-1111-1111-1111-111111111111",
            json!({"value": "arn:aws:iam::1:role/x"}),
        )
        .with_variable("image_tag", json!("v42"));
    let got = render(&template, values, &data);
    assert_eq!(got["aws_credentials"], json!({"region_name": "us-east-1"}));
    assert_eq!(
        got["task_definition"]["containerDefinitions"][0]["image"],
        json!("registry.example.com/flow:v42")
    );
    // A `$ref` object is replaced by the block's whole data, `value` wrapper included.
    assert_eq!(
        got["task_definition"]["executionRoleArn"],
        json!({"value": "arn:aws:iam::1:role/x"})
    );

    // The same rendering without the data fails on the first missing block.
    let err = build_job_configuration(
        &template,
        &map(json!({"aws_credentials": "{{ prefect.blocks.aws-credentials.prod }}"})),
        &NoEnv,
        &NoData,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "block not found: 'prod' of type 'aws-credentials'; it is referenced by the deployment or work pool configuration but does not exist"
    );
}

#[test]
fn kubernetes_template_blanks_missing_inline_values() {
    let Some(templates) = real_templates("kubernetes_template_blanks_missing_inline_values") else {
        return;
    };
    let got = render(
        &templates.get("kubernetes"),
        json!({}),
        &PrefetchedData::default(),
    );
    // `generateName: "{{ name }}-"` keeps its text; the missing name becomes "".
    assert_eq!(
        got["job_manifest"]["metadata"],
        json!({"generateName": "-", "namespace": "default"})
    );
    assert_eq!(
        got["job_manifest"]["spec"]["template"]["spec"]["containers"][0],
        json!({"name": "prefect-job", "imagePullPolicy": "IfNotPresent", "resources": {"limits": {}, "requests": {}}})
    );
}

/// Every case of `tests/data/prefect_job_config_cases.json` was rendered by Prefect itself.
#[test]
fn renders_like_prefect() {
    let Some(templates) = real_templates("renders_like_prefect") else {
        return;
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/prefect_job_config_cases.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut data = PrefetchedData::default();
    for (key, value) in map(doc["blocks_by_name"].clone()) {
        let (slug, name) = key.split_once('/').unwrap();
        data = data.with_block(slug, name, value);
    }
    for (id, value) in map(doc["blocks_by_id"].clone()) {
        data = data.with_block_id(id, value);
    }
    for (name, value) in map(doc["variables"].clone()) {
        data = data.with_variable(name, value);
    }
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let template = if TEMPLATE_NAMES.contains(&name) {
            templates.get(name)
        } else {
            doc["templates"][name].clone()
        };
        let got = render(&template, case["values"].clone(), &data);
        assert_eq!(
            got, case["expected"],
            "template {name} with {}",
            case["values"]
        );
    }
}

#[test]
fn precedence_is_defaults_then_deployment_then_run() {
    // Prefect's test_env_merge_logic_is_deep, with the pool env given as a default and as a
    // literal `job_configuration.env`: (pool, deployment, run, expected).
    let table = [
        (
            json!({}),
            json!({"test-var": "foo"}),
            json!({"another-var": "boo"}),
            json!({"test-var": "foo", "another-var": "boo"}),
        ),
        (
            json!({"A": "1", "B": "2"}),
            json!({"A": "1", "B": "3"}),
            json!({}),
            json!({"A": "1", "B": "3"}),
        ),
        (
            json!({"A": "1", "B": "2"}),
            json!({"C": "3", "D": "4"}),
            json!({}),
            json!({"A": "1", "B": "2", "C": "3", "D": "4"}),
        ),
        (
            json!({"A": "1", "B": "2"}),
            json!({"C": "42"}),
            json!({"C": "3", "D": "4"}),
            json!({"A": "1", "B": "2", "C": "3", "D": "4"}),
        ),
        (
            json!({"A": "1", "B": "2"}),
            json!({"B": ""}),
            json!({}),
            json!({"A": "1", "B": ""}),
        ),
    ];
    for (pool, deployment, run, expected) in table {
        let merged = merge_deployment_and_run_variables(
            &map(json!({"env": deployment})),
            &map(json!({"env": run})),
        );
        for template in [
            json!({"job_configuration": {"env": "{{ env }}"}, "variables": {"properties": {"env": {"type": "object", "default": pool.clone()}}}}),
            json!({"job_configuration": {"env": pool.clone()}, "variables": {"properties": {"env": {"type": "object"}}}}),
        ] {
            let got = render(
                &template,
                Value::Object(merged.clone()),
                &PrefetchedData::default(),
            );
            assert_eq!(got["env"], expected, "pool {pool} template {template}");
        }
    }
}

#[test]
fn all_published_templates_are_valid() {
    let Some(templates) = real_templates("all_published_templates_are_valid") else {
        return;
    };
    for name in TEMPLATE_NAMES {
        let template = templates.get(name);
        for check_defaults in [true, false] {
            let report = validate_base_job_template(&template, check_defaults)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // Every declared variable of the published templates is used by job_configuration.
            assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
            assert!(report.unreferenced_variables.is_empty());
        }
    }
}

#[test]
fn ecs_template_with_an_unused_variable_warns() {
    let Some(templates) = real_templates("ecs_template_with_an_unused_variable_warns") else {
        return;
    };
    let mut template = templates.get("ecs");
    let job_configuration = template["job_configuration"].as_object_mut().unwrap();
    job_configuration.remove("vpc_id");
    job_configuration.remove("stream_output");
    let report =
        validate_base_job_template_with(&template, &TemplateValidation::on_create()).unwrap();
    assert_eq!(
        report.unreferenced_variables,
        vec!["vpc_id", "stream_output"]
    );
    assert_eq!(
        report.warnings[0],
        "variable 'vpc_id' is declared in the variables schema but job_configuration never uses it, so setting it has no effect"
    );
}

#[test]
fn job_variables_are_checked_against_published_templates() {
    let Some(templates) = real_templates("job_variables_are_checked_against_published_templates")
    else {
        return;
    };
    let ecs = templates.get("ecs");
    let schema = &ecs["variables"];
    let deployment = JobVariablesValidation::for_deployment();
    let ok = json!({
        "image": "img", "cpu": 1024, "env.FOO": "bar", "env": {"A": "1"}, "launch_type": "EC2",
        "capacity_provider_strategy": [{"capacityProvider": "x", "weight": 1, "base": 0}],
        "aws_credentials": {"region_name": "us-east-1"}, "vpc_id": null
    });
    validate_job_variables_with(schema, &map(ok), &deployment).unwrap();
    // A block reference is accepted wherever the schema names a block type.
    validate_job_variables_with(
        schema,
        &map(json!({"aws_credentials": {"$ref": {"block_document_id": "11111111-1111-1111-1111-111111111111"}}})),
        &deployment,
    )
    .unwrap();

    let table = [
        (
            json!({"cpu": "abc"}),
            r#"job variable 'cpu': "abc" is not of type "integer""#,
        ),
        (
            json!({"launch_type": "SPOT"}),
            r#"job variable 'launch_type': "SPOT" is not one of "FARGATE", "EC2", "EXTERNAL", "FARGATE_SPOT""#,
        ),
        (
            json!({"env.FOO": 5}),
            r#"job variable 'env.FOO': 5 is not of type "string""#,
        ),
        (
            json!({"capacity_provider_strategy": [{"capacityProvider": "x", "weight": "heavy", "base": 0}]}),
            r#"job variable 'capacity_provider_strategy[0].weight': "heavy" is not of type "integer""#,
        ),
        (
            json!({"gpu": 1}),
            "job variable 'gpu' is not declared in the work pool's base job template (variables.properties)",
        ),
        (
            json!({"gpu": 1, "ram.max": 2}),
            "job variables 'gpu', 'ram.max' are not declared in the work pool's base job template (variables.properties)",
        ),
    ];
    for (values, message) in table {
        let err =
            validate_job_variables_with(schema, &map(values.clone()), &deployment).unwrap_err();
        assert_eq!(err.to_string(), message, "{values}");
    }
    assert!(matches!(
        validate_job_variables_with(schema, &map(json!({"gpu": 1})), &deployment),
        Err(JobVariablesError::Undeclared { names }) if names == ["gpu"]
    ));
}

/// Every case of `tests/data/prefect_job_variable_cases.json` was judged by Prefect's own
/// server-side validation; Sluice must accept and reject the same ones (its messages differ).
#[test]
fn job_variable_verdicts_match_prefect() {
    let Some(templates) = real_templates("job_variable_verdicts_match_prefect") else {
        return;
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/prefect_job_variable_cases.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    for case in cases {
        let template = templates.get(case["template"].as_str().unwrap());
        let got = validate_job_variables(
            &template["variables"],
            &map(case["values"].clone()),
            case["require_required"].as_bool().unwrap(),
        );
        let prefect_ok = case["prefect"] == "ok";
        assert_eq!(
            got.is_ok(),
            prefect_ok,
            "{} {}: {got:?}",
            case["template"],
            case["values"]
        );
    }
}
