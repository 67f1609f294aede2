//! [`FlowStore`] and [`DeploymentStore`].
//!
//! `FLOW#<id>` and `DEPLOYMENT#<id>` items with name guards (`FLOWNAME#<name>`,
//! `DEPLOYMENTNAME#<flow>#<name>`). A deployment's poll time and status (`lp`, `ds`) live beside
//! its document, so the poll that touches them on every worker request rewrites two small
//! attributes, not the document.

use async_trait::async_trait;
use sluice_core::domain::{Deployment, DeploymentStatus, Flow, Id, Timestamp};
use sluice_store::matching::page;
use sluice_store::{Created, DeploymentFilter, DeploymentStore, FlowFilter, FlowStore, StoreError};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, doc, encode, get_id, get_s, key, parse_ts, s, ts};
use crate::ops::{Query, Update, tx};
use crate::schema::{GSI1, GSI1_PK, GSI1_SK};

fn flow_key(id: Id) -> Item {
    key(format!("FLOW#{id}"), ONLY)
}

fn flow_name_key(name: &str) -> Item {
    key(format!("FLOWNAME#{name}"), ONLY)
}

fn deployment_key(id: Id) -> Item {
    key(format!("DEPLOYMENT#{id}"), ONLY)
}

fn deployment_name_key(flow_id: Id, name: &str) -> Item {
    key(format!("DEPLOYMENTNAME#{flow_id}#{name}"), ONLY)
}

fn guard(mut key: Item, id: Id) -> Item {
    key.insert("id".to_owned(), s(id.to_string()));
    key
}

fn flow_item(f: &Flow) -> Result<Item> {
    let mut item = flow_key(f.id);
    item.insert("k".to_owned(), s("flow"));
    item.insert("d".to_owned(), encode(f)?);
    item.insert(GSI1_PK.to_owned(), s("FLOWS"));
    item.insert(GSI1_SK.to_owned(), s(f.name.clone()));
    Ok(item)
}

fn deployment_item(d: &Deployment) -> Result<Item> {
    let mut item = deployment_key(d.id);
    item.insert("k".to_owned(), s("deployment"));
    item.insert("d".to_owned(), encode(d)?);
    item.insert(GSI1_PK.to_owned(), s("DEPLOYMENTS"));
    item.insert(GSI1_SK.to_owned(), s(d.id.to_string()));
    item.insert("ds".to_owned(), s(d.status.as_str()));
    if let Some(lp) = d.last_polled {
        item.insert("lp".to_owned(), s(ts(lp)));
    }
    Ok(item)
}

fn deployment_from(item: &Item) -> Result<Deployment> {
    let mut d: Deployment = doc("deployment", item)?;
    if let Some(st) = get_s(item, "ds").and_then(DeploymentStatus::parse) {
        d.status = st;
    }
    d.last_polled = get_s(item, "lp")
        .map(|v| parse_ts("deployment", v))
        .transpose()?;
    Ok(d)
}

impl DynamoStore {
    pub(crate) async fn deployments_all(&self) -> Result<Vec<Deployment>> {
        let q = Query::new(Some(GSI1), "#p = :p")
            .name("#p", GSI1_PK)
            .value(":p", s("DEPLOYMENTS"));
        self.query(q).await?.iter().map(deployment_from).collect()
    }

    async fn flows_all(&self) -> Result<Vec<Flow>> {
        let q = Query::new(Some(GSI1), "#p = :p")
            .name("#p", GSI1_PK)
            .value(":p", s("FLOWS"));
        self.query(q)
            .await?
            .iter()
            .map(|i| doc("flow", i))
            .collect()
    }

    /// Writes a deployment's document back unchanged in name (used to detach queues/pools).
    pub(crate) async fn rewrite_deployment(&self, d: &Deployment) -> Result<()> {
        match self
            .put(
                deployment_item(d)?,
                Some("attribute_exists(pk)"),
                None,
                None,
            )
            .await
        {
            // Deleted meanwhile: nothing left to detach.
            Err(e) if e.is_conflict() => Ok(()),
            other => other,
        }
    }
}

#[async_trait]
impl FlowStore for DynamoStore {
    async fn upsert_flow(&self, flow: &Flow) -> Result<Created<Flow>> {
        let t = self.table();
        let items = vec![
            tx::put_new(t, guard(flow_name_key(&flow.name), flow.id))?,
            tx::put_new(t, flow_item(flow)?)?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(Created {
                value: flow.clone(),
                created: true,
            }),
            Err(e) if e.is_conflict() => match self.read_flow_by_name(&flow.name).await? {
                Some(value) => Ok(Created {
                    value,
                    created: false,
                }),
                None => Err(StoreError::Conflict(format!(
                    "flow {:?} is being created concurrently; retry",
                    flow.name
                ))),
            },
            Err(e) => Err(e),
        }
    }

    async fn read_flow(&self, id: Id) -> Result<Option<Flow>> {
        self.get(flow_key(id))
            .await?
            .as_ref()
            .map(|i| doc("flow", i))
            .transpose()
    }

    async fn read_flow_by_name(&self, name: &str) -> Result<Option<Flow>> {
        let Some(g) = self.get(flow_name_key(name)).await? else {
            return Ok(None);
        };
        self.read_flow(get_id("flow name", &g, "id")?).await
    }

