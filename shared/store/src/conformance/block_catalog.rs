//! Checks for [`BlockCatalogStore`](crate::BlockCatalogStore): block types and block schemas.

use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{BlockSchema, BlockType, Id};

use super::fixtures::{assert_conflict, assert_not_found, at, id, t0};
use crate::Store;

fn block_type(name: &str, slug: &str) -> BlockType {
    BlockType {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        slug: slug.to_owned(),
        logo_url: None,
        documentation_url: Some("https://example.com/docs".to_owned()),
        description: Some("a kind of block".to_owned()),
        code_example: None,
        is_protected: false,
    }
}

fn schema(type_id: Id, checksum: &str, version: &str, created: i64) -> BlockSchema {
    BlockSchema {
        id: id(),
        created: at(created),
        updated: at(created),
        checksum: checksum.to_owned(),
        fields: json!({"title": "X", "type": "object", "properties": {"value": {"type": "string"}}}),
        block_type_id: type_id,
        capabilities: vec!["read-path".to_owned()],
        version: version.to_owned(),
    }
}

pub async fn block_catalog_crud<S: Store>(store: Arc<S>) {
    let secret = block_type("Secret", "secret");
    let json_type = block_type("JSON", "json");
    for t in [&secret, &json_type] {
        store.create_block_type(t).await.expect("create type");
    }
    assert_conflict(
        store
            .create_block_type(&block_type("Other", "secret"))
            .await,
        "duplicate slug",
    );
    assert_conflict(
        store
            .create_block_type(&block_type("Secret", "secret-2"))
            .await,
        "duplicate name",
    );
    assert_eq!(
        store.read_block_type(secret.id).await.expect("read"),
        Some(secret.clone())
    );
    assert_eq!(
        store.read_block_type_by_slug("json").await.expect("read"),
        Some(json_type.clone())
    );
    assert_eq!(
        store.read_block_type_by_slug("nope").await.expect("read"),
        None
    );
    assert_eq!(
        store.list_block_types().await.expect("list"),
        vec![json_type.clone(), secret.clone()],
        "by name"
    );
    let mut described = secret.clone();
    described.description = Some("changed".to_owned());
    described.is_protected = true;
    described.updated = at(2);
    store.update_block_type(&described).await.expect("update");
    assert_eq!(
        store.read_block_type(secret.id).await.expect("read"),
        Some(described.clone())
    );
    assert_not_found(
        store.update_block_type(&block_type("Ghost", "ghost")).await,
        "update of a missing type",
    );

    let old = schema(secret.id, "sha256:aaa", "3.0.0", 1);
    let new = schema(secret.id, "sha256:aaa", "3.9.1", 5);
    let other = schema(json_type.id, "sha256:bbb", "3.9.1", 3);
    for s in [&old, &new, &other] {
        store.create_block_schema(s).await.expect("create schema");
    }
    assert_conflict(
        store
            .create_block_schema(&schema(secret.id, "sha256:aaa", "3.0.0", 9))
            .await,
        "same checksum and version",
    );
    assert_not_found(
        store
            .create_block_schema(&schema(id(), "sha256:ccc", "1", 9))
            .await,
        "a schema of a missing type",
    );
    assert_eq!(
        store.read_block_schema(old.id).await.expect("read"),
        Some(old.clone())
    );
    assert_eq!(
        store
            .read_block_schema_by_checksum("sha256:aaa", Some("3.0.0"))
            .await
            .expect("read"),
        Some(old.clone())
    );
    assert_eq!(
        store
            .read_block_schema_by_checksum("sha256:aaa", None)
            .await
            .expect("read"),
        Some(new.clone()),
        "the newest"
    );
    assert_eq!(
        store
            .read_block_schema_by_checksum("sha256:zzz", None)
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store.list_block_schemas(None).await.expect("list"),
        vec![new.clone(), other.clone(), old.clone()],
        "newest first"
    );
    assert_eq!(
        store
            .list_block_schemas(Some(secret.id))
            .await
            .expect("list"),
        vec![new.clone(), old.clone()]
    );
    assert!(store.delete_block_schema(other.id).await.expect("delete"));
    assert!(!store.delete_block_schema(other.id).await.expect("delete"));

    assert!(store.delete_block_type(secret.id).await.expect("delete"));
    assert_eq!(store.read_block_type(secret.id).await.expect("read"), None);
    assert_eq!(
        store.read_block_schema(new.id).await.expect("read"),
        None,
        "a type's schemas go with it"
    );
    assert!(!store.delete_block_type(secret.id).await.expect("delete"));
    // The slug is free again.
    store
        .create_block_type(&block_type("Secret", "secret"))
        .await
        .expect("re-create");
}
