//! Checks for [`ArtifactStore`](crate::ArtifactStore).

use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::Artifact;

use super::fixtures::{assert_not_found, at, id};
use crate::{ArtifactFilter, Store};

fn artifact(key: Option<&str>, kind: &str, created: i64, run: Option<uuid::Uuid>) -> Artifact {
    Artifact {
        id: id(),
        created: at(created),
        updated: at(created),
        key: key.map(str::to_owned),
        kind: Some(kind.to_owned()),
        description: Some("made by a run".to_owned()),
        data: json!("## Hello"),
        metadata: None,
        flow_run_id: run,
        task_run_id: None,
    }
}

pub async fn artifact_crud_and_filters<S: Store>(store: Arc<S>) {
    let run = id();
    let v1 = artifact(Some("report"), "markdown", 1, Some(run));
    let v2 = artifact(Some("report"), "markdown", 5, Some(run));
    let table = artifact(Some("rows"), "table", 3, None);
    let loose = artifact(None, "link", 4, Some(run));
    for a in [&v1, &table, &v2, &loose] {
        store.create_artifact(a).await.expect("create");
    }
    assert_eq!(
        store.read_artifact(v1.id).await.expect("read"),
        Some(v1.clone())
    );
    let ids = |f: ArtifactFilter| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_artifacts(&f)
                .await
                .expect("list")
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(ArtifactFilter::default()).await,
        vec![v2.id, loose.id, table.id, v1.id],
        "newest first"
    );
    let by = |f: ArtifactFilter| ids(f);
    assert_eq!(
        by(ArtifactFilter {
            keys: Some(vec!["report".to_owned()]),
            ..ArtifactFilter::default()
        })
        .await,
        vec![v2.id, v1.id]
    );
    assert_eq!(
        by(ArtifactFilter {
            flow_run_ids: Some(vec![run]),
            key_exists: Some(false),
            ..ArtifactFilter::default()
        })
        .await,
        vec![loose.id]
    );
    assert_eq!(
        by(ArtifactFilter {
            key_like: Some("ROW".to_owned()),
            ..ArtifactFilter::default()
        })
        .await,
        vec![table.id]
    );
    assert_eq!(
        by(ArtifactFilter {
            not_types: Some(vec!["markdown".to_owned()]),
            ..ArtifactFilter::default()
        })
        .await,
        vec![loose.id, table.id]
    );

    let mut changed = v1.clone();
    changed.data = json!("## Changed");
    changed.updated = at(9);
    store.update_artifact(&changed).await.expect("update");
    assert_eq!(
        store.read_artifact(v1.id).await.expect("read"),
        Some(changed)
    );
    assert_not_found(
        store
            .update_artifact(&artifact(None, "markdown", 1, None))
            .await,
        "update of a missing artifact",
    );
    assert!(store.delete_artifact(v1.id).await.expect("delete"));
    assert!(!store.delete_artifact(v1.id).await.expect("delete"));
}
