//! The SAM template (`template.yaml`): every reference in it names something the template
//! declares, its table is the one the DynamoDB adapter expects, its functions build binaries
//! that exist, and the Lambda event fixtures in `infra/events/` agree with it.
//!
//! cfn-lint and `sam validate` do not look inside SAM policy documents or environment
//! variables for dangling `!Ref`s, hence the reference check here. The template is read with
//! yaml-rust2's event parser because its document loader drops the `!Ref`/`!GetAtt`/`!Sub`
//! tags CloudFormation's short forms rely on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_store_dynamodb::schema;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

// ---------------------------------------------------------------------------------------------
// A YAML tree that keeps tags and lines

#[derive(Debug)]
enum Node {
    Scalar {
        value: String,
        tag: Option<String>,
        line: usize,
    },
    Seq {
        items: Vec<Node>,
        tag: Option<String>,
        line: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        tag: Option<String>,
        line: usize,
    },
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    fn tag(&self) -> Option<&str> {
        match self {
            Node::Scalar { tag, .. } | Node::Seq { tag, .. } | Node::Map { tag, .. } => {
                tag.as_deref()
            }
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    fn items(&self) -> &[Node] {
        match self {
            Node::Seq { items, .. } => items,
            _ => &[],
        }
    }

    fn entries(&self) -> &[(Node, Node)] {
        match self {
            Node::Map { entries, .. } => entries,
            _ => &[],
        }
    }

    /// The value under a plain string key of a mapping.
    fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Follows a path of mapping keys; panics naming the path when a step is missing.
    fn at(&self, path: &[&str]) -> &Node {
        let mut node = self;
        for (i, key) in path.iter().enumerate() {
            node = node.get(key).unwrap_or_else(|| {
                panic!(
                    "template.yaml has no {} (line {})",
                    path[..=i].join("."),
                    node.line()
                )
            });
        }
        node
    }

    fn str_at(&self, path: &[&str]) -> &str {
        let node = self.at(path);
        node.as_str().unwrap_or_else(|| {
            panic!(
                "{} should be a string (line {})",
                path.join("."),
                node.line()
            )
        })
    }

    fn keys(&self) -> Vec<&str> {
        self.entries()
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Builds a [`Node`] tree from parser events.
#[derive(Default)]
struct TreeBuilder {
    /// Open collections: the collection being filled, and for mappings a key waiting for its
    /// value.
    stack: Vec<(Node, Option<Node>)>,
    done: Option<Node>,
    problems: Vec<String>,
}

fn tag_name(tag: Option<yaml_rust2::parser::Tag>) -> Option<String> {
    // `!Ref` arrives as handle "!" and suffix "Ref".
    tag.map(|t| {
        if t.handle == "!" {
            t.suffix
        } else {
            format!("{}{}", t.handle, t.suffix)
        }
    })
}

impl TreeBuilder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.done.is_none() {
                    self.done = Some(node);
                }
            }
            Some((Node::Seq { items, .. }, _)) => items.push(node),
            Some((Node::Map { entries, .. }, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Some((Node::Scalar { .. }, _)) => unreachable!("scalars are never open"),
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(value, _, _, tag) => self.push_value(Node::Scalar {
                value,
                tag: tag_name(tag),
                line,
            }),
            Event::SequenceStart(_, tag) => self.stack.push((
                Node::Seq {
                    items: Vec::new(),
                    tag: tag_name(tag),
                    line,
                },
                None,
            )),
            Event::MappingStart(_, tag) => self.stack.push((
                Node::Map {
                    entries: Vec::new(),
                    tag: tag_name(tag),
                    line,
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            Event::Alias(_) => self.problems.push(format!(
                "line {line}: YAML aliases are not supported by CloudFormation"
            )),
            _ => {}
        }
    }
}

fn parse(text: &str) -> Node {
    let mut builder = TreeBuilder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .expect("the template is valid YAML");
    assert!(builder.problems.is_empty(), "{:#?}", builder.problems);
    builder.done.expect("the template has a document")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the repository")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {relative} from the repository: {e}"))
}

fn template() -> Node {
    parse(&read("template.yaml"))
}

// ---------------------------------------------------------------------------------------------
// The reference check

const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];

/// What a reference may name.
enum Wants {
    /// `Ref`: a resource, a parameter or a pseudo parameter.
    Referable,
    /// `GetAtt`: a resource.
    Resource,
}

struct Checker {
    resources: BTreeSet<String>,
    parameters: BTreeSet<String>,
    /// Every reference seen, for the check that the walk saw anything at all.
    seen: usize,
    errors: Vec<String>,
}

impl Checker {
    fn new(doc: &Node) -> Self {
        let names = |section: &str| -> BTreeSet<String> {
            doc.get(section)
                .map(|s| s.keys().into_iter().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Checker {
            resources: names("Resources"),
            parameters: names("Parameters"),
            seen: 0,
            errors: Vec::new(),
        }
    }

    fn check_name(&mut self, form: &str, name: &str, wants: &Wants, line: usize) {
        self.seen += 1;
        let known = match wants {
            Wants::Resource => self.resources.contains(name),
            Wants::Referable => {
                self.resources.contains(name)
                    || self.parameters.contains(name)
                    || PSEUDO_PARAMETERS.contains(&name)
            }
        };
        if !known {
            let what = match wants {
                Wants::Resource => "no resource",
                Wants::Referable => "no resource, parameter or pseudo parameter",
            };
            self.errors
                .push(format!("line {line}: {form} {name} names {what}"));
        }
    }

    /// `X.Attr` (short `!GetAtt`) or `[X, Attr]`.
    fn check_get_att(&mut self, form: &str, value: &Node) {
        let line = value.line();
        let name = match value {
            Node::Scalar { value, .. } => value.split('.').next().map(str::to_owned),
            Node::Seq { items, .. } => items.first().and_then(Node::as_str).map(str::to_owned),
            Node::Map { .. } => None,
        };
        match name {
            Some(name) if !name.is_empty() => {
                self.check_name(form, &name, &Wants::Resource, line);
            }
            _ => self
                .errors
                .push(format!("line {line}: {form} without a resource name")),
        }
        // The attribute name may itself be computed (`!Ref` inside the list).
        if let Node::Seq { items, .. } = value {
            for item in items.iter().skip(1) {
                self.walk(item);
            }
        }
    }

    /// A `Sub` string, or `[string, {Var: value}]`.
    fn check_sub(&mut self, form: &str, value: &Node) {
        let (text, locals) = match value {
            Node::Scalar { value: text, .. } => (text.as_str(), BTreeSet::new()),
            Node::Seq { items, .. } => {
                let text = items.first().and_then(Node::as_str).unwrap_or_default();
                let vars = items.get(1);
                let locals = vars
                    .map(|v| v.keys().into_iter().map(str::to_owned).collect())
                    .unwrap_or_default();
                if let Some(vars) = vars {
                    for (_, v) in vars.entries() {
                        self.walk(v);
                    }
                }
                (text, locals)
            }
            Node::Map { .. } => {
                self.errors
                    .push(format!("line {}: {form} of a mapping", value.line()));
                return;
            }
        };
        let line = value.line();
        for variable in sub_variables(text) {
            if locals.contains(variable) {
                continue;
            }
            match variable.split_once('.') {
                // `${AWS::Region}` has no dot; `${Table.Arn}` is a GetAtt.
                Some((resource, _attribute)) => {
                    self.check_name(
                        &format!("{form} ${{{variable}}}:"),
                        resource,
                        &Wants::Resource,
                        line,
                    );
                }
                None => self.check_name(
                    &format!("{form} ${{{variable}}}:"),
                    variable,
                    &Wants::Referable,
                    line,
                ),
            }
        }
    }

    fn walk(&mut self, node: &Node) {
        match node.tag() {
            Some("Ref") => {
                let name = node.as_str().unwrap_or_default();
                self.check_name("!Ref", name, &Wants::Referable, node.line());
                return;
            }
            Some("GetAtt") => return self.check_get_att("!GetAtt", node),
            Some("Sub") => return self.check_sub("!Sub", node),
            _ => {}
        }
        match node {
            Node::Scalar { .. } => {}
            Node::Seq { items, .. } => {
                for item in items {
                    self.walk(item);
                }
            }
            Node::Map { entries, .. } => {
                if let [(key, value)] = entries.as_slice() {
                    match key.as_str() {
                        Some("Ref") => {
                            let name = value.as_str().unwrap_or_default();
                            self.check_name("Ref:", name, &Wants::Referable, value.line());
                            return;
                        }
                        Some("Fn::GetAtt") => return self.check_get_att("Fn::GetAtt", value),
                        Some("Fn::Sub") => return self.check_sub("Fn::Sub", value),
                        _ => {}
                    }
                }
                for (key, value) in entries {
                    if key.as_str() == Some("DependsOn") {
                        let names: Vec<&Node> = match value {
                            Node::Seq { items, .. } => items.iter().collect(),
                            other => vec![other],
                        };
                        for name in names {
                            let text = name.as_str().unwrap_or_default();
                            self.check_name("DependsOn", text, &Wants::Resource, name.line());
                        }
                        continue;
                    }
                    self.walk(value);
                }
            }
        }
    }
}

/// The `${...}` variables of a `Sub` string, without the `${!Literal}` escapes.
fn sub_variables(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = after[..end].trim();
        if !inner.starts_with('!') {
            found.push(inner);
        }
        rest = &after[end + 1..];
    }
    found
}

/// Every reference in the document that names nothing it declares.
fn dangling_references(doc: &Node) -> (usize, Vec<String>) {
    let mut checker = Checker::new(doc);
    checker.walk(doc);
    (checker.seen, checker.errors)
}

#[test]
fn every_reference_in_the_template_resolves() {
    let doc = template();
    let (seen, errors) = dangling_references(&doc);
    assert!(
        errors.is_empty(),
        "template.yaml refers to things it does not declare:\n{}",
        errors.join("\n")
    );
    // The template refers to its table, parameters and log groups from both functions; a walk
    // that found only a handful of references would be missing the tags.
    assert!(
        seen >= 15,
        "only {seen} references found; is the walk blind?"
    );
}

#[test]
fn the_checker_reports_dangling_references() {
    let doc = parse(
        r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Retention:
    Type: Number
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Fn:
    Type: AWS::Serverless::Function
    DependsOn: [Table, Ghost]
    Properties:
      Environment:
        Variables:
          TABLE: !Ref Missing
          FINE: !Ref Table
          DAYS: !Ref Retention
          REGION: !Ref AWS::Region
          PARTITION: !Sub "${AWS::Partition}-${!NotAReference}"
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref Misspelt
        - Statement:
            - Effect: Allow
              Action: dynamodb:Query
              Resource:
                - !GetAtt Table.Arn
                - !Sub "${Gone.Arn}/index/*"
                - Fn::Sub: "arn:${AWS::Partition}:s3:::${Bucket}"
Outputs:
  OnParameter:
    Value: !GetAtt Retention.Arn
  LongForm:
    Value:
      Fn::GetAtt: [Nope, Arn]
  LongRef:
    Value:
      Ref: Absent
  WithLocals:
    Value: !Sub
      - "${Local}-${Table}-${Unknown}"
      - Local: !Ref AlsoMissing
"#,
    );
    let (_, errors) = dangling_references(&doc);
    let report = errors.join("\n");
    for name in [
        "Missing",
        "Misspelt",
        "Gone",
        "Bucket",
        "Retention",
        "Nope",
        "Absent",
        "Unknown",
        "AlsoMissing",
        "Ghost",
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!(" {name} names "))),
            "{name} not reported:\n{report}"
        );
    }
    // Declared names, pseudo parameters, escapes and Sub's own variables are fine; the one
    // `Retention` error is the GetAtt on a parameter.
    for fine in [
        "Table names",
        "AWS::Region",
        "AWS::Partition",
        "NotAReference",
        "Local}",
    ] {
        assert!(
            !errors.iter().any(|e| e.contains(fine)),
            "{fine} wrongly reported:\n{report}"
        );
    }
    assert_eq!(
        errors.iter().filter(|e| e.contains("Retention")).count(),
        1,
        "{report}"
    );
    assert_eq!(errors.len(), 10, "{report}");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("line 15: !Ref Missing")),
        "errors carry the template's line:\n{report}"
    );
}

