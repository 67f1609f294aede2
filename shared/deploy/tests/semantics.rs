//! Merge keys, section precedence, CLI overrides, templating and error locations.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::{Value, json};
use sluice_deploy::{DeployError, DeployOptions, PlannedDeployment, glob_match, parse, plan};

fn no_env(_: &str) -> Option<String> {
    None
}

fn doc(text: &str) -> Value {
    parse(Path::new("/proj/prefect.yaml"), text)
        .unwrap()
        .document
}

fn run(text: &str, opts: &DeployOptions) -> Result<Vec<PlannedDeployment>, DeployError> {
    let f = parse(Path::new("/proj/prefect.yaml"), text)?;
    plan(&f, opts, &no_env)
}

fn all() -> DeployOptions {
    DeployOptions {
        all: true,
        ..DeployOptions::default()
    }
}

#[test]
fn merge_key_explicit_keys_win_and_keep_merged_order() {
    let v = doc("base: &b {a: 1, b: 2}\nderived:\n  b: 3\n  <<: *b\n  c: 4\ndeployments: []\n");
    assert_eq!(v["derived"], json!({"a": 1, "b": 3, "c": 4}));
    // PyYAML puts merged keys first.
    let keys: Vec<&String> = v["derived"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "b", "c"]);
}

#[test]
fn merge_list_earlier_mappings_win() {
    let v = doc(
        "x: &x {a: x, only_x: 1}\ny: &y {a: y, b: y}\nz:\n  <<: [*x, *y]\n  c: z\ndeployments: []\n",
    );
    assert_eq!(v["z"], json!({"b": "y", "a": "x", "only_x": 1, "c": "z"}));
    // Order as PyYAML: entries of the last mapping first, then the earlier ones.
    let keys: Vec<&String> = v["z"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "b", "only_x", "c"]);
}

#[test]
fn nested_merges_and_aliases() {
    let v = doc(
        "a: &a {k: 1}\nb: &b\n  <<: *a\n  m: 2\nc:\n  <<: *b\n  k: 9\nlist: &l [1, 2]\nd: *l\ndeployments: []\n",
    );
    assert_eq!(v["b"], json!({"k": 1, "m": 2}));
    assert_eq!(v["c"], json!({"k": 9, "m": 2}));
    assert_eq!(v["d"], json!([1, 2]));
}

#[test]
fn quoted_merge_key_is_a_plain_key_and_bad_merge_is_an_error() {
    let v = doc("a: &a {k: 1}\nb:\n  '<<': *a\ndeployments: []\n");
    assert_eq!(v["b"], json!({"<<": {"k": 1}}));
    let e = parse(Path::new("p.yaml"), "b:\n  <<: 3\ndeployments: []\n").unwrap_err();
    assert!(matches!(e, DeployError::Syntax { line: 2, .. }), "{e:?}");
}

#[test]
fn duplicate_keys_last_wins() {
    assert_eq!(doc("a: 1\na: 2\ndeployments: []\n")["a"], 2);
}

const TWO: &str = r"
pull:
  - prefect.deployments.steps.git_clone:
      repository: https://example.com/r.git
build:
  prefect.deployments.steps.run_shell_script:
    script: make
deployments:
  - name: a
    entrypoint: flows/a.py:flow_a
    work_pool: {name: pool}
  - name: b
    entrypoint: flows/b.py:flow_b
    work_pool: {name: pool}
    pull: []
    build: []
  - name: c
    flow_name: custom
    entrypoint: pkg.module.flow_c
    work_pool: {name: pool}
    pull:
      prefect.deployments.steps.set_working_directory:
        directory: /c
";

