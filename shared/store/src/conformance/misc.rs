//! Checks for [`VariableStore`](crate::VariableStore), [`BlockStore`](crate::BlockStore),
//! [`LogStore`](crate::LogStore) and [`ApiKeyStore`](crate::ApiKeyStore).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{ApiKey, Id, LogEntry};

use super::fixtures::{assert_conflict, assert_not_found, at, block, id, t0, variable};
use crate::{LogFilter, Store};

pub async fn variable_crud<S: Store>(store: Arc<S>) {
    let a = variable("alpha", json!({"nested": [1, 2]}));
    let b = variable("beta", json!("text"));
    let c = variable("gamma", json!(null));
    for v in [&c, &a, &b] {
        store.create_variable(v).await.expect("create");
    }
    assert_conflict(
        store.create_variable(&variable("alpha", json!(1))).await,
        "duplicate variable",
    );
    assert_eq!(
        store.read_variable(a.id).await.expect("read"),
        Some(a.clone())
    );
    assert_eq!(
        store.read_variable_by_name("gamma").await.expect("read"),
        Some(c.clone())
    );
    assert_eq!(
        store.read_variable_by_name("nope").await.expect("read"),
        None
    );
    assert_eq!(store.read_variable(id()).await.expect("read"), None);

    let listed = store.list_variables(None, None, 0).await.expect("list");
    assert_eq!(listed, vec![a.clone(), b.clone(), c.clone()]);
    let names = ["gamma".to_owned(), "alpha".to_owned()];
    assert_eq!(
        store
            .list_variables(Some(&names), None, 0)
            .await
            .expect("list"),
        vec![a.clone(), c.clone()]
    );
    assert_eq!(
        store.list_variables(None, Some(1), 1).await.expect("list"),
        vec![b.clone()]
    );

    let mut renamed = a.clone();
    renamed.name = "delta".to_owned();
    renamed.value = json!(42);
    renamed.updated = at(5);
    store.update_variable(&renamed).await.expect("update");
    assert_eq!(
        store.read_variable(a.id).await.expect("read"),
        Some(renamed.clone())
    );
    assert_eq!(
        store.read_variable_by_name("alpha").await.expect("read"),
        None
    );
    let mut clash = renamed.clone();
    clash.name = "beta".to_owned();
    assert_conflict(
        store.update_variable(&clash).await,
        "rename onto a taken name",
    );
    assert_eq!(
        store.read_variable(a.id).await.expect("read"),
        Some(renamed)
    );
    assert_not_found(
        store.update_variable(&variable("ghost", json!(1))).await,
        "update a missing variable",
    );

    assert!(store.delete_variable(b.id).await.expect("delete"));
    assert!(!store.delete_variable(b.id).await.expect("delete again"));
    assert_eq!(store.read_variable(b.id).await.expect("read"), None);
}

pub async fn block_document_crud<S: Store>(store: Arc<S>) {
    let db = block("secret", Some("db"));
    let api = block("secret", Some("api"));
    let other_type = block("aws-credentials", Some("db"));
    let anon1 = block("secret", None);
    let anon2 = block("secret", None);
    for b in [&db, &api, &other_type, &anon1, &anon2] {
        store.create_block_document(b).await.expect("create");
    }
    assert_conflict(
        store
            .create_block_document(&block("secret", Some("db")))
            .await,
        "duplicate (type, name)",
    );

    assert_eq!(
        store.read_block_document(db.id).await.expect("read"),
        Some(db.clone())
    );
    assert_eq!(
        store
            .read_block_document_by_name("secret", "db")
            .await
            .expect("read"),
        Some(db.clone())
    );
    let aws = store
        .read_block_document_by_name("aws-credentials", "db")
        .await
        .expect("read");
    assert_eq!(aws, Some(other_type));
    assert_eq!(
        store
            .read_block_document_by_name("secret", "nope")
            .await
            .expect("read"),
        None
    );
    assert_eq!(store.read_block_document(id()).await.expect("read"), None);

    let ids = |docs: Vec<sluice_core::domain::BlockDocument>| {
        docs.into_iter().map(|d| d.id).collect::<BTreeSet<_>>()
    };
    let secrets = store
        .list_block_documents(Some("secret"), None, 0)
        .await
        .expect("list");
    assert_eq!(
        ids(secrets),
        BTreeSet::from([db.id, api.id, anon1.id, anon2.id])
    );
    assert_eq!(
        store
            .list_block_documents(None, None, 0)
            .await
            .expect("list")
            .len(),
        5
    );
    assert_eq!(
        store
            .list_block_documents(None, Some(2), 4)
            .await
            .expect("list")
            .len(),
        1
    );

    let mut changed = db.clone();
    changed.data = json!({"password": "hunter2"});
    changed.updated = at(1);
    store.update_block_document(&changed).await.expect("update");
    assert_eq!(
        store.read_block_document(db.id).await.expect("read"),
        Some(changed)
    );
    assert_not_found(
        store
            .update_block_document(&block("secret", Some("ghost")))
            .await,
        "update a missing block",
    );
    assert!(store.delete_block_document(api.id).await.expect("delete"));
    assert!(
        !store
            .delete_block_document(api.id)
            .await
            .expect("delete again")
    );
}

