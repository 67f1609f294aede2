//! Block types, block schemas, capabilities and documents tied to them, through the router:
//! the calls Prefect's client makes to save and load a block, secrets masked on read and kept
//! when sent back masked, protected types, and bad input refused with nothing stored.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_tests::{TestApp, assert_detail};

/// A block class's schema as Prefect's client sends it: `token` is secret, `url` required.
fn endpoint_fields() -> Value {
    json!({
        "title": "Endpoint", "type": "object", "block_type_slug": "endpoint",
        "properties": {
            "url": {"title": "Url", "type": "string"},
            "token": {"title": "Token", "type": "string", "format": "password", "writeOnly": true}
        },
        "required": ["url", "token"],
        "secret_fields": ["token"],
        "block_schema_references": {}
    })
}

/// Registers the `endpoint` type and schema as the client does; (type id, schema id).
async fn register(app: &TestApp) -> (String, String) {
    let (s, t) = app
        .post(
            "/block_types/",
            json!({"name": "Endpoint", "slug": "endpoint", "description": "an API endpoint"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let type_id = t["id"].as_str().expect("id").to_owned();
    let (s, schema) = app
        .post(
            "/block_schemas/",
            json!({"fields": endpoint_fields(), "block_type_id": type_id, "capabilities": ["call"], "version": "1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{schema}");
    (type_id, schema["id"].as_str().expect("id").to_owned())
}

#[tokio::test]
async fn a_block_is_registered_saved_read_masked_updated_and_deleted_as_the_client_does() {
    let app = TestApp::new();
    let (type_id, schema_id) = register(&app).await;

    // The schema is found by the checksum the server computed; registering it again answers the
    // same schema with 200.
    let (_, schema) = app.get(&format!("/block_schemas/{schema_id}")).await;
    let checksum = schema["checksum"].as_str().expect("checksum").to_owned();
    assert!(checksum.starts_with("sha256:"), "{checksum}");
    assert_eq!(schema["block_type"]["slug"], "endpoint");
    let (s, by_sum) = app
        .get(&format!("/block_schemas/checksum/{checksum}?version=1.0"))
        .await;
    assert_eq!(
        (s, by_sum["id"].clone()),
        (StatusCode::OK, json!(schema_id))
    );
    let (s, again) = app
        .post(
            "/block_schemas/",
            json!({"fields": endpoint_fields(), "block_type_id": type_id, "capabilities": ["call"], "version": "1.0"}),
        )
        .await;
    assert_eq!((s, again["id"].clone()), (StatusCode::OK, json!(schema_id)));
    let (_, caps) = app.get("/block_capabilities/").await;
    assert_eq!(caps, json!(["call"]));

    let (s, doc) = app
        .post(
            "/block_documents/",
            json!({"name": "api", "data": {"url": "https://x", "token": "t0k3n"},
                   "block_schema_id": schema_id, "block_type_id": type_id, "is_anonymous": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{doc}");
    assert_eq!(doc["data"]["token"], "********", "masked in the answer");
    assert_eq!(doc["block_type_name"], "Endpoint");
    assert_eq!(doc["block_schema"]["checksum"], checksum);
    let id = doc["id"].as_str().expect("id").to_owned();

    let (_, secret) = app
        .get("/block_types/slug/endpoint/block_documents/name/api?include_secrets=true")
        .await;
    assert_eq!(
        secret["data"],
        json!({"url": "https://x", "token": "t0k3n"})
    );
    let (_, masked) = app.get(&format!("/block_documents/{id}")).await;
    assert_eq!(
        masked["data"],
        json!({"url": "https://x", "token": "********"})
    );

    // Sending the masked form back keeps the secret; a new value replaces it.
    let (s, _) = app
        .patch(
            &format!("/block_documents/{id}"),
            json!({"data": {"url": "https://y", "token": "********"}}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, after) = app
        .get(&format!("/block_documents/{id}?include_secrets=true"))
        .await;
    assert_eq!(after["data"], json!({"url": "https://y", "token": "t0k3n"}));

    let (_, listed) = app.get("/block_types/slug/endpoint/block_documents").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (_, count) = app.post("/block_documents/count", json!({})).await;
    assert_eq!(count, json!(1));

    let (s, _) = app.delete(&format!("/block_types/{type_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get(&format!("/block_documents/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a type's documents go with it");
    let (s, _) = app.get(&format!("/block_schemas/{schema_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "and its schemas");
}

#[tokio::test]
async fn the_secret_type_is_installed_protected() {
    let app = TestApp::new();
    let (s, v) = app
        .post("/block_types/install_system_block_types", json!({}))
        .await;
    assert_eq!((s, v), (StatusCode::OK, Value::Null));
    let (s, secret) = app.get("/block_types/slug/secret").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(secret["is_protected"], true);
    // Installing twice changes nothing; a client may update the text but not delete it.
    app.post("/block_types/install_system_block_types", json!({}))
        .await;
    let id = secret["id"].as_str().expect("id");
    let (s, _) = app
        .patch(
            &format!("/block_types/{id}"),
            json!({"description": "mine"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.delete(&format!("/block_types/{id}")).await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::FORBIDDEN),
        "protected block types cannot be deleted."
    );
    let (_, types) = app.post("/block_types/filter", json!({})).await;
    let mut slugs: Vec<&str> = types
        .as_array()
        .expect("types")
        .iter()
        .filter(|t| t["is_protected"] == true)
        .filter_map(|t| t["slug"].as_str())
        .collect();
    slugs.sort_unstable();
    assert_eq!(
        slugs,
        [
            "date-time",
            "json",
            "local-file-system",
            "secret",
            "string",
            "webhook"
        ]
    );
}

#[tokio::test]
async fn a_document_that_refers_to_another_reads_with_its_data_and_secrets_masked() {
    let app = TestApp::new();
    let (type_id, schema_id) = register(&app).await;
    let (_, endpoint) = app
        .post(
            "/block_documents/",
            json!({"name": "api", "data": {"url": "https://x", "token": "t0k3n"},
                   "block_schema_id": schema_id, "block_type_id": type_id}),
        )
        .await;
    let endpoint_id = endpoint["id"].as_str().expect("id").to_owned();
    let (_, client_type) = app
        .post("/block_types/", json!({"name": "Client", "slug": "client"}))
        .await;
    let (_, client_schema) = app
        .post(
            "/block_schemas/",
            json!({"block_type_id": client_type["id"], "fields": {
                "title": "Client", "type": "object", "block_type_slug": "client",
                "properties": {"endpoint": {"$ref": "#/definitions/Endpoint"}, "retries": {"type": "integer"}},
                "secret_fields": ["endpoint.token"],
                "block_schema_references": {"endpoint": {"block_type_slug": "endpoint", "block_schema_checksum": "sha256:x"}}
            }}),
        )
        .await;
    let client_body = |target: &str| {
        json!({"name": "main", "block_schema_id": client_schema["id"], "block_type_id": client_type["id"],
               "data": {"retries": 3, "endpoint": {"$ref": {"block_document_id": target}}}})
    };
    let (s, created) = app
        .post("/block_documents/", client_body(&endpoint_id))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");

    let (_, masked) = app.get(&format!("/block_documents/{id}")).await;
    assert_eq!(
        masked["data"],
        json!({"retries": 3, "endpoint": {"url": "https://x", "token": "********"}})
    );
    let reference = &masked["block_document_references"]["endpoint"]["block_document"];
    assert_eq!(reference["id"], json!(endpoint_id));
    assert_eq!(reference["name"], "api");
    assert_eq!(reference["block_type"]["slug"], "endpoint");
    let (_, full) = app
        .get("/block_types/slug/client/block_documents/name/main?include_secrets=true")
        .await;
    assert_eq!(full["data"]["endpoint"]["token"], "t0k3n");

    // A reference to nothing, or without an id, is refused and nothing is stored.
    let missing = uuid::Uuid::new_v4().to_string();
    let mut nameless = client_body(&missing);
    nameless["name"] = json!("other");
    let (s, v) = app.post("/block_documents/", nameless.clone()).await;
    let detail = assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        detail.contains(&missing) && detail.contains("data.endpoint"),
        "{detail}"
    );
    nameless["data"]["endpoint"] = json!({"$ref": {}});
    let (s, v) = app.post("/block_documents/", nameless).await;
    assert!(assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY).contains("block_document_id"));
    let (_, count) = app.post("/block_documents/count", json!({})).await;
    assert_eq!(count, json!(2));

    // Deleting the referred document leaves the field out, as Prefect's cascade does.
    let (s, _) = app.delete(&format!("/block_documents/{endpoint_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, after) = app.get(&format!("/block_documents/{id}")).await;
    assert_eq!(after["data"], json!({"retries": 3}));
    assert_eq!(after["block_document_references"], json!({}));
}

#[tokio::test]
async fn bad_blocks_are_refused_and_nothing_is_stored() {
    let app = TestApp::new();
    let (type_id, schema_id) = register(&app).await;
    let (s, v) = app
        .post(
            "/block_types/",
            json!({"name": "Endpoint", "slug": "endpoint"}),
        )
        .await;
    assert!(assert_detail(s, &v, StatusCode::CONFLICT).contains("already exists"));
    let (s, v) = app
        .post(
            "/block_types/",
            json!({"name": "Prefect Thing", "slug": "thing"}),
        )
        .await;
    assert_detail(s, &v, StatusCode::FORBIDDEN);
    let (s, v) = app
        .post("/block_types/", json!({"name": "Bad", "slug": "Bad_Slug"}))
        .await;
    assert!(assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY).contains("lowercase"));
    let (s, v) = app
        .post(
            "/block_schemas/",
            json!({"fields": {}, "block_type_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_detail(s, &v, StatusCode::NOT_FOUND);
    let (s, _) = app
        .post(
            "/block_schemas/",
            json!({"fields": {}, "block_type_id": type_id, "checksum": "sha256:mine"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the checksum is the server's to compute"
    );

    let document = |name: Value, data: Value| json!({"name": name, "data": data, "block_schema_id": schema_id, "block_type_id": type_id});
    for (body, status, why) in [
        (
            document(json!("api"), json!({"url": "https://x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "token",
        ),
        (
            document(json!("Not_A_Slug"), json!({"url": "u", "token": "t"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "lowercase",
        ),
        (
            document(Value::Null, json!({"url": "u", "token": "t"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Names must be provided",
        ),
        (
            document(json!("api"), json!(["not", "an", "object"])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "object",
        ),
    ] {
        let (s, v) = app.post("/block_documents/", body.clone()).await;
        let detail = assert_detail(s, &v, status);
        assert!(detail.contains(why), "{body}: {detail}");
    }
    let (s, _) = app
        .post(
            "/block_documents/",
            json!({"name": "api", "data": {"url": "u", "token": "t"},
                   "block_schema_id": uuid::Uuid::new_v4(), "block_type_id": type_id}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "an unknown schema");
    let (_, count) = app.post("/block_documents/count", json!({})).await;
    assert_eq!(count, json!(0), "nothing stored");

    let (s, _) = app
        .post(
            "/block_documents/",
            document(json!("api"), json!({"url": "u", "token": "t"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = app
        .post(
            "/block_documents/",
            document(json!("api"), json!({"url": "v", "token": "t"})),
        )
        .await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::CONFLICT),
        "Block already exists"
    );
}
