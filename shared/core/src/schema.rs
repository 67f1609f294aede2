//! Validation of base job templates and job variables.
//!
//! Follows Prefect's `validate_base_job_template` (`server/schemas/actions.py`) and
//! `server/api/validation.py`, with two Sluice additions: declared variables that the
//! `job_configuration` never uses are reported as warnings, and job variables that the template
//! does not declare are rejected.
//!
//! Schemas are checked with the `jsonschema` crate, as Draft 2020-12 unless the schema names
//! another draft in `$schema`. As in Prefect, `format` is asserted only when a default is checked
//! on its own (unknown formats such as `path` always pass).

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{Draft, JsonType};
use serde_json::{Map, Value};

use crate::job_config::normalize_job_variables;
use crate::templating::{self, TemplateData, python_truthy};

/// Why a base job template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The template is not a JSON object.
    #[error("the base job template must be a json object")]
    NotAnObject,
    /// `job_configuration` or `variables` is missing, empty or not an object.
    #[error(
        "the base job template must contain both a non-empty 'job_configuration' object and a non-empty 'variables' object"
    )]
    MissingSections,
    /// Placeholders in `job_configuration` that `variables.properties` does not declare.
    #[error(
        "the job configuration uses undeclared variable(s): {}; every placeholder must be a property of the variables schema",
        quoted_list(.names)
    )]
    UndeclaredPlaceholders {
        /// The undeclared placeholder names, in order of first use.
        names: Vec<String>,
    },
    /// `variables` is not a valid JSON Schema.
    #[error("the variables schema is not a valid json schema: {message}")]
    InvalidSchema {
        /// What is wrong with it.
        message: String,
    },
    /// Some defaults do not satisfy their schema.
    #[error("the job variable defaults do not satisfy the variables schema: {}", issue_list(.issues))]
    InvalidDefaults {
        /// One entry per failure.
        issues: Vec<VariableIssue>,
    },
    /// A `{"$ref": {"block_document_id": ...}}` default names a block that does not exist.
    #[error(
        "block not found: the default of job variable '{variable}' references block document '{id}'"
    )]
    BlockNotFound {
        /// The variable whose default holds the reference.
        variable: String,
        /// The referenced id.
        id: String,
    },
}

/// Why job variables were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobVariablesError {
    /// Job variables the template does not declare (Sluice's stricter rule).
    #[error("{}", undeclared_message(.names))]
    Undeclared {
        /// The undeclared keys, as given.
        names: Vec<String>,
    },
    /// Two dotted keys disagree about the shape of a variable.
    #[error(
        "job variable '{key}' sets a path through '{parent}', which holds a value that is not an object"
    )]
    ConflictingPath {
        /// The dotted key.
        key: String,
        /// The segment that is not an object.
        parent: String,
    },
    /// The template's variables schema is not a valid JSON Schema.
    #[error("the work pool's variables schema is not a valid json schema: {message}")]
    InvalidSchema {
        /// What is wrong with it.
        message: String,
    },
    /// Values that do not satisfy the schema.
    #[error("{}", issue_list(.issues))]
    Invalid {
        /// One entry per failure.
        issues: Vec<VariableIssue>,
    },
    /// A `{"$ref": {"block_document_id": ...}}` default names a block that does not exist.
    #[error(
        "block not found: the default of job variable '{variable}' references block document '{id}'"
    )]
    BlockNotFound {
        /// The variable whose default holds the reference.
        variable: String,
        /// The referenced id.
        id: String,
    },
}

/// One schema violation: where, and which rule failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableIssue {
    /// The failing value's path (`cpu`, `env.FOO`, `capacity_provider_strategy[0].weight`);
    /// empty for the variables object itself.
    pub path: String,
    /// The failed rule, e.g. `"abc" is not of type "integer"`.
    pub message: String,
}

impl std::fmt::Display for VariableIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "job variables: {}", self.message)
        } else {
            write!(f, "job variable '{}': {}", self.path, self.message)
        }
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn undeclared_message(names: &[String]) -> String {
    let (noun, verb) = if names.len() == 1 {
        ("job variable", "is")
    } else {
        ("job variables", "are")
    };
    format!(
        "{noun} {} {verb} not declared in the work pool's base job template (variables.properties)",
        quoted_list(names)
    )
}

fn issue_list(issues: &[VariableIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What [`validate_base_job_template`] found besides errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateReport {
    /// Declared variables that no placeholder in `job_configuration` uses, in declaration order.
    pub unreferenced_variables: Vec<String>,
    /// One human-readable warning per unreferenced variable.
    pub warnings: Vec<String>,
}

/// How much of a base job template [`validate_base_job_template`] checks.
#[derive(Clone, Copy, Default)]
pub struct TemplateValidation<'a> {
    /// Also check that `variables` is a valid JSON Schema and that the defaults satisfy it.
    /// Prefect does this when a work pool is created, not when it is updated.
    pub check_defaults: bool,
    /// Hydrates `{"$ref": {"block_document_id": ...}}` defaults before they are checked. Without
    /// it such defaults are not checked.
    pub blocks: Option<&'a dyn TemplateData>,
}

impl TemplateValidation<'_> {
    /// The checks Prefect makes when a work pool is created.
    #[must_use]
    pub fn on_create() -> Self {
        Self {
            check_defaults: true,
            blocks: None,
        }
    }

    /// The checks Prefect makes when a work pool is updated.
    #[must_use]
    pub fn on_update() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for TemplateValidation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateValidation")
            .field("check_defaults", &self.check_defaults)
            .field("blocks", &self.blocks.is_some())
            .finish()
    }
}

/// How [`validate_job_variables`] checks job variables.
#[derive(Clone, Copy, Default)]
pub struct JobVariablesValidation<'a> {
    /// Enforce `required`. Prefect does for flow runs (the last layer), not for deployments.
    /// It is skipped anyway when some default was invalid, since that default is then missing.
    pub require_required: bool,
    /// Hydrates `{"$ref": {"block_document_id": ...}}` defaults. Without it such defaults are
    /// left out of the check.
    pub blocks: Option<&'a dyn TemplateData>,
}

impl JobVariablesValidation<'_> {
    /// Prefect's check of a deployment's job variables (`required` not enforced).
    #[must_use]
    pub fn for_deployment() -> Self {
        Self::default()
    }

    /// Prefect's check of a flow run's merged job variables (`required` enforced).
    #[must_use]
    pub fn for_flow_run() -> Self {
        Self {
            require_required: true,
            blocks: None,
        }
    }
}

