//! The port's contract as executable checks. An adapter's test suite supplies a [`Fixture`]
//! (valid jobs for the platform it talks to, and a way to count what really started) and calls
//! [`check_all`]; every check makes its own runs, so the checks do not depend on each other.

use async_trait::async_trait;
use sluice_core::domain::Id;
use sluice_core::push::observe::Progress;

use crate::{Attempt, Kind, PushInfrastructure, Submission};

#[async_trait]
pub trait Fixture: Send + Sync {
    /// A valid submission of `kind` for `run_id` (attempt `attempt_id`) on the platform under
    /// test.
    fn submission(&self, kind: Kind, run_id: Id, attempt_id: Id) -> Submission;
    /// How many tasks or jobs the platform holds for `run_id`, counted without the adapter.
    async fn started_for(&self, kind: Kind, run_id: Id) -> usize;
    /// A submission the platform refuses (e.g. a cluster or queue that does not exist).
    fn refused_submission(&self, kind: Kind, run_id: Id, attempt_id: Id) -> Submission;
}

fn run_id() -> Id {
    Id::new_v4()
}

/// Runs every check for both kinds; panics with the first broken rule.
pub async fn check_all(infra: &dyn PushInfrastructure, fx: &dyn Fixture) {
    for kind in [Kind::Ecs, Kind::Batch] {
        submit_starts_one_and_resume_finds_it(infra, fx, kind).await;
        a_refused_request_is_rejected_not_transient(infra, fx, kind).await;
        observe_reports_every_id_and_unknown_ones_missing(infra, fx, kind).await;
        stop_ends_the_task_and_is_idempotent(infra, fx, kind).await;
    }
}

async fn submit_starts_one_and_resume_finds_it(
    infra: &dyn PushInfrastructure,
    fx: &dyn Fixture,
    kind: Kind,
) {
    let id = run_id();
    let mut submission = fx.submission(kind, id, Id::new_v4());
    let first = infra.submit(&submission).await.expect("first submission");
    assert!(
        !first.found_existing,
        "{kind:?}: a first attempt starts a new one"
    );
    assert!(!first.infrastructure_id.is_empty());
    submission.attempt = Attempt::Resume;
    for _ in 0..2 {
        let again = infra.submit(&submission).await.expect("resumed submission");
        assert_eq!(
            again.infrastructure_id, first.infrastructure_id,
            "{kind:?}: a resumed submission returns the run's existing task or job"
        );
        assert!(again.found_existing);
    }
    assert_eq!(
        fx.started_for(kind, id).await,
        1,
        "{kind:?}: exactly one started"
    );

    // Another run with the same configuration gets its own task or job.
    let other = run_id();
    let second = infra
        .submit(&fx.submission(kind, other, Id::new_v4()))
        .await
        .expect("second run");
    assert_ne!(second.infrastructure_id, first.infrastructure_id);
    assert_eq!(fx.started_for(kind, other).await, 1);
}

async fn a_refused_request_is_rejected_not_transient(
    infra: &dyn PushInfrastructure,
    fx: &dyn Fixture,
    kind: Kind,
) {
    let id = run_id();
    let err = infra
        .submit(&fx.refused_submission(kind, id, Id::new_v4()))
        .await
        .expect_err("the platform refuses it");
    assert!(!err.is_transient(), "{kind:?}: {err} is permanent");
    assert!(
        !err.to_string().is_empty(),
        "the platform's message is kept"
    );
    assert_eq!(fx.started_for(kind, id).await, 0);
}

async fn observe_reports_every_id_and_unknown_ones_missing(
    infra: &dyn PushInfrastructure,
    fx: &dyn Fixture,
    kind: Kind,
) {
    let submitted = infra
        .submit(&fx.submission(kind, run_id(), Id::new_v4()))
        .await
        .expect("submits");
    let unknown = match kind {
        Kind::Ecs => {
            let (cluster, _) =
                sluice_core::push::ecs::parse_infrastructure_id(&submitted.infrastructure_id)
                    .expect("ECS ids are cluster::task");
            format!(
                "{cluster}::arn:aws:ecs:us-east-1:123456789012:task/none/{}",
                Id::new_v4().simple()
            )
        }
        Kind::Batch => Id::new_v4().to_string(),
    };
    let ids = vec![unknown, submitted.infrastructure_id.clone()];
    let seen = infra.observe(kind, &ids, None).await.expect("observes");
    assert_eq!(seen.len(), 2, "{kind:?}: one report per id");
    assert_eq!(seen[0], Progress::Missing, "{kind:?}: unknown is missing");
    assert_ne!(
        seen[1],
        Progress::Missing,
        "{kind:?}: the started one is known"
    );
}

async fn stop_ends_the_task_and_is_idempotent(
    infra: &dyn PushInfrastructure,
    fx: &dyn Fixture,
    kind: Kind,
) {
    let submitted = infra
        .submit(&fx.submission(kind, run_id(), Id::new_v4()))
        .await
        .expect("submits");
    let id = submitted.infrastructure_id;
    infra
        .stop(kind, &id, "Stopped by the conformance suite", None)
        .await
        .expect("stops");
    infra
        .stop(kind, &id, "Stopped again", None)
        .await
        .expect("stopping twice is fine");
    let seen = infra
        .observe(kind, std::slice::from_ref(&id), None)
        .await
        .expect("observes");
    assert!(
        seen[0].is_final(),
        "{kind:?}: a stopped task or job has ended, got {:?}",
        seen[0]
    );
}
