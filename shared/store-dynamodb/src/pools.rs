//! [`PoolStore`]: pools, queues and workers.
//!
//! Pool `POOL#<id>` and queue `QUEUE#<id>` items hold their document plus the status (`ps`,
//! `qs`) and poll time (`lp`) that conditional transitions and polls change in place; names are
//! unique through guard items (`POOLNAME#<name>`, `QUEUENAME#<pool>#<name>`) written in the
//! same transaction. Workers are plain attribute items keyed by a name-derived id, so a
//! heartbeat is one upsert.

use async_trait::async_trait;
use sluice_core::domain::{
    Id, PoolStatus, QueueStatus, Timestamp, WorkPool, WorkQueue, Worker, WorkerStatus,
};
use sluice_store::matching::page;
use sluice_store::{PoolStore, StoreError, WorkPoolFilter, WorkerFilter};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, doc, encode, get_id, get_n, get_s, key, n, parse_ts, s, ts};
use crate::ops::{Query, Update, tx};
use crate::schema::{GSI1, GSI1_PK, GSI1_SK};

pub(crate) fn pool_key(id: Id) -> Item {
    key(format!("POOL#{id}"), ONLY)
}

fn pool_name_key(name: &str) -> Item {
    key(format!("POOLNAME#{name}"), ONLY)
}

pub(crate) fn queue_key(id: Id) -> Item {
    key(format!("QUEUE#{id}"), ONLY)
}

fn queue_name_key(pool_id: Id, name: &str) -> Item {
    key(format!("QUEUENAME#{pool_id}#{name}"), ONLY)
}

fn worker_key(id: Id) -> Item {
    key(format!("WORKER#{id}"), ONLY)
}

/// A worker is known by (pool, name); deriving its id from them makes the heartbeat one upsert
/// on a known key, with no lookup and no race between two first heartbeats.
fn worker_id(pool_id: Id, name: &str) -> Id {
    Id::new_v5(&pool_id, name.as_bytes())
}

fn guard(mut key: Item, id: Id) -> Item {
    key.insert("id".to_owned(), s(id.to_string()));
    key
}

fn pool_item(p: &WorkPool) -> Result<Item> {
    let mut item = pool_key(p.id);
    item.insert("k".to_owned(), s("pool"));
    item.insert("d".to_owned(), encode(p)?);
    item.insert(GSI1_PK.to_owned(), s("POOLS"));
    item.insert(GSI1_SK.to_owned(), s(p.name.clone()));
    if let Some(st) = p.status {
        item.insert("ps".to_owned(), s(st.as_str()));
    }
    Ok(item)
}

fn pool_from(item: &Item) -> Result<WorkPool> {
    let mut p: WorkPool = doc("work pool", item)?;
    p.status = get_s(item, "ps").and_then(PoolStatus::parse);
    Ok(p)
}

pub(crate) fn queue_item(q: &WorkQueue) -> Result<Item> {
    let mut item = queue_key(q.id);
    item.insert("k".to_owned(), s("queue"));
    item.insert("d".to_owned(), encode(q)?);
    item.insert(GSI1_PK.to_owned(), s(format!("QUEUES#{}", q.work_pool_id)));
    item.insert(GSI1_SK.to_owned(), s(q.name.clone()));
    item.insert("qs".to_owned(), s(q.status.as_str()));
    if let Some(lp) = q.last_polled {
        item.insert("lp".to_owned(), s(ts(lp)));
    }
    Ok(item)
}

pub(crate) fn queue_from(item: &Item) -> Result<WorkQueue> {
    let mut q: WorkQueue = doc("work queue", item)?;
    if let Some(st) = get_s(item, "qs").and_then(PoolStatus::parse) {
        q.status = st;
    }
    q.last_polled = get_s(item, "lp")
        .map(|v| parse_ts("work queue", v))
        .transpose()?;
    Ok(q)
}

fn worker_from(item: &Item) -> Result<Worker> {
    let what = "worker";
    let text = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt(format!("worker attribute {name} missing")))
    };
    Ok(Worker {
        id: get_id(what, item, "id")?,
        created: parse_ts(what, &text("created")?)?,
        updated: parse_ts(what, &text("updated")?)?,
        name: text("name")?,
        work_pool_id: get_id(what, item, "pool")?,
        last_heartbeat_time: parse_ts(what, &text("hb")?)?,
        heartbeat_interval_seconds: get_n(item, "hbi").and_then(|v| i64::try_from(v).ok()),
        status: match text("ws")?.as_str() {
            "OFFLINE" => WorkerStatus::Offline,
            _ => WorkerStatus::Online,
        },
    })
}