impl std::fmt::Debug for JobVariablesValidation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobVariablesValidation")
            .field("require_required", &self.require_required)
            .field("blocks", &self.blocks.is_some())
            .finish()
    }
}

/// Python's `json.dumps(value)` text as far as placeholder scanning can tell: non-ASCII and DEL
/// escaped as `\uXXXX` (ensure_ascii), so only ASCII placeholders are seen, as in Prefect.
fn python_json_ascii(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The placeholder names Prefect's template check sees in a `job_configuration`: every kind, in
/// the JSON text of each top-level value (so object keys count too), in order of first use.
#[must_use]
pub fn job_configuration_placeholder_names(job_configuration: &Map<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for value in job_configuration.values() {
        for p in templating::find_placeholders_in_str(&python_json_ascii(value)) {
            if !names.contains(&p.name) {
                names.push(p.name);
            }
        }
    }
    names
}

/// The first segment of a lookup path: the variable `apply_values` reads for it.
fn path_root(name: &str) -> String {
    let normalized = name.replace('[', ".").replace(']', "");
    normalized.split('.').next().unwrap_or_default().to_owned()
}

fn declared_properties(variables: &Value) -> Option<&Map<String, Value>> {
    variables.get("properties").and_then(Value::as_object)
}

/// Checks a base job template; `check_defaults` as Prefect on create (`true`) or update (`false`).
/// Block-reference defaults are not hydrated; see [`validate_base_job_template_with`].
///
/// # Errors
/// See [`SchemaError`].
pub fn validate_base_job_template(
    template: &Value,
    check_defaults: bool,
) -> Result<TemplateReport, SchemaError> {
    validate_base_job_template_with(
        template,
        &TemplateValidation {
            check_defaults,
            blocks: None,
        },
    )
}

/// Checks a base job template.
///
/// `{}` is accepted (no template). Otherwise `job_configuration` and `variables` must both be
/// non-empty objects and every placeholder in `job_configuration` (of any kind, found as Prefect
/// finds them: in each value's ASCII JSON text) must be a property of `variables`. With
/// [`TemplateValidation::check_defaults`], `variables` must also be a valid JSON Schema and the
/// defaults must satisfy it (`required` is not enforced).
///
/// # Errors
/// See [`SchemaError`].
pub fn validate_base_job_template_with(
    template: &Value,
    opts: &TemplateValidation<'_>,
) -> Result<TemplateReport, SchemaError> {
    let Value::Object(sections) = template else {
        return Err(SchemaError::NotAnObject);
    };
    if sections.is_empty() {
        return Ok(TemplateReport::default());
    }
    let (Some(Value::Object(job_configuration)), Some(variables @ Value::Object(_))) =
        (sections.get("job_configuration"), sections.get("variables"))
    else {
        return Err(SchemaError::MissingSections);
    };
    if job_configuration.is_empty() || !python_truthy(variables) {
        return Err(SchemaError::MissingSections);
    }

    let declared = declared_properties(variables);
    let is_declared = |name: &str| declared.is_some_and(|d| d.contains_key(name));
    let used = job_configuration_placeholder_names(job_configuration);
    let undeclared: Vec<String> = used.iter().filter(|n| !is_declared(n)).cloned().collect();
    if !undeclared.is_empty() {
        return Err(SchemaError::UndeclaredPlaceholders { names: undeclared });
    }

    if opts.check_defaults {
        check_schema(variables).map_err(|message| SchemaError::InvalidSchema { message })?;
        let defaults = schema_defaults(variables, opts.blocks)
            .map_err(|(variable, id)| SchemaError::BlockNotFound { variable, id })?;
        let schema = remove_required(&preprocess_schema(variables, true));
        let issues = validation_issues(&schema, &Value::Object(defaults))
            .map_err(|message| SchemaError::InvalidSchema { message })?;
        if !issues.is_empty() {
            return Err(SchemaError::InvalidDefaults { issues });
        }
    }

    // A variable is used when some placeholder reads it, directly or through a path
    // (`{{ env.FOO }}` reads `env`). Both the JSON-text scan and the value scan count, so
    // non-ASCII names are not reported as unused.
    let mut roots: Vec<String> = used.iter().map(|n| path_root(n)).collect();
    roots.extend(used.iter().cloned());
    for p in templating::find_placeholders(&Value::Object(job_configuration.clone())) {
        roots.push(path_root(&p.name));
        roots.push(p.name);
    }
    let mut report = TemplateReport::default();
    for name in declared.into_iter().flat_map(Map::keys) {
        if !roots.contains(name) {
            report.unreferenced_variables.push(name.clone());
            report.warnings.push(format!(
                "variable '{name}' is declared in the variables schema but job_configuration never uses it, so setting it has no effect"
            ));
        }
    }
    Ok(report)
}

/// Checks job variables against a work pool's variables schema, enforcing `required` when
/// `require_required` (Prefect does for flow runs, not for deployments). Block-reference
/// defaults are not hydrated; see [`validate_job_variables_with`].
///
/// # Errors
/// See [`JobVariablesError`].
pub fn validate_job_variables(
    variables_schema: &Value,
    values: &Map<String, Value>,
    require_required: bool,
) -> Result<(), JobVariablesError> {
    validate_job_variables_with(
        variables_schema,
        values,
        &JobVariablesValidation {
            require_required,
            blocks: None,
        },
    )
}

/// Checks job variables against a work pool's variables schema.
///
/// Every key must be declared in `variables.properties`; a dotted key (`env.FOO`) counts as its
/// first segment. The values, with dotted keys expanded, are laid over the schema defaults
/// (defaults that fail their own schema are left out, as Prefect does) and validated; `null`
/// is accepted for optional typed properties, as Prefect's schema preprocessing allows.
/// A missing or empty schema means there is nothing to check against.
///
/// # Errors
/// See [`JobVariablesError`].
pub fn validate_job_variables_with(
    variables_schema: &Value,
    values: &Map<String, Value>,
    opts: &JobVariablesValidation<'_>,
) -> Result<(), JobVariablesError> {
    if !variables_schema.is_object() || !python_truthy(variables_schema) {
        return Ok(());
    }
    let declared = declared_properties(variables_schema);
    let undeclared: Vec<String> = values
        .keys()
        .filter(|key| {
            let root = if key.contains('.') {
                path_root(key)
            } else {
                (*key).clone()
            };
            !declared.is_some_and(|d| d.contains_key(&root))
        })
        .cloned()
        .collect();
    if !undeclared.is_empty() {
        return Err(JobVariablesError::Undeclared { names: undeclared });
    }

    check_schema(variables_schema)
        .map_err(|message| JobVariablesError::InvalidSchema { message })?;

    let mut merged = schema_defaults(variables_schema, opts.blocks)
        .map_err(|(variable, id)| JobVariablesError::BlockNotFound { variable, id })?;
    // Each default is checked alone against the schema as written, without `required`.
    let raw = compile(&remove_required(variables_schema), true)
        .map_err(|message| JobVariablesError::InvalidSchema { message })?;
    let before = merged.len();
    merged.retain(|name, default| {
        let mut alone = Map::new();
        alone.insert(name.clone(), default.clone());
        issues_of(&raw, &Value::Object(alone)).is_empty()
    });
    let invalid_defaults = merged.len() != before;

    let normalized = normalize_job_variables(values).map_err(|e| match e {
        crate::job_config::JobConfigError::ConflictingPath { key, parent } => {
            JobVariablesError::ConflictingPath { key, parent }
        }
        other => JobVariablesError::InvalidSchema {
            message: other.to_string(),
        },
    })?;
    merged.extend(normalized);

    let mut schema = preprocess_schema(variables_schema, true);
    if !opts.require_required || invalid_defaults {
        schema = remove_required(&schema);
    }
    let issues = validation_issues(&schema, &Value::Object(merged))
        .map_err(|message| JobVariablesError::InvalidSchema { message })?;
    if issues.is_empty() {
        Ok(())
    } else {
        Err(JobVariablesError::Invalid { issues })
    }
}

/// Why flow-run parameters were refused against a deployment's `parameter_openapi_schema`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParametersError {
    /// The deployment's parameter schema cannot be compiled.
    #[error("the deployment's parameter schema is not a valid json schema: {0}")]
    InvalidSchema(String),
    /// Parameters that do not satisfy the schema, one entry per failure.
    #[error("{}", parameter_issue_list(.0))]
    Invalid(Vec<VariableIssue>),
}

