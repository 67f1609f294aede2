//! Artifacts: created by runs, versioned by key (the newest artifact of a key is its latest),
//! listed and counted as Prefect's `/artifacts` routes do.

use std::collections::BTreeMap;

use serde_json::Value;
use sluice_core::blocks::is_slug;
use sluice_core::domain::{Artifact, Id, Timestamp};
use sluice_store::ArtifactFilter;

use crate::Services;
use crate::error::{Result, ServiceError};

/// Prefect keeps metadata values to this many characters (then `...`).
const METADATA_VALUE_MAX: usize = 500;

#[derive(Debug, Clone, Default)]
pub struct ArtifactInput {
    pub key: Option<String>,
    pub kind: Option<String>,
    pub description: Option<String>,
    pub data: Value,
    pub metadata: Option<BTreeMap<String, String>>,
    pub flow_run_id: Option<Id>,
    pub task_run_id: Option<Id>,
}

/// `None`: unchanged.
#[derive(Debug, Clone, Default)]
pub struct ArtifactPatch {
    pub data: Option<Value>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Option<BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ArtifactSort {
    CreatedDesc,
    UpdatedDesc,
    #[default]
    IdDesc,
    KeyDesc,
    KeyAsc,
}

impl ArtifactSort {
    pub fn parse(s: &str) -> Option<ArtifactSort> {
        Some(match s {
            "CREATED_DESC" => ArtifactSort::CreatedDesc,
            "UPDATED_DESC" => ArtifactSort::UpdatedDesc,
            "ID_DESC" => ArtifactSort::IdDesc,
            "KEY_DESC" => ArtifactSort::KeyDesc,
            "KEY_ASC" => ArtifactSort::KeyAsc,
            _ => return None,
        })
    }

    fn order(self, a: &Artifact, b: &Artifact) -> std::cmp::Ordering {
        let by_id = b.id.cmp(&a.id);
        match self {
            ArtifactSort::CreatedDesc => b.created.cmp(&a.created).then(by_id),
            ArtifactSort::UpdatedDesc => b.updated.cmp(&a.updated).then(by_id),
            ArtifactSort::IdDesc => by_id,
            ArtifactSort::KeyDesc => b.key.cmp(&a.key).then(by_id),
            ArtifactSort::KeyAsc => a.key.cmp(&b.key).then(by_id),
        }
    }
}

/// The latest version of a key (Prefect's artifact collection): a stable id for the key, when
/// the key was first used, and the newest artifact.
#[derive(Debug, Clone)]
pub struct LatestArtifact {
    pub id: Id,
    pub first_created: Timestamp,
    pub latest: Artifact,
}

/// A key's collection id: the same for every process and every call, without storing it.
fn collection_id(key: &str) -> Id {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("sluice.artifact.{key}").as_bytes(),
    )
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("Artifact not found.".to_owned())
}

fn trimmed(metadata: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    metadata.map(|m| {
        m.into_iter()
            .map(|(k, v)| {
                if v.chars().count() > METADATA_VALUE_MAX {
                    let cut: String = v.chars().take(METADATA_VALUE_MAX).collect();
                    (k, format!("{cut}..."))
                } else {
                    (k, v)
                }
            })
            .collect()
    })
}

impl Services {
    pub async fn create_artifact(&self, input: ArtifactInput) -> Result<Artifact> {
        if let Some(key) = &input.key
            && !is_slug(key)
        {
            return Err(ServiceError::Invalid(
                "Artifact key must only contain lowercase letters, numbers, and dashes.".to_owned(),
            ));
        }
        let now = self.now();
        let artifact = Artifact {
            id: uuid::Uuid::now_v7(),
            created: now,
            updated: now,
            key: input.key,
            kind: input.kind,
            description: input.description,
            data: input.data,
            metadata: trimmed(input.metadata),
            flow_run_id: input.flow_run_id,
            task_run_id: input.task_run_id,
        };
        self.store.create_artifact(&artifact).await?;
        Ok(artifact)
    }

    pub async fn read_artifact(&self, id: Id) -> Result<Artifact> {
        self.store.read_artifact(id).await?.ok_or_else(not_found)
    }

    pub async fn list_artifacts(
        &self,
        filter: &ArtifactFilter,
        sort: ArtifactSort,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Artifact>> {
        let mut all = self.store.list_artifacts(filter).await?;
        all.sort_by(|a, b| sort.order(a, b));
        Ok(all.into_iter().skip(offset).take(limit).collect())
    }

    pub async fn count_artifacts(&self, filter: &ArtifactFilter) -> Result<usize> {
        Ok(self.store.list_artifacts(filter).await?.len())
    }

    /// The latest version of each key the filter selects (only keyed artifacts have one);
    /// `latest_ids` narrows to those whose latest artifact is one of them.
    pub async fn list_latest_artifacts(
        &self,
        filter: &ArtifactFilter,
        latest_ids: Option<&[Id]>,
        sort: ArtifactSort,
    ) -> Result<Vec<LatestArtifact>> {
        let mut keyed = filter.clone();
        keyed.key_exists = Some(true);
        // Newest first: the first artifact of each key is its latest, the last its first.
        let all = self.store.list_artifacts(&keyed).await?;
        let mut latest: Vec<LatestArtifact> = Vec::new();
        for a in all {
            let Some(key) = a.key.clone() else { continue };
            match latest
                .iter_mut()
                .find(|l| l.latest.key.as_deref() == Some(&key))
            {
                Some(l) => l.first_created = a.created,
                None => latest.push(LatestArtifact {
                    id: collection_id(&key),
                    first_created: a.created,
                    latest: a,
                }),
            }
        }
        if let Some(ids) = latest_ids {
            latest.retain(|l| ids.contains(&l.latest.id));
        }
        latest.sort_by(|a, b| match sort {
            ArtifactSort::IdDesc => b.id.cmp(&a.id),
            other => other.order(&a.latest, &b.latest),
        });
        Ok(latest)
    }

    pub async fn read_latest_artifact(&self, key: &str) -> Result<LatestArtifact> {
        let filter = ArtifactFilter {
            keys: Some(vec![key.to_owned()]),
            ..ArtifactFilter::default()
        };
        self.list_latest_artifacts(&filter, None, ArtifactSort::IdDesc)
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_found)
    }

    pub async fn update_artifact(&self, id: Id, patch: ArtifactPatch) -> Result<()> {
        let mut a = self.read_artifact(id).await?;
        if let Some(data) = patch.data {
            a.data = data;
        }
        if let Some(description) = patch.description {
            a.description = description;
        }
        if let Some(metadata) = patch.metadata {
            a.metadata = trimmed(metadata);
        }
        a.updated = self.now();
        self.store.update_artifact(&a).await.map_err(|e| match e {
            sluice_store::StoreError::NotFound(_) => not_found(),
            other => other.into(),
        })
    }

    pub async fn delete_artifact(&self, id: Id) -> Result<()> {
        if !self.store.delete_artifact(id).await? {
            return Err(not_found());
        }
        Ok(())
    }
}