#[test]
fn sub_variables_skip_literal_escapes() {
    assert_eq!(
        sub_variables("https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/x"),
        ["Api", "AWS::Region", "AWS::URLSuffix"]
    );
    assert_eq!(sub_variables("${!Literal} and ${Table.Arn}"), ["Table.Arn"]);
    assert!(sub_variables("no variables, $ {x}").is_empty());
}

// ---------------------------------------------------------------------------------------------
// The table against the adapter's schema

fn key_schema(node: &Node) -> Vec<(String, String)> {
    node.items()
        .iter()
        .map(|k| {
            (
                k.str_at(&["AttributeName"]).to_owned(),
                k.str_at(&["KeyType"]).to_owned(),
            )
        })
        .collect()
}

fn pair(name: &str, kind: &str) -> (String, String) {
    (name.to_owned(), kind.to_owned())
}

#[test]
fn the_table_matches_the_dynamodb_schema() {
    let doc = template();
    let table = doc.at(&["Resources", "Table"]);
    assert_eq!(table.str_at(&["Type"]), "AWS::DynamoDB::Table");
    assert_eq!(table.str_at(&["DeletionPolicy"]), "Retain");
    assert_eq!(table.str_at(&["UpdateReplacePolicy"]), "Retain");
    let props = table.at(&["Properties"]);
    assert_eq!(props.str_at(&["BillingMode"]), "PAY_PER_REQUEST");
    assert!(
        props.get("TableName").is_none(),
        "CloudFormation names the table; the functions get it from SLUICE_TABLE"
    );

    assert_eq!(
        key_schema(props.at(&["KeySchema"])),
        [pair(schema::PK, "HASH"), pair(schema::SK, "RANGE")]
    );

    let defined: BTreeSet<(String, String)> = props
        .at(&["AttributeDefinitions"])
        .items()
        .iter()
        .map(|a| {
            (
                a.str_at(&["AttributeName"]).to_owned(),
                a.str_at(&["AttributeType"]).to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        schema::PK,
        schema::SK,
        schema::GSI1_PK,
        schema::GSI1_SK,
        schema::GSI2_PK,
        schema::GSI2_SK,
        schema::GSI3_PK,
        schema::GSI3_SK,
    ]
    .into_iter()
    .map(|name| pair(name, "S"))
    .collect();
    assert_eq!(defined, expected, "AttributeDefinitions");

    let indexes = props.at(&["GlobalSecondaryIndexes"]).items();
    let names: Vec<&str> = indexes.iter().map(|i| i.str_at(&["IndexName"])).collect();
    assert_eq!(names, [schema::GSI1, schema::GSI2, schema::GSI3]);
    let expected_keys = [
        (schema::GSI1_PK, schema::GSI1_SK),
        (schema::GSI2_PK, schema::GSI2_SK),
        (schema::GSI3_PK, schema::GSI3_SK),
    ];
    for (index, (pk, sk)) in indexes.iter().zip(expected_keys) {
        assert_eq!(
            key_schema(index.at(&["KeySchema"])),
            [pair(pk, "HASH"), pair(sk, "RANGE")],
            "key schema of {}",
            index.str_at(&["IndexName"])
        );
    }

    let projection = |i: usize| indexes[i].at(&["Projection"]);
    assert_eq!(projection(0).str_at(&["ProjectionType"]), "ALL");
    assert_eq!(projection(1).str_at(&["ProjectionType"]), "INCLUDE");
    let projected: BTreeSet<&str> = projection(1)
        .at(&["NonKeyAttributes"])
        .items()
        .iter()
        .filter_map(Node::as_str)
        .collect();
    assert_eq!(
        projected,
        schema::GSI2_PROJECTED.into_iter().collect::<BTreeSet<_>>(),
        "gsi2's NonKeyAttributes"
    );
    assert_eq!(projection(2).str_at(&["ProjectionType"]), "KEYS_ONLY");
    assert!(projection(0).get("NonKeyAttributes").is_none());
    assert!(projection(2).get("NonKeyAttributes").is_none());

    assert_eq!(
        props.str_at(&["TimeToLiveSpecification", "AttributeName"]),
        schema::TTL_ATTRIBUTE
    );
    assert_eq!(
        props.str_at(&["TimeToLiveSpecification", "Enabled"]),
        "true"
    );
    assert_eq!(
        props.str_at(&[
            "PointInTimeRecoverySpecification",
            "PointInTimeRecoveryEnabled"
        ]),
        "true"
    );
    assert_eq!(props.str_at(&["SSESpecification", "SSEEnabled"]), "true");
}

// ---------------------------------------------------------------------------------------------
// The functions

/// The `[[bin]]` names declared by the packages under `functions/`.
fn function_binaries() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let dir = repo_root().join("functions");
    let entries = std::fs::read_dir(&dir).expect("functions/ exists");
    for entry in entries.flatten() {
        let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        let mut in_bin = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(value) = line.strip_prefix("name") {
                let value = value.trim_start().trim_start_matches('=').trim();
                names.insert(value.trim_matches('"').to_owned());
            }
        }
    }
    names
}

