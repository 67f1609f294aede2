//! [`ArtifactStore`]: artifacts as document items (`ARTIFACT#<id>`), listed on gsi1 under
//! `ARTIFACTS` by creation time; a query reads that list and applies the shared filter rule.

use async_trait::async_trait;
use sluice_core::domain::{Artifact, Id};
use sluice_store::{ArtifactFilter, ArtifactStore, StoreError};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, encode, key, ts};
use crate::misc::listed;
use crate::ops::tx;

const ARTIFACTS: &str = "ARTIFACTS";

fn artifact_key(id: Id) -> Item {
    key(format!("ARTIFACT#{id}"), ONLY)
}

fn artifact_item(a: &Artifact) -> Result<Item> {
    let sort = format!("{}#{}", ts(a.created), a.id);
    let mut item = listed(artifact_key(a.id), "artifact", ARTIFACTS, sort);
    item.insert("d".to_owned(), encode(a)?);
    Ok(item)
}

#[async_trait]
impl ArtifactStore for DynamoStore {
    async fn create_artifact(&self, artifact: &Artifact) -> Result<()> {
        self.transact(vec![tx::put_new(self.table(), artifact_item(artifact)?)?])
            .await
    }

    async fn read_artifact(&self, id: Id) -> Result<Option<Artifact>> {
        self.read_doc("artifact", artifact_key(id)).await
    }

    async fn list_artifacts(&self, filter: &ArtifactFilter) -> Result<Vec<Artifact>> {
        let mut all: Vec<Artifact> = self.collection("artifact", ARTIFACTS).await?;
        all.retain(|a| filter.matches(a));
        all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    async fn update_artifact(&self, artifact: &Artifact) -> Result<()> {
        self.transact(vec![tx::put_existing(
            self.table(),
            artifact_item(artifact)?,
        )?])
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::NotFound(format!("artifact {}", artifact.id)),
            e => e,
        })
    }

    async fn delete_artifact(&self, id: Id) -> Result<bool> {
        self.delete(artifact_key(id), None, None).await
    }
}