#[test]
fn section_precedence_replaces_top_level() {
    let p = run(TWO, &all()).unwrap();
    assert_eq!(
        p[0].body["pull_steps"][0]["prefect.deployments.steps.git_clone"]["repository"],
        "https://example.com/r.git"
    );
    // A single mapping is wrapped into a list.
    assert_eq!(p[0].build_steps.len(), 1);
    assert_eq!(p[1].body["pull_steps"], json!([]));
    assert!(p[1].build_steps.is_empty());
    assert_eq!(
        p[2].body["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/c"}}])
    );
    assert_eq!(p[2].build_steps.len(), 1);
    assert_eq!(p[2].flow_name.as_deref(), Some("custom"));
    assert_eq!(p[0].flow_name.as_deref(), Some("flow_a"));
}

#[test]
fn missing_pull_everywhere_defaults_to_the_file_directory() {
    let text = "deployments:\n  - name: a\n    entrypoint: a.py:f\n    work_pool: {name: p}\n";
    let p = run(text, &DeployOptions::default()).unwrap();
    assert_eq!(
        p[0].body["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/proj"}}])
    );
    // Defaults of §4.4 step 1 and §7.1.
    let b = &p[0].body;
    assert_eq!(b["tags"], json!([]));
    assert_eq!(b["parameters"], json!({}));
    assert_eq!(b["job_variables"], json!({}));
    assert_eq!(b["version"], Value::Null);
    assert_eq!(b["enforce_parameter_schema"], true);
    assert_eq!(b["paused"], false);
    assert_eq!(b["path"], Value::Null);
    assert_eq!(b["schedules"], json!([]));
}

#[test]
fn name_globs_and_flow_slash_name() {
    let opts = DeployOptions {
        names: vec!["flow_b/*".into(), "?".into()],
        ..DeployOptions::default()
    };
    let p = run(TWO, &opts).unwrap();
    let names: Vec<&str> = p.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let opts = DeployOptions {
        names: vec!["custom/c".into()],
        ..DeployOptions::default()
    };
    assert_eq!(run(TWO, &opts).unwrap().len(), 1);
    let opts = DeployOptions {
        names: vec!["nope*".into()],
        ..DeployOptions::default()
    };
    let e = run(TWO, &opts).unwrap_err();
    assert!(matches!(&e, DeployError::NoMatch { available, .. } if available == &["a", "b", "c"]));
    assert!(e.to_string().contains("\"a\""), "{e}");
    // Several deployments and neither --all nor --name.
    assert!(matches!(
        run(TWO, &DeployOptions::default()),
        Err(DeployError::Ambiguous { .. })
    ));
    assert!(glob_match("a[0-9]z", "a5z") && !glob_match("a[!0-9]z", "a5z"));
}

#[test]
fn cli_overrides() {
    let text = r"
deployments:
  - name: d
    entrypoint: a.py:f
    parameters: {x: 1, y: 2}
    work_pool:
      name: file-pool
      work_queue_name: q
      job_variables: {image: img, env: {A: '1'}}
    schedules:
      - cron: '0 * * * *'
";
    let mut params = serde_json::Map::new();
    params.insert("y".into(), json!(3));
    let opts = DeployOptions {
        pool: Some("cli-pool".into()),
        work_queue: Some("cli-q".into()),
        job_variables: vec![("env".into(), json!({"B": "2"})), ("cpu".into(), json!(2))],
        cron: vec!["5 4 * * *".into()],
        interval: vec![600.0],
        rrule: vec!["FREQ=DAILY".into()],
        timezone: Some("Europe/Paris".into()),
        anchor_date: Some("2024-01-01T00:00:00+00:00".into()),
        params,
        ..DeployOptions::default()
    };
    let p = run(text, &opts).unwrap();
    let b = &p[0].body;
    assert_eq!(b["work_pool_name"], "cli-pool");
    assert_eq!(b["work_queue_name"], "cli-q");
    assert_eq!(
        b["job_variables"],
        json!({"image": "img", "env": {"B": "2"}, "cpu": 2})
    );
    assert_eq!(b["parameters"], json!({"x": 1, "y": 3}));
    let s = b["schedules"].as_array().unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0]["schedule"]["cron"], "0 * * * *");
    assert_eq!(s[1]["schedule"]["cron"], "5 4 * * *");
    assert_eq!(s[2]["schedule"]["interval"], json!(600.0));
    assert!(
        s[2]["schedule"]["anchor_date"]
            .as_str()
            .unwrap()
            .starts_with("2024-01-01")
    );
    assert_eq!(s[3]["schedule"]["rrule"], "FREQ=DAILY");
    for item in s {
        assert_eq!(item["schedule"]["timezone"], "Europe/Paris");
    }
}