#[test]
fn functions_build_existing_binaries_and_read_the_table_from_the_environment() {
    let doc = template();
    let binaries = function_binaries();
    let resources = doc.at(&["Resources"]);
    let globals = doc.at(&["Globals", "Function"]);
    let mut functions = Vec::new();
    for (key, resource) in resources.entries() {
        if resource.get("Type").and_then(Node::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = key.as_str().unwrap_or_default();
        assert_eq!(
            resource.str_at(&["Metadata", "BuildMethod"]),
            "rust-cargolambda",
            "{name}"
        );
        let binary = resource.str_at(&["Metadata", "BuildProperties", "Binary"]);
        assert!(
            binaries.contains(binary),
            "{name} builds binary {binary}, which no package under functions/ declares ({binaries:?})"
        );
        functions.push((name.to_owned(), binary.to_owned()));
    }
    let built: BTreeSet<&str> = functions.iter().map(|(_, b)| b.as_str()).collect();
    assert!(
        built.contains("api") && built.contains("scheduler"),
        "{functions:?}"
    );

    // cargo-lambda runs at the workspace root so that one target directory serves every function.
    assert_eq!(globals.str_at(&["CodeUri"]), ".");
    assert_eq!(globals.str_at(&["Handler"]), "bootstrap");
    assert_eq!(globals.str_at(&["Runtime"]), "provided.al2023");
    let table = globals.at(&["Environment", "Variables", "SLUICE_TABLE"]);
    assert_eq!((table.tag(), table.as_str()), (Some("Ref"), Some("Table")));
    assert_eq!(
        resources.str_at(&[
            "ApiFunction",
            "Properties",
            "Environment",
            "Variables",
            "SLUICE_AUTH"
        ]),
        "api-key"
    );
}

// ---------------------------------------------------------------------------------------------
// The event fixtures

fn fixture(name: &str) -> Value {
    let text = read(&format!("infra/events/{name}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("infra/events/{name}: {e}"))
}

#[test]
fn http_api_fixtures_are_payload_v2_requests_on_the_default_route() {
    // The template gives the API function the $default route (an HttpApi event without path or
    // method), so every request arrives with that route key and its full path.
    assert!(
        api_uses_the_default_route(),
        "ApiFunction's HttpApi event should have no Path and no Method"
    );

    for (file, method, path) in [
        ("api-create-work-pool.json", "POST", "/api/work_pools/"),
        ("api-read-work-pools.json", "POST", "/api/work_pools/filter"),
        ("api-health.json", "GET", "/api/health"),
    ] {
        let event = fixture(file);
        assert_eq!(event["version"], "2.0", "{file}");
        assert_eq!(event["routeKey"], "$default", "{file}");
        assert_eq!(event["requestContext"]["routeKey"], "$default", "{file}");
        assert_eq!(event["requestContext"]["stage"], "$default", "{file}");
        assert_eq!(event["rawPath"], path, "{file}");
        assert_eq!(event["requestContext"]["http"]["path"], path, "{file}");
        assert_eq!(event["requestContext"]["http"]["method"], method, "{file}");
        assert_eq!(event["isBase64Encoded"], false, "{file}");
        assert!(event["requestContext"]["timeEpoch"].is_i64(), "{file}");
        let headers = event["headers"].as_object().expect("headers");
        assert!(
            headers.keys().all(|k| k == &k.to_lowercase()),
            "{file}: payload 2.0 headers are lower case"
        );
        assert_eq!(headers["authorization"], "Bearer PLACEHOLDER", "{file}");
        if let Some(body) = event.get("body").and_then(Value::as_str) {
            let _: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{file}: body is not JSON: {e}"));
            assert_eq!(headers["content-type"], "application/json", "{file}");
            assert_eq!(
                headers["content-length"],
                body.len().to_string(),
                "{file}: content-length"
            );
        } else {
            assert_eq!(method, "GET", "{file}: only the GET has no body");
        }
    }
    let create = fixture("api-create-work-pool.json");
    let body: Value =
        serde_json::from_str(create["body"].as_str().unwrap_or_default()).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"name": "fixture-pool", "type": "process"})
    );
}