    async fn list_flows(
        &self,
        filter: &FlowFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Flow>> {
        let mut flows: Vec<Flow> = self
            .flows_all()
            .await?
            .into_iter()
            .filter(|f| filter.matches(f))
            .collect();
        flows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(page(flows, limit, offset))
    }

    async fn count_flows(&self, filter: &FlowFilter) -> Result<usize> {
        Ok(self.list_flows(filter, None, 0).await?.len())
    }

    async fn delete_flow(&self, id: Id) -> Result<bool> {
        let Some(flow) = self.read_flow(id).await? else {
            return Ok(false);
        };
        for d in self.deployments_all().await? {
            if d.flow_id == id {
                self.delete_deployment(d.id).await?;
            }
        }
        self.delete_runs_of_flow(id).await?;
        let gone = self.delete(flow_key(id), None, None).await?;
        self.delete(flow_name_key(&flow.name), None, None).await?;
        Ok(gone)
    }
}

#[async_trait]
impl DeploymentStore for DynamoStore {
    async fn create_deployment(&self, deployment: &Deployment) -> Result<()> {
        if self.read_flow(deployment.flow_id).await?.is_none() {
            return Err(StoreError::NotFound(format!("flow {}", deployment.flow_id)));
        }
        let t = self.table();
        let items = vec![
            tx::put_new(
                t,
                guard(
                    deployment_name_key(deployment.flow_id, &deployment.name),
                    deployment.id,
                ),
            )?,
            tx::put_new(t, deployment_item(deployment)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "deployment {:?} of flow {} already exists",
                deployment.name, deployment.flow_id
            )),
            e => e,
        })
    }

    async fn read_deployment(&self, id: Id) -> Result<Option<Deployment>> {
        self.get(deployment_key(id))
            .await?
            .as_ref()
            .map(deployment_from)
            .transpose()
    }

    async fn read_deployment_by_name(&self, flow_id: Id, name: &str) -> Result<Option<Deployment>> {
        let Some(g) = self.get(deployment_name_key(flow_id, name)).await? else {
            return Ok(None);
        };
        self.read_deployment(get_id("deployment name", &g, "id")?)
            .await
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Deployment>> {
        let mut all = match &filter.ids {
            // A handful of ids: point reads, strongly consistent.
            Some(ids) if ids.len() <= 25 => {
                let mut found = Vec::new();
                for id in ids {
                    found.extend(self.read_deployment(*id).await?);
                }
                found
            }
            _ => self.deployments_all().await?,
        };
        all.retain(|d| filter.matches(d));
        all.sort_by(|a, b| filter.compare(a, b));
        Ok(page(all, limit, offset))
    }

    async fn count_deployments(&self, filter: &DeploymentFilter) -> Result<usize> {
        Ok(self.list_deployments(filter, None, 0).await?.len())
    }

    async fn update_deployment(&self, deployment: &Deployment) -> Result<()> {
        let Some(stored) = self.read_deployment(deployment.id).await? else {
            return Err(StoreError::NotFound(format!(
                "deployment {}",
                deployment.id
            )));
        };
        let t = self.table();
        let mut items = vec![tx::put_existing(t, deployment_item(deployment)?)?];
        if stored.name != deployment.name || stored.flow_id != deployment.flow_id {
            items.push(tx::delete(
                t,
                deployment_name_key(stored.flow_id, &stored.name),
            )?);
            items.push(tx::put_new(
                t,
                guard(
                    deployment_name_key(deployment.flow_id, &deployment.name),
                    deployment.id,
                ),
            )?);
        }
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "deployment {:?} of flow {} already exists",
                deployment.name, deployment.flow_id
            )),
            e => e,
        })
    }

    async fn mark_deployments_polled(&self, ids: &[Id], at: Timestamp) -> Result<()> {
        for id in ids {
            let u = Update::new(deployment_key(*id), "SET lp = :at, ds = :ready")
                .condition("attribute_exists(pk)")
                .value(":at", s(ts(at)))
                .value(":ready", s(DeploymentStatus::Ready.as_str()));
            match self.update(u).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn mark_deployment_not_ready(
        &self,
        id: Id,
        seen_last_polled: Option<Timestamp>,
    ) -> Result<bool> {
        let mut u = Update::new(deployment_key(id), "SET ds = :nr")
            .value(":nr", s(DeploymentStatus::NotReady.as_str()))
            .value(":ready", s(DeploymentStatus::Ready.as_str()));
        u = match seen_last_polled {
            Some(seen) => u
                .condition("attribute_exists(pk) AND ds = :ready AND lp = :seen")
                .value(":seen", s(ts(seen))),
            None => {
                u.condition("attribute_exists(pk) AND ds = :ready AND attribute_not_exists(lp)")
            }
        };
        match self.update(u).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete_deployment(&self, id: Id) -> Result<bool> {
        let Some(d) = self.read_deployment(id).await? else {
            return Ok(false);
        };
        let gone = self.delete(deployment_key(id), None, None).await?;
        self.delete(deployment_name_key(d.flow_id, &d.name), None, None)
            .await?;
        Ok(gone)
    }
}