#[test]
fn env_templating_and_ctx_preserved() {
    let text = r#"
deployments:
  - name: "{{ $DEPLOY_NAME }}"
    entrypoint: a.py:f
    version: "{{ $VERSION }}"
    tags: "{{ $TAGS }}"
    description: "built by {{ USER }} for {{ ctx.flow_run.id }}"
    work_pool:
      name: "{{ $POOL }}"
      job_variables:
        env:
          RUN: "{{ ctx.flow_run.id }}"
          TOKEN: "{{ prefect.variables.token }}"
          OUT: "{{ build.image }}"
    parameters:
      missing: "{{ $NOT_SET }}"
"#;
    let env = |k: &str| match k {
        "VERSION" => Some("1.2.3".to_owned()),
        "POOL" => Some("envpool".to_owned()),
        "USER" => Some("alice".to_owned()),
        "TAGS" => Some("[\"x\", \"y\"]".to_owned()),
        "DEPLOY_NAME" => Some("from-env".to_owned()),
        _ => None,
    };
    let f = parse(Path::new("/proj/prefect.yaml"), text).unwrap();
    // The name is a selector, read before templating (as Prefect matches --name on the file).
    let p = plan(&f, &all(), &env).unwrap();
    let b = &p[0].body;
    assert_eq!(p[0].name, "from-env");
    assert_eq!(b["name"], "from-env");
    assert_eq!(b["version"], "1.2.3");
    assert_eq!(b["work_pool_name"], "envpool");
    assert_eq!(b["tags"], json!(["x", "y"]));
    assert_eq!(b["description"], "built by alice for {{ ctx.flow_run.id }}");
    assert_eq!(b["job_variables"]["env"]["RUN"], "{{ ctx.flow_run.id }}");
    assert_eq!(
        b["job_variables"]["env"]["TOKEN"],
        "{{ prefect.variables.token }}"
    );
    assert_eq!(b["job_variables"]["env"]["OUT"], "{{ build.image }}");
    assert_eq!(b["parameters"]["missing"], "{{ $NOT_SET }}");
    let w = p[0].warnings.join("\n");
    assert!(
        w.contains("prefect.variables.token") && w.contains("build.image"),
        "{w}"
    );
    assert!(!w.contains("ctx.flow_run.id"), "{w}");
}

#[test]
fn concurrency_limit_forms() {
    let text = r"
deployments:
  - name: a
    entrypoint: a.py:f
    work_pool: {name: p}
    concurrency_limit: {limit: 3, collision_strategy: CANCEL_NEW, grace_period_seconds: 120}
  - name: b
    entrypoint: a.py:f
    work_pool: {name: p}
    concurrency_limit: {limit: 2}
";
    let p = run(text, &all()).unwrap();
    assert_eq!(p[0].body["concurrency_limit"], 3);
    assert_eq!(
        p[0].body["concurrency_options"],
        json!({"collision_strategy": "CANCEL_NEW", "grace_period_seconds": 120})
    );
    assert_eq!(
        p[1].body["concurrency_options"],
        json!({"collision_strategy": "ENQUEUE"})
    );
    let bad = text.replace("grace_period_seconds: 120", "grace_period_seconds: 5");
    let e = run(&bad, &all()).unwrap_err().to_string();
    assert!(
        e.contains(":6:") && e.contains("grace_period_seconds"),
        "{e}"
    );
}

