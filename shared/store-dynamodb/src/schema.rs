//! Key and index names, and creating the table where the deployment does not own it.
//!
//! `template.yaml` declares the same table for the cloud; a test checks the two agree.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use sluice_store::StoreError;

use crate::DynamoStore;

/// Partition and sort key of the table.
pub const PK: &str = "pk";
pub const SK: &str = "sk";

/// Collections: every object of a kind (pools, flows, deployments, ...) under one partition,
/// sorted by name. Projects every attribute, so a list is one query.
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";

/// Live runs per work pool (sparse: only runs not in a final state). Projects the few
/// attributes the poll, the late-run marker and the concurrency counts filter on.
pub const GSI2: &str = "gsi2";
pub const GSI2_PK: &str = "gsi2pk";
pub const GSI2_SK: &str = "gsi2sk";
/// The non-key attributes GSI2 projects.
pub const GSI2_PROJECTED: [&str; 4] = ["st", "sn", "ns", "dep"];

/// Runs per deployment by expected start time (keys only).
pub const GSI3: &str = "gsi3";
pub const GSI3_PK: &str = "gsi3pk";
pub const GSI3_SK: &str = "gsi3sk";

/// Epoch seconds after which DynamoDB may delete the item (logs, finished runs).
pub const TTL_ATTRIBUTE: &str = "expires";

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(backend)
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(backend)
}

fn index(
    name: &str,
    pk: &str,
    sk: &str,
    projection: Projection,
) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(projection)
        .build()
        .map_err(backend)
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl DynamoStore {
    /// Whether the table exists (in the region and account the client reaches).
    pub async fn table_exists(&self) -> Result<bool, StoreError> {
        match self
            .client()
            .describe_table()
            .table_name(self.table())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
                Ok(false)
            }
            Err(e) => Err(crate::error::classify(e)),
        }
    }

    /// The region the client sends to, for messages.
    pub fn region(&self) -> String {
        self.client()
            .config()
            .region()
            .map_or_else(|| "(no region configured)".to_owned(), ToString::to_string)
    }

    /// Creates the table with its indexes and TTL when it does not exist, and waits until it is
    /// active. An existing table is left as it is (the SAM template owns it in the cloud).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let client = self.client();
        match client
            .describe_table()
            .table_name(self.table())
            .send()
            .await
        {
            Ok(_) => return self.wait_active().await,
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {}
            Err(e) => return Err(crate::error::classify(e)),
        }
        let mut create = client
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?);
        for name in [PK, SK, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK, GSI3_PK, GSI3_SK] {
            create = create.attribute_definitions(string_attribute(name)?);
        }
        let all = Projection::builder()
            .projection_type(ProjectionType::All)
            .build();
        let mut some = Projection::builder().projection_type(ProjectionType::Include);
        for attribute in GSI2_PROJECTED {
            some = some.non_key_attributes(attribute);
        }
        let keys_only = Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build();
        create = create
            .global_secondary_indexes(index(GSI1, GSI1_PK, GSI1_SK, all)?)
            .global_secondary_indexes(index(GSI2, GSI2_PK, GSI2_SK, some.build())?)
            .global_secondary_indexes(index(GSI3, GSI3_PK, GSI3_SK, keys_only)?);
        match create.send().await {
            Ok(_) => {}
            // Another process created it first.
            Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => {}
            Err(e) => return Err(crate::error::classify(e)),
        }
        self.wait_active().await?;
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(backend)?;
        let enabled = client
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(ttl)
            .send()
            .await;
        if let Err(e) = enabled {
            // Already enabled (a concurrent creator) is fine; anything else is reported.
            let e = crate::error::classify(e);
            if !e.to_string().contains("already enabled") {
                tracing::warn!(error = %e, "could not enable TTL on the table");
            }
        }
        Ok(())
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..120 {
            let out = self
                .client()
                .describe_table()
                .table_name(self.table())
                .send()
                .await
                .map_err(crate::error::classify)?;
            let status = out.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(
            format!(
                "table {} did not become active within a minute",
                self.table()
            )
            .into(),
        ))
    }

    /// Deletes the table (tests and `--store dynamodb` experiments). Missing is fine.
    pub async fn delete_table(&self) -> Result<(), StoreError> {
        match self
            .client()
            .delete_table()
            .table_name(self.table())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => Ok(()),
            Err(e) => Err(crate::error::classify(e)),
        }
    }
}