fn log(flow_run_id: Option<Id>, seconds: i64, level: i64, message: &str) -> LogEntry {
    LogEntry {
        id: id(),
        created: t0(),
        name: "prefect.flow_runs".to_owned(),
        level,
        message: message.to_owned(),
        timestamp: at(seconds),
        flow_run_id,
        task_run_id: None,
        worker_id: None,
    }
}

pub async fn logs_filter_and_order<S: Store>(store: Arc<S>) {
    let (r1, r2) = (id(), id());
    let l1 = log(Some(r1), 2, 20, "l1");
    let l2 = log(Some(r1), 1, 40, "l2");
    let l3 = log(Some(r2), 3, 10, "l3");
    let mut l4 = log(None, 0, 50, "l4");
    l4.task_run_id = Some(id());
    l4.worker_id = Some(id());
    store
        .create_logs(&[l1.clone(), l2.clone()])
        .await
        .expect("create");
    store
        .create_logs(&[l3.clone(), l4.clone()])
        .await
        .expect("create");
    store
        .create_logs(&[])
        .await
        .expect("an empty batch is fine");

    let messages = |logs: Vec<LogEntry>| logs.into_iter().map(|l| l.message).collect::<Vec<_>>();
    let check =
        |filter: LogFilter, limit: Option<usize>, offset: usize, want: &'static [&'static str]| {
            let store = Arc::clone(&store);
            async move {
                let listed = store.list_logs(&filter, limit, offset).await.expect("list");
                assert_eq!(messages(listed), want, "{filter:?}");
            }
        };
    check(LogFilter::default(), None, 0, &["l4", "l2", "l1", "l3"]).await;
    check(
        LogFilter {
            newest_first: true,
            ..Default::default()
        },
        None,
        0,
        &["l3", "l1", "l2", "l4"],
    )
    .await;
    check(
        LogFilter {
            flow_run_ids: Some(vec![r1]),
            ..Default::default()
        },
        None,
        0,
        &["l2", "l1"],
    )
    .await;
    check(
        LogFilter {
            task_run_ids: l4.task_run_id.map(|t| vec![t]),
            ..Default::default()
        },
        None,
        0,
        &["l4"],
    )
    .await;
    check(
        LogFilter {
            level_ge: Some(20),
            ..Default::default()
        },
        None,
        0,
        &["l4", "l2", "l1"],
    )
    .await;
    check(
        LogFilter {
            level_le: Some(20),
            ..Default::default()
        },
        None,
        0,
        &["l1", "l3"],
    )
    .await;
    let window = LogFilter {
        timestamp_after: Some(at(1)),
        timestamp_before: Some(at(2)),
        ..Default::default()
    };
    check(window, None, 0, &["l2", "l1"]).await;
    check(LogFilter::default(), Some(2), 1, &["l2", "l1"]).await;

    let all = store
        .list_logs(&LogFilter::default(), None, 0)
        .await
        .expect("list");
    assert_eq!(all, vec![l4, l2, l1, l3], "every field round-trips");
}

/// A stored key whose hash is derived from `seed` (any 64 lower-case hex digits will do: the
/// store treats the hash as an opaque unique string).
fn api_key(name: &str, seed: u128) -> ApiKey {
    ApiKey {
        id: id(),
        created: at(i64::try_from(seed % 1000).unwrap_or(0)),
        name: name.to_owned(),
        hash: format!("{seed:064x}"),
        prefix: format!("sluice_{:08x}", seed % 0x1_0000_0000),
    }
}

pub async fn api_key_crud<S: Store>(store: Arc<S>) {
    let alpha = api_key("alpha", 1);
    let beta = api_key("beta", 2);
    let gamma = api_key("gamma", 3);
    for k in [&beta, &gamma, &alpha] {
        store.create_api_key(k).await.expect("create");
    }

    assert_conflict(
        store.create_api_key(&api_key("alpha", 4)).await,
        "duplicate API key name",
    );
    assert_conflict(
        store.create_api_key(&api_key("delta", 1)).await,
        "duplicate API key hash",
    );
    assert_eq!(
        store
            .read_api_key_by_hash(&format!("{:064x}", 4))
            .await
            .expect("read"),
        None,
        "a refused create stores nothing"
    );

    assert_eq!(
        store.read_api_key_by_hash(&beta.hash).await.expect("read"),
        Some(beta.clone()),
        "every field round-trips"
    );
    assert_eq!(
        store
            .read_api_key_by_hash(&format!("{:064x}", 99))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store.list_api_keys().await.expect("list"),
        vec![alpha.clone(), beta.clone(), gamma.clone()],
        "listed by name, refused creates absent"
    );

    assert!(store.delete_api_key(alpha.id).await.expect("delete"));
    assert!(!store.delete_api_key(alpha.id).await.expect("delete again"));
    assert!(!store.delete_api_key(id()).await.expect("delete unknown"));
    assert_eq!(
        store.read_api_key_by_hash(&alpha.hash).await.expect("read"),
        None
    );
    assert_eq!(
        store.list_api_keys().await.expect("list"),
        vec![beta, gamma]
    );
    // Deleting frees the name and the hash.
    let again = api_key("alpha", 1);
    store.create_api_key(&again).await.expect("re-create");
    assert_eq!(
        store.read_api_key_by_hash(&again.hash).await.expect("read"),
        Some(again)
    );
}