#[test]
fn interval_text_forms() {
    let text = r"
deployments:
  - name: a
    entrypoint: a.py:f
    work_pool: {name: p}
    schedules:
      - interval: PT1H
      - interval: '01:30:00'
      - interval: 45
        active: false
        slug: fast
        parameters: {k: v}
";
    let p = run(text, &all()).unwrap();
    let s = &p[0].body["schedules"];
    assert_eq!(s[0]["schedule"]["interval"], json!(3600.0));
    assert_eq!(s[1]["schedule"]["interval"], json!(5400.0));
    assert_eq!(s[2]["active"], false);
    assert_eq!(s[2]["slug"], "fast");
    assert_eq!(s[2]["parameters"], json!({"k": "v"}));
}

#[test]
fn invalid_schedule_names_file_deployment_index_and_line() {
    let text = r"
deployments:
  - name: good
    entrypoint: a.py:f
    work_pool: {name: p}
    schedules:
      - cron: '0 * * * *'
      - cron: 'not a cron'
";
    let e = run(text, &all()).unwrap_err();
    assert!(
        matches!(&e, DeployError::Schedule { line: Some(8), index: 1, deployment, .. } if deployment == "good"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("/proj/prefect.yaml:8:") && msg.contains("schedule #1"),
        "{msg}"
    );
    let tz = text.replace(
        "'not a cron'",
        "'0 * * * *'\n        timezone: Mars/Olympus",
    );
    assert!(
        run(&tz, &all())
            .unwrap_err()
            .to_string()
            .contains("Mars/Olympus")
    );
    let two = text.replace("- cron: 'not a cron'", "- {cron: '0 * * * *', interval: 5}");
    assert!(
        run(&two, &all())
            .unwrap_err()
            .to_string()
            .contains("more than one")
    );
}

#[test]
fn errors_carry_file_line_and_key() {
    let e = run("deployments:\n  - name: a\n    entrypoint: a.py:f\n    work_pool: {name: p}\n    tags: 5\n", &all())
        .unwrap_err()
        .to_string();
    assert!(e.contains("prefect.yaml:5:") && e.contains("`tags`"), "{e}");
    let e = run("deployments:\n  - name: a\n    entrypoint: a.py:f\n    work_pool: {name: p}\n    paused: maybe\n", &all())
        .unwrap_err()
        .to_string();
    assert!(e.contains(":5:") && e.contains("`paused`"), "{e}");
    // Syntax error: the parser's location.
    let e = parse(Path::new("x/prefect.yaml"), "deployments:\n  - name: [a\n").unwrap_err();
    assert!(matches!(e, DeployError::Syntax { .. }), "{e:?}");
    assert!(e.to_string().starts_with("x/prefect.yaml:"), "{e}");
    // Not a prefect.yaml.
    for text in ["just text\n", "name: x\n", "deployments: {a: 1}\n", ""] {
        let e = parse(Path::new("p.yaml"), text).unwrap_err();
        assert!(
            matches!(e, DeployError::NotAProjectFile { .. }),
            "{text:?}: {e:?}"
        );
    }
    // Unknown tag refused as safe_load does.
    assert!(parse(Path::new("p.yaml"), "deployments: !!python/object:x []\n").is_err());
}

/// Prefect's `deploy --all` skips an entry without a name ("Discovered unnamed deployment.
/// Skipping...") instead of failing the file; deploying that entry alone still needs a name.
#[test]
fn deploy_all_skips_unnamed_entries_as_prefect_does() {
    let text = r"
deployments:
  - entrypoint: flows.py:template_only
    work_pool: {name: p}
  - name: real
    entrypoint: flows.py:etl
    work_pool: {name: p}
  - name: null
    entrypoint: flows.py:other
";
    let planned = run(text, &all()).unwrap();
    let names: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["real"]);
    let f = parse(Path::new("/proj/prefect.yaml"), text).unwrap();
    assert_eq!(f.unnamed_entries(), [0, 2]);
    let one = "deployments:\n  - entrypoint: flows.py:etl\n";
    assert!(run(one, &DeployOptions::default()).is_err());
}