fn parameter_issue_list(issues: &[VariableIssue]) -> String {
    issues
        .iter()
        .map(|i| {
            if i.path.is_empty() {
                format!("parameters: {}", i.message)
            } else {
                format!("parameter '{}': {}", i.path, i.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks a run's parameters against its deployment's parameter schema, as Prefect does when
/// the schema is enforced: the schema is preprocessed the same way as for job variables
/// (nullable optionals, block references), `required` is enforced, and parameters the schema
/// does not name are allowed unless the schema itself forbids them. An empty or missing schema
/// accepts everything.
///
/// # Errors
/// See [`ParametersError`].
pub fn validate_parameters(
    schema: &Value,
    parameters: &Map<String, Value>,
) -> Result<(), ParametersError> {
    if !schema.is_object() || !python_truthy(schema) {
        return Ok(());
    }
    check_schema(schema).map_err(ParametersError::InvalidSchema)?;
    let schema = preprocess_schema(schema, false);
    let issues = validation_issues(&schema, &Value::Object(parameters.clone()))
        .map_err(ParametersError::InvalidSchema)?;
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ParametersError::Invalid(issues))
    }
}

/// Every `properties.<name>.default` that is present (null included), with block references
/// hydrated when `blocks` is given and left out otherwise. `Err((variable, id))` for a
/// reference to a missing block.
fn schema_defaults(
    variables: &Value,
    blocks: Option<&dyn TemplateData>,
) -> Result<Map<String, Value>, (String, String)> {
    let mut defaults = Map::new();
    for (name, attrs) in declared_properties(variables).into_iter().flatten() {
        let Some(default) = attrs.as_object().and_then(|a| a.get("default")) else {
            continue;
        };
        let reference = default.as_object().and_then(|d| d.get("$ref"));
        let Some(reference) = reference else {
            defaults.insert(name.clone(), default.clone());
            continue;
        };
        let Some(blocks) = blocks else {
            continue;
        };
        let id = match reference.get("block_document_id") {
            None | Some(Value::Null) => continue,
            Some(id) => templating::python_str(id),
        };
        let missing = || (name.clone(), id.clone());
        // Block documents are addressed by UUID; anything else cannot name one.
        let parsed = uuid::Uuid::parse_str(&id).map_err(|_| missing())?;
        let data = blocks
            .block_by_id(&parsed.hyphenated().to_string())
            .or_else(|| blocks.block_by_id(&id))
            .ok_or_else(missing)?;
        defaults.insert(name.clone(), data);
    }
    Ok(defaults)
}

/// The draft a schema is checked under: its `$schema` if that names a known draft, else 2020-12
/// (Prefect always uses 2020-12).
fn draft_of(schema: &Value) -> Draft {
    match Draft::default().detect(schema) {
        Draft::Unknown => Draft::Draft202012,
        known => known,
    }
}

/// A copy without a `$schema` the crate would try (and fail) to fetch.
fn without_unknown_meta(schema: &Value) -> Value {
    let mut copy = schema.clone();
    if Draft::default().detect(schema) == Draft::Unknown
        && let Some(map) = copy.as_object_mut()
    {
        map.shift_remove("$schema");
    }
    copy
}

/// Checks `schema` against its draft's meta-schema.
fn check_schema(schema: &Value) -> Result<(), String> {
    let schema = without_unknown_meta(schema);
    let result = match draft_of(&schema) {
        Draft::Draft4 => jsonschema::draft4::meta::validate(&schema),
        Draft::Draft6 => jsonschema::draft6::meta::validate(&schema),
        Draft::Draft7 => jsonschema::draft7::meta::validate(&schema),
        Draft::Draft201909 => jsonschema::draft201909::meta::validate(&schema),
        _ => jsonschema::draft202012::meta::validate(&schema),
    };
    result.map_err(|e| {
        let at = e.instance_path().to_string();
        if at.is_empty() {
            e.to_string()
        } else {
            format!("{e} (at {at})")
        }
    })
}

/// Compiles `schema`; `Err` carries the reason it cannot be.
///
/// Prefect asserts `format` only when it checks each default on its own; its final validation
/// goes through `jsonschema.validate`, which is given no format checker.
fn compile(schema: &Value, formats: bool) -> Result<jsonschema::Validator, String> {
    let schema = without_unknown_meta(schema);
    jsonschema::options()
        .with_draft(draft_of(&schema))
        .should_validate_formats(formats)
        .build(&schema)
        .map_err(|e| e.to_string())
}

/// Every violation of `instance`.
fn issues_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<VariableIssue> {
    validator
        .iter_errors(instance)
        .map(|error| VariableIssue {
            path: render_path(error.instance_path()),
            message: rule_message(&error),
        })
        .collect()
}

/// Validates `instance`, returning every violation. `Err` when the schema cannot be compiled.
fn validation_issues(schema: &Value, instance: &Value) -> Result<Vec<VariableIssue>, String> {
    Ok(issues_of(&compile(schema, false)?, instance))
}

/// `a.b[0].c` from the JSON pointer `/a/b/0/c`.
fn render_path(location: &jsonschema::paths::Location) -> String {
    let mut out = String::new();
    for segment in location.segments() {
        match segment {
            LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
            LocationSegment::Property(p) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&p);
            }
        }
    }
    out
}

/// The crate's message, except that enums list every allowed value, and a `null` that
/// preprocessing made acceptable is not listed as an expected type of a non-null value
/// (`"abc" is not of type "integer"`).
fn rule_message(error: &jsonschema::ValidationError<'_>) -> String {
    if let ValidationErrorKind::Enum { options } = error.kind() {
        let allowed = match options.as_ref() {
            Value::Array(items) => items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        return format!("{} is not one of {allowed}", error.instance());
    }
    if let ValidationErrorKind::Type {
        kind: TypeKind::Multiple(types),
    } = error.kind()
        && !error.instance().is_null()
        && types.contains(JsonType::Null)
    {
        let named: Vec<String> = types
            .iter()
            .filter(|t| *t != JsonType::Null)
            .map(|t| format!("\"{t}\""))
            .collect();
        return match named.as_slice() {
            [one] => format!("{} is not of type {one}", error.instance()),
            _ => format!("{} is not of types {}", error.instance(), named.join(", ")),
        };
    }
    error.to_string()
}

/// Prefect's `remove_nested_keys(["required"], schema)`: drops every `required` key reachable
/// through objects (lists are not entered, as in Prefect).
fn remove_required(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "required")
                .map(|(k, v)| (k.clone(), remove_required(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn required_names(schema: &Map<String, Value>) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Prefect's `preprocess_schema`, which repairs schemas generated by Pydantic v1:
///
/// - an optional property with a `type` (other than `null`) also accepts `null`, unless it has a
///   default and `allow_none_with_default` is off (nested properties never get that flag);
/// - tuple-style `items` lists become `prefixItems`;
/// - block definitions (with `block_type_slug`) also accept `{"$ref": ...}` references.
///   (see [`block_or_reference`]).
///
/// Prefect writes the nullable type as `anyOf: [{type}, {type: null}]`; a type list is the same
/// constraint and keeps error messages about the type itself.
fn preprocess_schema(schema: &Value, allow_none_with_default: bool) -> Value {
    let mut schema = schema.clone();
    let Some(root) = schema.as_object_mut() else {
        return schema;
    };
    let required = required_names(root);
    if let Some(Value::Object(properties)) = root.get_mut("properties") {
        process_properties(properties, &required, allow_none_with_default);
    }
    if let Some(Value::Object(definitions)) = root.get_mut("definitions") {
        let mut block_alternatives = Vec::new();
        for (key, definition) in definitions.iter_mut() {
            let Some(definition) = definition.as_object_mut() else {
                continue;
            };
            let required = required_names(definition);
            if let Some(Value::Object(properties)) = definition.get_mut("properties") {
                process_properties(properties, &required, allow_none_with_default);
            }
            if definition.contains_key("block_type_slug") {
                let title = definition
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or(key)
                    .to_owned();
                block_alternatives.push((title, Value::Object(definition.clone())));
            }
        }
        for (title, definition) in block_alternatives {
            definitions.insert(title, block_or_reference(definition));
        }
    }
    schema
}

fn block_or_reference(definition: Value) -> Value {
    let reference = serde_json::json!({
        "type": "object",
        "properties": {
            "$ref": {
                "oneOf": [
                    {"type": "string", "format": "uuid"},
                    {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "minProperties": 1
                    }
                ]
            }
        },
        "required": ["$ref"]
    });
    // Prefect uses `oneOf`, which rejects a reference to a block whose schema requires no
    // field (the reference then also matches the block's own schema); `anyOf` accepts it.
    let mut wrapper = Map::new();
    wrapper.insert(
        "anyOf".to_owned(),
        Value::Array(vec![definition, reference]),
    );
    Value::Object(wrapper)
}

fn process_properties(
    properties: &mut Map<String, Value>,
    required: &[String],
    allow_none_with_default: bool,
) {
    for (key, property) in properties.iter_mut() {
        let Some(property) = property.as_object_mut() else {
            continue;
        };
        let nullable = !required.contains(key)
            && property
                .get("type")
                .is_some_and(|t| t.as_str() != Some("null"))
            && (!property.contains_key("default") || allow_none_with_default);
        if nullable && let Some(ty) = property.shift_remove("type") {
            let mut types = match ty {
                Value::Array(types) => types,
                single => vec![single],
            };
            let null = Value::String("null".to_owned());
            if !types.contains(&null) {
                types.push(null);
            }
            // Prefect assigns a fresh `anyOf`, dropping one that was there.
            property.shift_remove("anyOf");
            property.insert("type".to_owned(), Value::Array(types));
        }
        let tuple_items =
            matches!(property.get("items"), Some(Value::Array(items)) if !items.is_empty());
        if tuple_items
            && !property.get("prefixItems").is_some_and(python_truthy)
            && let Some(items) = property.shift_remove("items")
        {
            property.insert("prefixItems".to_owned(), items);
        }
        if property.contains_key("properties") {
            let nested_required = required_names(property);
            if let Some(Value::Object(nested)) = property.get_mut("properties") {
                process_properties(nested, &nested_required, false);
            }
        }
    }
}

/// Prefect's answer to a form check (`POST /ui/schemas/validate`, its `build_error_obj`):
/// `{"errors": [...], "valid": bool}`, errors nested by property (`{"property", "errors"}`)
/// and list index (`{"index", "errors"}`), a missing required property reported under its own
/// name, and a hydration failure in place of any schema error at its path. The schema is
/// preprocessed as for a run's parameters and formats are checked, as Prefect's UI route does.
///
/// # Errors
/// The schema is not a valid JSON schema (`Invalid schema: ...`, Prefect's 422).
pub fn validate_form(
    schema: &Value,
    hydrated: &crate::hydration::Hydrated,
) -> Result<Value, String> {
    use crate::hydration::{PathPart, Placeholder};
    let schema = preprocess_schema(schema, false);
    check_schema(&schema).map_err(|e| format!("Invalid schema: {e}"))?;
    let validator = compile(&schema, true).map_err(|e| format!("Invalid schema: {e}"))?;
    let mut found: Vec<(Vec<PathPart>, String)> = Vec::new();
    for error in validator.iter_errors(&hydrated.value) {
        let mut path: Vec<PathPart> = error
            .instance_path()
            .segments()
            .map(|s| match s {
                LocationSegment::Index(i) => PathPart::Index(i),
                LocationSegment::Property(p) => PathPart::Property(p.to_string()),
            })
            .collect();
        if hydrated.placeholders.iter().any(|(p, _)| *p == path) {
            // The placeholder speaks for this value (or, for a template, keeps it unchecked).
            continue;
        }
        if let ValidationErrorKind::Required { property } = error.kind() {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            path.push(PathPart::Property(name));
        }
        found.push((path, rule_message(&error)));
    }
    for (path, placeholder) in &hydrated.placeholders {
        if let Placeholder::Error(message) = placeholder {
            found.push((path.clone(), message.clone()));
        }
    }
    let mut errors: Vec<Value> = Vec::new();
    for (path, message) in found {
        insert_form_error(&mut errors, &path, message);
    }
    let valid = errors.is_empty();
    Ok(serde_json::json!({ "errors": errors, "valid": valid }))
}

/// Files `message` under `path` in Prefect's nested error list.
fn insert_form_error(list: &mut Vec<Value>, path: &[crate::hydration::PathPart], message: String) {
    use crate::hydration::PathPart;
    let Some((first, rest)) = path.split_first() else {
        list.push(Value::String(message));
        return;
    };
    let (key, id) = match first {
        PathPart::Property(p) => ("property", Value::String(p.clone())),
        PathPart::Index(i) => ("index", Value::from(*i)),
    };
    if rest.is_empty() {
        list.push(serde_json::json!({ key: id, "errors": [message] }));
        return;
    }
    let position = list
        .iter()
        .position(|e| e.get(key) == Some(&id))
        .unwrap_or_else(|| {
            list.push(serde_json::json!({ key: id, "errors": [] }));
            list.len() - 1
        });
    if let Some(Value::Array(inner)) = list[position].get_mut("errors") {
        insert_form_error(inner, rest, message);
    }
}

/// What [`coerce_job_variables`] made of job variables written for another era.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coerced {
    /// The values, strings turned into the integer, number or boolean their variable declares
    /// (and numbers or booleans into strings where a string is declared).
    pub values: Map<String, Value>,
    /// Keys the pool's variables do not declare, left out (dotted keys count by their root).
    pub undeclared: Vec<String>,
    /// Values that are not, and cannot be made, of their variable's type.
    pub invalid: Vec<VariableIssue>,
}

/// The JSON types a property schema allows (`type`, or the types of its `anyOf`/`oneOf`).
fn declared_types(property: &Value) -> Vec<String> {
    let mut types = Vec::new();
    let mut add = |t: &Value| match t {
        Value::String(s) => types.push(s.clone()),
        Value::Array(items) => {
            types.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {}
    };
    if let Some(t) = property.get("type") {
        add(t);
    }
    for key in ["anyOf", "oneOf"] {
        for option in property
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = option.get("type") {
                add(t);
            }
        }
    }
    types
}

/// One value made to fit `types`, if it can be: `"512"` → `512` for an integer, `"true"` →
/// `true` for a boolean, `2` → `"2"` for a string. `None` when it cannot.
fn coerce_value(value: &Value, types: &[String]) -> Option<Value> {
    let allows = |t: &str| types.iter().any(|x| x == t);
    let fits = match value {
        Value::Null => allows("null"),
        Value::Bool(_) => allows("boolean"),
        Value::Number(n) => allows("number") || (allows("integer") && (n.is_i64() || n.is_u64())),
        Value::String(_) => allows("string"),
        Value::Array(_) => allows("array"),
        Value::Object(_) => allows("object"),
    };
    if fits || types.is_empty() {
        return Some(value.clone());
    }
    match value {
        Value::String(text) => {
            let t = text.trim();
            if allows("integer")
                && let Ok(i) = t.parse::<i64>()
            {
                return Some(Value::from(i));
            }
            if allows("number")
                && let Ok(f) = t.parse::<f64>()
                && let Some(n) = serde_json::Number::from_f64(f)
            {
                return Some(Value::Number(n));
            }
            if allows("boolean") {
                match t.to_ascii_lowercase().as_str() {
                    "true" => return Some(Value::Bool(true)),
                    "false" => return Some(Value::Bool(false)),
                    _ => {}
                }
            }
            if (allows("object") || allows("array"))
                && let Ok(parsed) = serde_json::from_str::<Value>(t)
                && ((allows("object") && parsed.is_object())
                    || (allows("array") && parsed.is_array()))
            {
                return Some(parsed);
            }
            None
        }
        Value::Number(n) if allows("string") => Some(Value::String(n.to_string())),
        Value::Number(n) if allows("integer") => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| Value::from(f as i64)),
        Value::Bool(b) if allows("string") => Some(Value::String(b.to_string())),
        _ => None,
    }
}

/// Job variables (Prefect 2's `infra_overrides`, which its CLI wrote as strings) made to fit a
/// pool's variables schema: values coerced to their variable's declared type, undeclared keys
/// left out and named, values that cannot fit named with the reason.
#[must_use]
pub fn coerce_job_variables(variables_schema: &Value, values: &Map<String, Value>) -> Coerced {
    let declared = declared_properties(variables_schema);
    let mut out = Coerced::default();
    for (key, value) in values {
        let root = if key.contains('.') {
            path_root(key)
        } else {
            key.clone()
        };
        let Some(property) = declared.and_then(|d| d.get(&root)) else {
            out.undeclared.push(key.clone());
            continue;
        };
        if key.contains('.') {
            // A dotted key sets part of a variable; its own type is not declared here.
            out.values.insert(key.clone(), value.clone());
            continue;
        }
        let types = declared_types(property);
        match coerce_value(value, &types) {
            Some(v) => {
                out.values.insert(key.clone(), v);
            }
            None => out.invalid.push(VariableIssue {
                path: key.clone(),
                message: format!("{value} is not of type {}", types.join(" or ")),
            }),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templating::PrefetchedData;

    const BLOCK_ID: &str = "11111111-1111-1111-1111-111111111111";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn parameters_follow_the_deployment_schema() {
        // The shape Prefect generates for `def flow(n: int, name: str = "x", when: date | None = None)`.
        let schema = json!({
            "type": "object",
            "title": "Parameters",
            "properties": {
                "n": {"type": "integer", "title": "n", "position": 0},
                "name": {"type": "string", "title": "name", "default": "x", "position": 1},
                "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}], "default": null, "position": 2}
            },
            "required": ["n"],
            "definitions": {}
        });
        assert_eq!(validate_parameters(&schema, &obj(json!({"n": 3}))), Ok(()));
        assert_eq!(
            validate_parameters(
                &schema,
                &obj(json!({"n": 3, "name": "y", "when": null, "extra": 1}))
            ),
            Ok(())
        );
        let err =
            validate_parameters(&schema, &obj(json!({"n": "three"}))).expect_err("wrong type");
        assert_eq!(
            err.to_string(),
            r#"parameter 'n': "three" is not of type "integer""#
        );
        let err = validate_parameters(&schema, &obj(json!({"name": "y"}))).expect_err("missing");
        assert!(
            err.to_string().contains("\"n\" is a required property"),
            "{err}"
        );
        // An empty schema (Prefect's default) accepts anything.
        assert_eq!(
            validate_parameters(&json!({}), &obj(json!({"a": 1}))),
            Ok(())
        );
        assert_eq!(
            validate_parameters(
                &json!({"type": "object", "properties": {}}),
                &obj(json!({"a": 1}))
            ),
            Ok(())
        );
    }

    fn create(template: &Value) -> Result<TemplateReport, SchemaError> {
        validate_base_job_template_with(template, &TemplateValidation::on_create())
    }

    fn template(job_configuration: Value, properties: Value) -> Value {
        let mut variables = Map::new();
        variables.insert("properties".to_owned(), properties);
        variables.insert("required".to_owned(), json!([]));
        let mut t = Map::new();
        t.insert("job_configuration".to_owned(), job_configuration);
        t.insert("variables".to_owned(), Value::Object(variables));
        Value::Object(t)
    }

    #[test]
    fn template_structure() {
        assert_eq!(create(&json!({})), Ok(TemplateReport::default()));
        assert_eq!(create(&json!([])), Err(SchemaError::NotAnObject));
        for bad in [
            json!({"job_configuration": {"a": "{{ a }}"}}),
            json!({"variables": {"properties": {}}}),
            json!({"job_configuration": {}, "variables": {"properties": {}}}),
            json!({"job_configuration": {"a": 1}, "variables": {}}),
            json!({"job_configuration": {"a": 1}, "variables": null}),
            json!({"job_configuration": ["a"], "variables": {"type": "object"}}),
            json!({"job_configuration": {"a": 1}, "variables": ["x"]}),
        ] {
            assert_eq!(create(&bad), Err(SchemaError::MissingSections), "{bad}");
            assert_eq!(
                validate_base_job_template_with(&bad, &TemplateValidation::on_update()),
                Err(SchemaError::MissingSections)
            );
        }
        assert_eq!(
            SchemaError::MissingSections.to_string(),
            "the base job template must contain both a non-empty 'job_configuration' object and a non-empty 'variables' object"
        );
    }

    #[test]
    fn every_placeholder_must_be_declared() {
        // (job_configuration, declared properties, undeclared names)
        let table: [(Value, Value, &[&str]); 10] = [
            (
                json!({"thing_one": "{{ expected_variable }}"}),
                json!({"wrong_variable": {}}),
                &["expected_variable"],
            ),
            (
                json!({"thing_one": "{{ expected_variable_1 }}", "thing_two": "{{ expected_variable_2 }}"}),
                json!({"not_expected_variable_1": {}, "expected_variable_2": {}}),
                &["expected_variable_1"],
            ),
            (
                json!({"thing_one": "{{ expected_variable }}"}),
                json!({"expected_variable": {}}),
                &[],
            ),
            // Nested values, lists and object keys count.
            (
                json!({"a": {"b": ["x-{{ deep }}"]}, "c": {"{{ key }}": 1}}),
                json!({}),
                &["deep", "key"],
            ),
            // So do blocks, variables and environment placeholders, by their full names.
            (
                json!({"a": "{{ prefect.blocks.secret.x }}", "b": "{{ prefect.variables.v }}", "c": "{{ $HOME }}"}),
                json!({}),
                &["prefect.blocks.secret.x", "prefect.variables.v", "$HOME"],
            ),
            (
                json!({"a": "{{ env.FOO }}"}),
                json!({"env": {}}),
                &["env.FOO"],
            ),
            (json!({"a": "{{ $HOME }}"}), json!({"$HOME": {}}), &[]),
            // The JSON text escapes non-ASCII and control characters, hiding these placeholders.
            (
                json!({"a": "{{ café }}", "b": "{{\n x }}", "c": "{{\ty}}"}),
                json!({}),
                &[],
            ),
            (json!({"a": "{{ a b }}", "b": 1, "c": null}), json!({}), &[]),
            (
                json!({"a": "{{ x }}{{x}}", "b": "{{ y }}"}),
                json!({"q": {}}),
                &["x", "y"],
            ),
        ];
        for (job_configuration, properties, undeclared) in table {
            let t = template(job_configuration.clone(), properties);
            let got = validate_base_job_template_with(&t, &TemplateValidation::on_update());
            if undeclared.is_empty() {
                assert!(got.is_ok(), "{job_configuration}: {got:?}");
            } else {
                let names: Vec<String> = undeclared.iter().map(|n| (*n).to_owned()).collect();
                assert_eq!(
                    got,
                    Err(SchemaError::UndeclaredPlaceholders { names }),
                    "{job_configuration}"
                );
            }
        }
        let err = create(&template(
            json!({"a": "{{ x }}", "b": "{{ y }}"}),
            json!({}),
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the job configuration uses undeclared variable(s): 'x', 'y'; every placeholder must be a property of the variables schema"
        );
    }

    #[test]
    fn schema_and_defaults_are_checked_on_create_only() {
        let table = [
            (
                json!({"cpu": {"type": "nope"}}),
                Some("the variables schema is not a valid json schema"),
            ),
            (
                json!({"cpu": {"type": "integer", "default": "x"}}),
                Some(
                    r#"the job variable defaults do not satisfy the variables schema: job variable 'cpu': "x" is not of type "integer""#,
                ),
            ),
            (
                json!({"cpu": {"type": "integer", "enum": [1, 2], "default": null}}),
                Some(
                    "the job variable defaults do not satisfy the variables schema: job variable 'cpu': null is not one of 1, 2",
                ),
            ),
            // Null defaults of typed properties pass; `required` is not enforced; formats are not asserted.
            (json!({"cpu": {"type": "integer", "default": null}}), None),
            (
                json!({"e": {"type": "string", "format": "email", "default": "nope"}}),
                None,
            ),
            (
                json!({"cpu": {"type": "integer", "default": 1}, "x": {}}),
                None,
            ),
        ];
        for (properties, error) in table {
            let mut t = template(json!({"x": "{{ x }}"}), properties.clone());
            // `required` names a variable without a default; creating the pool does not care.
            t["variables"]["properties"]["x"] = json!({});
            t["variables"]["required"] = json!(["x"]);
            let on_update = validate_base_job_template_with(&t, &TemplateValidation::on_update());
            assert!(on_update.is_ok(), "{properties}: {on_update:?}");
            match (create(&t), error) {
                (Ok(_), None) => {}
                (Err(e), Some(prefix)) => {
                    assert!(e.to_string().starts_with(prefix), "{properties}: {e}")
                }
                (got, want) => panic!("{properties}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn schema_drafts() {
        // Draft 4's boolean `exclusiveMaximum` is only valid when the schema says it is draft 4.
        let properties = json!({"cpu": {"type": "integer", "maximum": 5, "exclusiveMaximum": true, "default": 5}});
        let mut t = json!({"job_configuration": {"cpu": "{{ cpu }}"}, "variables": {"properties": properties}});
        assert!(matches!(create(&t), Err(SchemaError::InvalidSchema { .. })));
        t["variables"]["$schema"] = json!("http://json-schema.org/draft-04/schema#");
        let err = create(&t).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the job variable defaults do not satisfy the variables schema: job variable 'cpu': 5 is greater than or equal to the maximum of 5"
        );
        // An unknown meta-schema is read as 2020-12.
        t["variables"]["$schema"] = json!("https://example.com/my-meta");
        t["variables"]["properties"]["cpu"] = json!({"type": "integer", "default": 5});
        assert!(create(&t).is_ok());
        // `definitions` and `$ref` resolve inside the schema; unknown targets do not.
        let t = json!({
            "job_configuration": {"p": "{{ p }}"},
            "variables": {
                "properties": {"p": {"allOf": [{"$ref": "#/definitions/P"}], "default": {"w": "heavy"}}},
                "definitions": {"P": {"type": "object", "properties": {"w": {"type": "integer"}}}}
            }
        });
        assert_eq!(
            create(&t).unwrap_err().to_string(),
            r#"the job variable defaults do not satisfy the variables schema: job variable 'p.w': "heavy" is not of type "integer""#
        );
        let t = json!({
            "job_configuration": {"p": "{{ p }}"},
            "variables": {"properties": {"p": {"$ref": "#/definitions/Missing", "default": 1}}}
        });
        assert!(matches!(create(&t), Err(SchemaError::InvalidSchema { .. })));
    }

    #[test]
    fn block_reference_defaults() {
        let t = json!({
            "job_configuration": {"creds": "{{ creds }}"},
            "variables": {
                "properties": {"creds": {"allOf": [{"$ref": "#/definitions/Creds"}], "default": {"$ref": {"block_document_id": BLOCK_ID}}}},
                "definitions": {"Creds": {
                    "title": "Creds", "type": "object", "block_type_slug": "creds",
                    "properties": {"region": {"type": "string"}}, "required": ["region"]
                }}
            }
        });
        // Without block data the reference is not checked.
        assert!(create(&t).is_ok());
        let good = PrefetchedData::default().with_block_id(BLOCK_ID, json!({"region": "eu"}));
        let bad = PrefetchedData::default().with_block_id(BLOCK_ID, json!({"region": 1}));
        let empty = PrefetchedData::default();
        let with = |data: &'static PrefetchedData| TemplateValidation {
            check_defaults: true,
            blocks: Some(data),
        };
        let leak = |d: PrefetchedData| -> &'static PrefetchedData { Box::leak(Box::new(d)) };
        assert!(validate_base_job_template_with(&t, &with(leak(good))).is_ok());
        assert!(matches!(
            validate_base_job_template_with(&t, &with(leak(bad))),
            Err(SchemaError::InvalidDefaults { .. })
        ));
        assert_eq!(
            validate_base_job_template_with(&t, &with(leak(empty.clone())))
                .unwrap_err()
                .to_string(),
            format!(
                "block not found: the default of job variable 'creds' references block document '{BLOCK_ID}'"
            )
        );
        let mut not_uuid = t.clone();
        not_uuid["variables"]["properties"]["creds"]["default"] =
            json!({"$ref": {"block_document_id": "nope"}});
        assert!(matches!(
            validate_base_job_template_with(&not_uuid, &with(leak(empty))),
            Err(SchemaError::BlockNotFound { .. })
        ));
    }

    #[test]
    fn unused_variables_are_reported() {
        let t = template(
            json!({"a": "{{ used }}", "b": "x-{{ env.FOO }}", "c": ["{{ list[0] }}"]}),
            json!({"used": {}, "unused": {}, "env": {}, "env.FOO": {}, "list": {}, "list[0]": {}, "also_unused": {"default": 1}}),
        );
        let report = create(&t).unwrap();
        assert_eq!(report.unreferenced_variables, ["unused", "also_unused"]);
        assert_eq!(
            report.warnings,
            [
                "variable 'unused' is declared in the variables schema but job_configuration never uses it, so setting it has no effect",
                "variable 'also_unused' is declared in the variables schema but job_configuration never uses it, so setting it has no effect",
            ]
        );
        // A non-ASCII placeholder is invisible to the declaration check but still counts as a use.
        let t = template(json!({"a": "{{ café }}"}), json!({"café": {}}));
        assert!(create(&t).unwrap().warnings.is_empty());
    }

    fn ecs_like() -> Value {
        json!({
            "type": "object",
            "properties": {
                "cpu": {"type": "integer"},
                "mem": {"type": "integer", "default": 2048},
                "launch_type": {"type": "string", "enum": ["FARGATE", "EC2"], "default": "FARGATE"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "strategy": {"type": "array", "items": {"$ref": "#/definitions/Cap"}},
                "creds": {"allOf": [{"$ref": "#/definitions/Creds"}]},
                "flag": {"type": "boolean", "default": "not a bool"},
                "pairs": {"type": "array", "items": {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]}}
            },
            "required": ["cpu"],
            "definitions": {
                "Cap": {"type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "integer"}}, "required": ["name", "weight"]},
                "Creds": {"title": "Creds", "type": "object", "block_type_slug": "creds", "properties": {"key": {"type": "string"}}}
            }
        })
    }

    #[test]
    fn job_variables() {
        let schema = ecs_like();
        let deployment = JobVariablesValidation::for_deployment();
        let run = JobVariablesValidation::for_flow_run();
        // (values, deployment verdict, flow-run verdict); `None` means valid.
        let table: [(Value, Option<&str>, Option<&str>); 16] = [
            (json!({}), None, None),
            (
                json!({"cpu": 1, "env": {"A": "1"}, "env.B": "2"}),
                None,
                None,
            ),
            (json!({"env": null, "mem": null}), None, None),
            // Required variables are not nullable, even where `required` is not enforced.
            (
                json!({"cpu": null}),
                Some(r#"job variable 'cpu': null is not of type "integer""#),
                None,
            ),
            (
                json!({"cpu": "abc"}),
                Some(r#"job variable 'cpu': "abc" is not of type "integer""#),
                Some(r#"job variable 'cpu': "abc" is not of type "integer""#),
            ),
            (json!({"cpu": 1.0}), None, None),
            (
                json!({"cpu": true}),
                Some(r#"job variable 'cpu': true is not of type "integer""#),
                None,
            ),
            (
                json!({"launch_type": null}),
                Some(r#"job variable 'launch_type': null is not one of "FARGATE", "EC2""#),
                None,
            ),
            (
                json!({"env": {"A": null}}),
                Some(r#"job variable 'env.A': null is not of type "string""#),
                None,
            ),
            (
                json!({"env.A": 1}),
                Some(r#"job variable 'env.A': 1 is not of type "string""#),
                None,
            ),
            (
                json!({"strategy": [{"name": "x", "weight": "w"}]}),
                Some(r#"job variable 'strategy[0].weight': "w" is not of type "integer""#),
                None,
            ),
            // `required` is removed everywhere objects lead, definitions included…
            (json!({"strategy": [{"name": "x"}]}), None, None),
            // …but not inside lists such as `anyOf`, which Prefect's removal does not enter.
            (
                json!({"pairs": [{}]}),
                Some("job variable 'pairs[0]': {} is not valid under any of the schemas"),
                None,
            ),
            (json!({"creds": {"key": "k"}}), None, None),
            (
                json!({"creds": {"$ref": {"block_document_id": BLOCK_ID}}}),
                None,
                None,
            ),
            (
                json!({"creds": {"key": 1}}),
                Some("job variable 'creds'"),
                None,
            ),
        ];
        for (values, deployment_error, run_error) in table {
            let got = validate_job_variables_with(&schema, &obj(values.clone()), &deployment);
            match (got, deployment_error) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().starts_with(want), "{values}: {e}"),
                (got, want) => panic!("{values}: got {got:?}, want {want:?}"),
            }
            // The flow-run check enforces `required` (`cpu` here) unless a default was invalid;
            // `flag`'s default is invalid, so it is skipped and `required` with it.
            let got = validate_job_variables_with(&schema, &obj(values.clone()), &run);
            let want = run_error.or(deployment_error);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().starts_with(want), "{values}: {e}"),
                (got, want) => panic!("run {values}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn required_is_enforced_for_flow_runs() {
        let mut schema = ecs_like();
        schema["properties"]["flag"]["default"] = json!(true);
        let run = JobVariablesValidation::for_flow_run();
        let err = validate_job_variables_with(&schema, &Map::new(), &run).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"job variables: "cpu" is a required property"#
        );
        assert!(validate_job_variables_with(&schema, &obj(json!({"cpu": 1})), &run).is_ok());
        // A required variable is not nullable.
        assert!(validate_job_variables_with(&schema, &obj(json!({"cpu": null})), &run).is_err());
        assert!(
            validate_job_variables_with(
                &schema,
                &Map::new(),
                &JobVariablesValidation::for_deployment()
            )
            .is_ok()
        );
    }

    #[test]
    fn undeclared_job_variables_are_rejected() {
        let schema = ecs_like();
        let opts = JobVariablesValidation::default();
        let table: [(Value, &[&str]); 5] = [
            (json!({"gpu": 1}), &["gpu"]),
            (json!({"gpu.count": 1, "cpu": 1}), &["gpu.count"]),
            (json!({"env[A]": "x"}), &["env[A]"]),
            (json!({"cpu": 1, "zzz": 1, "aaa": 2}), &["zzz", "aaa"]),
            (json!({"env.A": "x", "env.B.C": "y"}), &[]),
        ];
        for (values, undeclared) in table {
            let got = validate_job_variables_with(&schema, &obj(values.clone()), &opts);
            match got {
                Err(JobVariablesError::Undeclared { names }) => {
                    assert_eq!(names, undeclared, "{values}")
                }
                other => assert!(undeclared.is_empty(), "{values}: {other:?}"),
            }
        }
        assert_eq!(
            validate_job_variables_with(&schema, &obj(json!({"gpu": 1})), &opts)
                .unwrap_err()
                .to_string(),
            "job variable 'gpu' is not declared in the work pool's base job template (variables.properties)"
        );
        // Without a schema there is nothing to check against.
        for empty in [json!({}), json!(null)] {
            assert!(validate_job_variables_with(&empty, &obj(json!({"gpu": 1})), &opts).is_ok());
        }
        // Dotted keys that disagree.
        assert_eq!(
            validate_job_variables_with(
                &schema,
                &obj(json!({"env.A": "x", "env.A.B": "y"})),
                &opts
            ),
            Err(JobVariablesError::ConflictingPath {
                key: "env.A.B".into(),
                parent: "A".into()
            })
        );
    }

    #[test]
    fn invalid_schemas_are_reported() {
        let opts = JobVariablesValidation::default();
        let schema = json!({"properties": {"cpu": {"type": "nope"}}});
        assert!(matches!(
            validate_job_variables_with(&schema, &obj(json!({"cpu": 1})), &opts),
            Err(JobVariablesError::InvalidSchema { .. })
        ));
    }

    #[test]
    fn block_reference_defaults_of_job_variables() {
        let mut schema = ecs_like();
        schema["properties"]["creds"]["default"] = json!({"$ref": {"block_document_id": BLOCK_ID}});
        schema["definitions"]["Creds"]["required"] = json!(["key"]);
        let good = PrefetchedData::default().with_block_id(BLOCK_ID, json!({"key": "k"}));
        let missing = PrefetchedData::default();
        let values = obj(json!({"cpu": 1}));
        let opts = |d: &'static PrefetchedData| JobVariablesValidation {
            require_required: true,
            blocks: Some(d),
        };
        let leak = |d: PrefetchedData| -> &'static PrefetchedData { Box::leak(Box::new(d)) };
        assert!(validate_job_variables_with(&schema, &values, &opts(leak(good))).is_ok());
        assert_eq!(
            validate_job_variables_with(&schema, &values, &opts(leak(missing))),
            Err(JobVariablesError::BlockNotFound {
                variable: "creds".into(),
                id: BLOCK_ID.into()
            })
        );
        assert!(
            validate_job_variables_with(&schema, &values, &JobVariablesValidation::for_flow_run())
                .is_ok()
        );
    }
}