impl DynamoStore {
    pub(crate) async fn pools_all(&self) -> Result<Vec<WorkPool>> {
        let q = Query::new(Some(GSI1), "#p = :p")
            .name("#p", GSI1_PK)
            .value(":p", s("POOLS"));
        self.query(q).await?.iter().map(pool_from).collect()
    }

    pub(crate) async fn queues_of(&self, pool_id: Id) -> Result<Vec<WorkQueue>> {
        let q = Query::new(Some(GSI1), "#p = :p")
            .name("#p", GSI1_PK)
            .value(":p", s(format!("QUEUES#{pool_id}")));
        self.query(q).await?.iter().map(queue_from).collect()
    }

    async fn workers_of(&self, pool_id: Option<Id>) -> Result<Vec<Worker>> {
        let mut q = Query::new(Some(GSI1), "#p = :p")
            .name("#p", GSI1_PK)
            .value(":p", s("WORKERS"));
        if let Some(pool) = pool_id {
            q = Query::new(Some(GSI1), "#p = :p AND begins_with(#s, :s)")
                .name("#p", GSI1_PK)
                .name("#s", GSI1_SK)
                .value(":p", s("WORKERS"))
                .value(":s", s(format!("{pool}#")));
        }
        self.query(q).await?.iter().map(worker_from).collect()
    }

    /// Conditional status move on a pool or queue item (`attr` is `ps` or `qs`).
    async fn transition(
        &self,
        key: Item,
        what: &str,
        id: Id,
        attr: &str,
        from: Option<&str>,
        to: &str,
    ) -> Result<bool> {
        let mut u = Update::new(key.clone(), "SET #st = :to")
            .name("#st", attr)
            .value(":to", s(to));
        u = match from {
            Some(from) => u
                .condition("attribute_exists(pk) AND #st = :from")
                .value(":from", s(from)),
            None => u.condition("attribute_exists(pk) AND attribute_not_exists(#st)"),
        };
        match self.update(u).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => match self.get(key).await? {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound(format!("{what} {id}"))),
            },
            Err(e) => Err(e),
        }
    }

    /// Deployments and runs that pointed at these queues lose the queue id (they keep names).
    async fn detach_queues(&self, queue_ids: &[Id]) -> Result<()> {
        if queue_ids.is_empty() {
            return Ok(());
        }
        for mut d in self.deployments_all().await? {
            if d.work_queue_id.is_some_and(|q| queue_ids.contains(&q)) {
                d.work_queue_id = None;
                self.rewrite_deployment(&d).await?;
            }
        }
        self.update_runs_where(
            |r| r.work_queue_id.is_some_and(|q| queue_ids.contains(&q)),
            |r| r.work_queue_id = None,
        )
        .await
    }
}

