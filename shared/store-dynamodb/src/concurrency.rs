//! [`ConcurrencyStore`]: limits and leases as document items.
//!
//! A limit (`CLIMIT#<id>`) carries its version in the plain attribute `v`, and every slot change
//! is one TransactWriteItems whose puts are conditional on the `v` each limit was read at, so
//! two API processes (or Lambda invocations) racing for the last slot cannot both win. A name
//! guard (`CLIMITNAME#<name>`) keeps names unique. Leases (`CLEASE#<id>`) are listed on GSI1
//! under `CLEASES`, sorted by expiry, so the expiry tick reads only what has expired; a lease is
//! revoked by a delete conditional on its existence, in the same transaction as the slots it
//! gives back, so it is given back once.

use async_trait::async_trait;
use sluice_core::concurrency::{ConcurrencyLease, ConcurrencyLimit};
use sluice_core::domain::{Id, Timestamp};
use sluice_store::matching::page;
use sluice_store::{ConcurrencyStore, SlotWrite, StoreError};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, doc, encode, key, n, s, ts};
use crate::misc::{guard, listed};
use crate::ops::{Query, tx};
use crate::schema::{GSI1, GSI1_PK, GSI1_SK};

const LIMITS: &str = "CLIMITS";
const LEASES: &str = "CLEASES";

fn limit_key(id: Id) -> Item {
    key(format!("CLIMIT#{id}"), ONLY)
}

fn limit_name_key(name: &str) -> Item {
    key(format!("CLIMITNAME#{name}"), ONLY)
}

fn lease_key(id: Id) -> Item {
    key(format!("CLEASE#{id}"), ONLY)
}

/// The item as it is stored after a write of `l`: the version one past the one read.
fn limit_item(l: &ConcurrencyLimit, version: u64) -> Result<Item> {
    let stored = ConcurrencyLimit {
        version,
        ..l.clone()
    };
    let mut item = listed(limit_key(l.id), "concurrency_limit", LIMITS, l.name.clone());
    item.insert("v".to_owned(), n(version));
    item.insert("d".to_owned(), encode(&stored)?);
    Ok(item)
}

fn lease_item(l: &ConcurrencyLease) -> Result<Item> {
    let sort = format!("{}#{}", ts(l.expires), l.id);
    let mut item = listed(lease_key(l.id), "concurrency_lease", LEASES, sort);
    item.insert("d".to_owned(), encode(l)?);
    Ok(item)
}

fn changed(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "concurrency limit {name:?} changed meanwhile or its name is taken"
    ))
}

#[async_trait]
impl ConcurrencyStore for DynamoStore {
    async fn create_concurrency_limit(&self, limit: &ConcurrencyLimit) -> Result<()> {
        let t = self.table();
        let items = vec![
            tx::put_new(t, guard(limit_name_key(&limit.name), limit.id))?,
            tx::put_new(t, limit_item(limit, limit.version)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("concurrency limit {:?} already exists", limit.name))
            }
            e => e,
        })
    }

    async fn read_concurrency_limit(&self, id: Id) -> Result<Option<ConcurrencyLimit>> {
        self.read_doc("concurrency limit", limit_key(id)).await
    }

    async fn read_concurrency_limit_by_name(&self, name: &str) -> Result<Option<ConcurrencyLimit>> {
        self.read_by_guard("concurrency limit", limit_name_key(name), limit_key)
            .await
    }

    async fn read_concurrency_limits_by_names(
        &self,
        names: &[String],
    ) -> Result<Vec<ConcurrencyLimit>> {
        // Point reads, not the index: a slot decision must see the latest version.
        let mut found = Vec::new();
        let mut sorted = names.to_vec();
        sorted.sort();
        sorted.dedup();
        for name in &sorted {
            if let Some(l) = self.read_concurrency_limit_by_name(name).await? {
                found.push(l);
            }
        }
        Ok(found)
    }

    async fn list_concurrency_limits(
        &self,
        prefix: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<ConcurrencyLimit>> {
        let mut all: Vec<ConcurrencyLimit> = self.collection("concurrency limit", LIMITS).await?;
        if let Some(p) = prefix {
            all.retain(|l| l.name.starts_with(p));
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(page(all, limit, offset))
    }

    async fn update_concurrency_limit(&self, limit: &ConcurrencyLimit) -> Result<()> {
        let Some(stored) = self.read_concurrency_limit(limit.id).await? else {
            return Err(StoreError::NotFound(format!(
                "concurrency limit {}",
                limit.id
            )));
        };
        let t = self.table();
        let mut items = vec![tx::put_if_version(
            t,
            limit_item(limit, limit.version + 1)?,
            limit.version,
        )?];
        if stored.name != limit.name {
            items.push(tx::delete(t, limit_name_key(&stored.name))?);
            items.push(tx::put_new(
                t,
                guard(limit_name_key(&limit.name), limit.id),
            )?);
        }
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => changed(&limit.name),
            e => e,
        })
    }

    async fn delete_concurrency_limit(&self, id: Id) -> Result<bool> {
        let Some(l) = self.read_concurrency_limit(id).await? else {
            return Ok(false);
        };
        let gone = self.delete(limit_key(id), None, None).await?;
        self.delete(limit_name_key(&l.name), None, None).await?;
        Ok(gone)
    }

    async fn write_slots(&self, write: &SlotWrite) -> Result<()> {
        let t = self.table();
        let mut items = Vec::new();
        for l in &write.limits {
            items.push(tx::put_if_version(
                t,
                limit_item(l, l.version + 1)?,
                l.version,
            )?);
        }
        if let Some(id) = write.revoke_lease {
            items.push(tx::delete_existing(t, lease_key(id))?);
        }
        if let Some(lease) = &write.create_lease {
            items.push(tx::put_new(t, lease_item(lease)?)?);
        }
        if items.is_empty() {
            return Ok(());
        }
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(
                "a concurrency limit changed meanwhile, or the lease was given back already"
                    .to_owned(),
            ),
            e => e,
        })
    }

    async fn read_lease(&self, id: Id) -> Result<Option<ConcurrencyLease>> {
        self.read_doc("concurrency lease", lease_key(id)).await
    }

    async fn renew_lease(&self, id: Id, expires: Timestamp) -> Result<bool> {
        let Some(lease) = self.read_lease(id).await? else {
            return Ok(false);
        };
        let renewed = ConcurrencyLease { expires, ..lease };
        // Only while it exists: a lease given back meanwhile stays given back.
        match self
            .put(
                lease_item(&renewed)?,
                Some("attribute_exists(pk)"),
                None,
                None,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_expired_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConcurrencyLease>> {
        let mut q = Query::new(Some(GSI1), "#p = :p AND #s < :s")
            .name("#p", GSI1_PK)
            .name("#s", GSI1_SK)
            .value(":p", s(LEASES))
            .value(":s", s(ts(now)));
        q.limit = Some(limit);
        let items = self.query(q).await?;
        items.iter().map(|i| doc("concurrency lease", i)).collect()
    }

    async fn list_leases(&self) -> Result<Vec<ConcurrencyLease>> {
        self.collection("concurrency lease", LEASES).await
    }

    async fn revoke_lease(&self, id: Id) -> Result<bool> {
        self.delete(lease_key(id), None, None).await
    }
}