fn api_uses_the_default_route() -> bool {
    let doc = template();
    let events = doc.at(&["Resources", "ApiFunction", "Properties", "Events"]);
    events.entries().iter().any(|(_, event)| {
        event.get("Type").and_then(Node::as_str) == Some("HttpApi")
            && event
                .get("Properties")
                .is_some_and(|p| p.get("Path").is_none() && p.get("Method").is_none())
    })
}

#[test]
fn the_scheduler_fixture_is_an_eventbridge_scheduled_event() {
    let event = fixture("scheduler-tick.json");
    assert_eq!(event["version"], "0");
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["detail"], serde_json::json!({}));
    let rule = event["resources"][0].as_str().expect("a rule ARN");
    assert!(
        rule.starts_with("arn:aws:events:") && rule.contains(":rule/"),
        "{rule}"
    );

    // ... which is what the template's Schedule event (an EventBridge rule) delivers.
    let doc = template();
    let tick = doc.at(&[
        "Resources",
        "SchedulerFunction",
        "Properties",
        "Events",
        "Tick",
    ]);
    assert_eq!(tick.str_at(&["Type"]), "Schedule");
    assert_eq!(tick.str_at(&["Properties", "Schedule"]), "rate(1 minute)");
}

/// The timing chain that keeps two push submitters from overlapping: a dispatcher invocation
/// ends before the submission lease does, and SQS redelivers a message only after the lease.
#[test]
fn the_dispatch_queue_outlasts_the_lease_which_outlasts_the_dispatcher() {
    let doc = template();
    let resources = doc.at(&["Resources"]);
    let number = |path: &[&str]| -> i64 {
        let node = resources.at(path);
        node.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{path:?} is not a number"))
    };
    let visibility = number(&["DispatchQueue", "Properties", "VisibilityTimeout"]);
    let dispatcher = number(&["DispatcherFunction", "Properties", "Timeout"]);
    let scheduler = number(&["SchedulerFunction", "Properties", "Timeout"]);
    let lease = sluice_services::push::PushSettings::default().submit_lease_seconds;
    assert!(
        dispatcher < lease,
        "dispatcher timeout {dispatcher} s < lease {lease} s"
    );
    assert!(
        scheduler < lease,
        "scheduler timeout {scheduler} s < lease {lease} s"
    );
    assert!(
        lease < visibility,
        "lease {lease} s < visibility timeout {visibility} s"
    );
    assert_eq!(
        resources.str_at(&["DispatcherFunction", "Properties", "Events", "Due", "Type"]),
        "SQS"
    );
    let responses = resources.at(&[
        "DispatcherFunction",
        "Properties",
        "Events",
        "Due",
        "Properties",
        "FunctionResponseTypes",
    ]);
    assert_eq!(
        responses.items().first().and_then(Node::as_str),
        Some("ReportBatchItemFailures")
    );
}