#[async_trait]
impl PoolStore for DynamoStore {
    async fn create_work_pool(&self, pool: &WorkPool, default_queue: &WorkQueue) -> Result<()> {
        let t = self.table();
        let items = vec![
            tx::put_new(t, guard(pool_name_key(&pool.name), pool.id))?,
            tx::put_new(t, pool_item(pool)?)?,
            tx::put_new(t, queue_item(default_queue)?)?,
            tx::put_new(
                t,
                guard(
                    queue_name_key(default_queue.work_pool_id, &default_queue.name),
                    default_queue.id,
                ),
            )?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("work pool {:?} already exists", pool.name))
            }
            e => e,
        })
    }

    async fn read_work_pool(&self, id: Id) -> Result<Option<WorkPool>> {
        self.get(pool_key(id))
            .await?
            .as_ref()
            .map(pool_from)
            .transpose()
    }

    async fn read_work_pool_by_name(&self, name: &str) -> Result<Option<WorkPool>> {
        let Some(g) = self.get(pool_name_key(name)).await? else {
            return Ok(None);
        };
        self.read_work_pool(get_id("work pool name", &g, "id")?)
            .await
    }

    async fn list_work_pools(
        &self,
        filter: &WorkPoolFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<WorkPool>> {
        let mut pools: Vec<WorkPool> = self
            .pools_all()
            .await?
            .into_iter()
            .filter(|p| filter.matches(p))
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(page(pools, limit, offset))
    }

    async fn count_work_pools(&self, filter: &WorkPoolFilter) -> Result<usize> {
        Ok(self.list_work_pools(filter, None, 0).await?.len())
    }

    async fn update_work_pool(&self, pool: &WorkPool) -> Result<()> {
        let Some(stored) = self.read_work_pool(pool.id).await? else {
            return Err(StoreError::NotFound(format!("work pool {}", pool.id)));
        };
        let mut next = pool.clone();
        next.name = stored.name;
        next.created = stored.created;
        match self
            .put(pool_item(&next)?, Some("attribute_exists(pk)"), None, None)
            .await
        {
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::NotFound(format!("work pool {}", pool.id)))
            }
            other => other,
        }
    }

    async fn transition_work_pool_status(
        &self,
        id: Id,
        from: Option<PoolStatus>,
        to: PoolStatus,
    ) -> Result<bool> {
        self.transition(
            pool_key(id),
            "work pool",
            id,
            "ps",
            from.map(PoolStatus::as_str),
            to.as_str(),
        )
        .await
    }

    async fn delete_work_pool(&self, id: Id) -> Result<bool> {
        let Some(pool) = self.read_work_pool(id).await? else {
            return Ok(false);
        };
        let queues = self.queues_of(id).await?;
        let queue_ids: Vec<Id> = queues.iter().map(|q| q.id).collect();
        self.detach_queues(&queue_ids).await?;
        self.update_runs_where(|r| r.work_pool_id == Some(id), |r| r.work_pool_id = None)
            .await?;
        for mut d in self.deployments_all().await? {
            if d.work_pool_name.as_deref() == Some(pool.name.as_str()) {
                d.work_pool_name = None;
                self.rewrite_deployment(&d).await?;
            }
        }
        let mut deletes: Vec<Item> = Vec::new();
        for q in &queues {
            deletes.push(queue_key(q.id));
            deletes.push(queue_name_key(id, &q.name));
        }
        for w in self.workers_of(Some(id)).await? {
            deletes.push(worker_key(w.id));
        }
        self.batch_write(Vec::new(), deletes).await?;
        let gone = self.delete(pool_key(id), None, None).await?;
        self.delete(pool_name_key(&pool.name), None, None).await?;
        Ok(gone)
    }

    async fn create_work_queue(&self, queue: &WorkQueue) -> Result<()> {
        if self.read_work_pool(queue.work_pool_id).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "work pool {}",
                queue.work_pool_id
            )));
        }
        let t = self.table();
        let items = vec![
            tx::put_new(
                t,
                guard(queue_name_key(queue.work_pool_id, &queue.name), queue.id),
            )?,
            tx::put_new(t, queue_item(queue)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "work queue {:?} already exists in its pool",
                queue.name
            )),
            e => e,
        })
    }

    async fn read_work_queue(&self, id: Id) -> Result<Option<WorkQueue>> {
        self.get(queue_key(id))
            .await?
            .as_ref()
            .map(queue_from)
            .transpose()
    }

    async fn read_work_queue_by_name(&self, pool_id: Id, name: &str) -> Result<Option<WorkQueue>> {
        let Some(g) = self.get(queue_name_key(pool_id, name)).await? else {
            return Ok(None);
        };
        self.read_work_queue(get_id("work queue name", &g, "id")?)
            .await
    }

    async fn list_work_queues(&self, pool_id: Id) -> Result<Vec<WorkQueue>> {
        let mut queues = self.queues_of(pool_id).await?;
        queues.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        Ok(queues)
    }

    async fn update_work_queues(&self, queues: &[WorkQueue]) -> Result<()> {
        let t = self.table();
        let mut stored = Vec::with_capacity(queues.len());
        for q in queues {
            match self.read_work_queue(q.id).await? {
                Some(s) => stored.push(s),
                None => return Err(StoreError::NotFound(format!("work queue {}", q.id))),
            }
        }
        let mut items = Vec::new();
        let old_names: Vec<(Id, String)> = stored
            .iter()
            .map(|s| (s.work_pool_id, s.name.clone()))
            .collect();
        for (q, old) in queues.iter().zip(&stored) {
            let mut next = q.clone();
            next.work_pool_id = old.work_pool_id;
            next.created = old.created;
            if next.name != old.name {
                items.push(tx::delete(t, queue_name_key(old.work_pool_id, &old.name))?);
                // A swap within the batch frees the name it takes: the guard is rewritten, not
                // created, and DynamoDB applies the transaction's members together.
                let freed = old_names
                    .iter()
                    .any(|(p, n)| *p == old.work_pool_id && *n == next.name);
                let g = guard(queue_name_key(old.work_pool_id, &next.name), next.id);
                items.push(if freed {
                    tx::put_existing(t, g)?
                } else {
                    tx::put_new(t, g)?
                });
            }
            items.push(tx::put_existing(t, queue_item(&next)?)?);
        }
        if items.is_empty() {
            return Ok(());
        }
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(
                "a work queue of that name already exists in its pool".to_owned(),
            ),
            e => e,
        })
    }

    async fn transition_work_queue_status(
        &self,
        id: Id,
        from: QueueStatus,
        to: QueueStatus,
    ) -> Result<bool> {
        self.transition(
            queue_key(id),
            "work queue",
            id,
            "qs",
            Some(from.as_str()),
            to.as_str(),
        )
        .await
    }

    async fn touch_work_queues(&self, ids: &[Id], at: Timestamp) -> Result<()> {
        for id in ids {
            let u = Update::new(queue_key(*id), "SET lp = :at")
                .condition("attribute_exists(pk)")
                .value(":at", s(ts(at)));
            match self.update(u).await {
                Ok(_) => {}
                // A queue deleted meanwhile has nothing to touch.
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn delete_work_queue(&self, id: Id) -> Result<bool> {
        let Some(q) = self.read_work_queue(id).await? else {
            return Ok(false);
        };
        self.detach_queues(&[id]).await?;
        let gone = self.delete(queue_key(id), None, None).await?;
        self.delete(queue_name_key(q.work_pool_id, &q.name), None, None)
            .await?;
        Ok(gone)
    }

    async fn record_worker_heartbeat(
        &self,
        pool_id: Id,
        name: &str,
        heartbeat_interval_seconds: Option<i64>,
        at: Timestamp,
    ) -> Result<Worker> {
        if self.read_work_pool(pool_id).await?.is_none() {
            return Err(StoreError::NotFound(format!("work pool {pool_id}")));
        }
        let id = worker_id(pool_id, name);
        let mut expr = "SET #id = :id, #name = :name, #pool = :pool, created = \
                        if_not_exists(created, :at), updated = :at, hb = :at, ws = :online, \
                        #g1p = :g1p, #g1s = :g1s, k = :k"
            .to_owned();
        let mut u = Update::new(worker_key(id), "")
            .name("#id", "id")
            .name("#name", "name")
            .name("#pool", "pool")
            .name("#g1p", GSI1_PK)
            .name("#g1s", GSI1_SK)
            .value(":id", s(id.to_string()))
            .value(":name", s(name))
            .value(":pool", s(pool_id.to_string()))
            .value(":at", s(ts(at)))
            .value(":online", s(WorkerStatus::Online.as_str()))
            .value(":g1p", s("WORKERS"))
            .value(":g1s", s(format!("{pool_id}#{name}")))
            .value(":k", s("worker"));
        if let Some(interval) = heartbeat_interval_seconds {
            expr.push_str(", hbi = :hbi");
            u = u.value(":hbi", n(interval));
        }
        u.expression = expr;
        let item = self.update(u).await?;
        worker_from(&item)
    }

    async fn list_workers(
        &self,
        pool_id: Option<Id>,
        filter: &WorkerFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Worker>> {
        let mut workers: Vec<Worker> = self
            .workers_of(pool_id)
            .await?
            .into_iter()
            .filter(|w| filter.matches(w))
            .collect();
        workers.sort_by(WorkerFilter::compare);
        Ok(page(workers, limit, offset))
    }

    async fn mark_worker_offline(&self, id: Id, seen_heartbeat: Timestamp) -> Result<bool> {
        let u = Update::new(worker_key(id), "SET ws = :off")
            .condition("attribute_exists(pk) AND hb = :seen")
            .value(":off", s(WorkerStatus::Offline.as_str()))
            .value(":seen", s(ts(seen_heartbeat)));
        match self.update(u).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => match self.get(worker_key(id)).await? {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound(format!("worker {id}"))),
            },
            Err(e) => Err(e),
        }
    }

    async fn delete_worker(&self, pool_id: Id, name: &str) -> Result<bool> {
        self.delete(worker_key(worker_id(pool_id, name)), None, None)
            .await
    }
}
