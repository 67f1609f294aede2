//! Task runs: recorded from the engine's events (the task-run recorder), created and moved
//! through the API (older clients, and the parent task run of a subflow), and the parent task
//! run of a subflow kept in the subflow's state, as Prefect's `UpdateSubflowParentTask` does.

use serde_json::Value;
use sluice_core::domain::{FlowRun, Id, JsonMap, State, TaskRun};
use sluice_core::task_runs::{self as rules, task_run_from_fields};
use sluice_store::{FlowRunFilter, FlowRunSort, StoreError, TaskRunFilter, TaskRunSort};

use crate::Services;
use crate::error::{Result, ServiceError};

const CAS_ATTEMPTS: usize = 8;

fn not_found() -> ServiceError {
    ServiceError::NotFound("Task run not found".to_owned())
}

/// A task run to create through the API: Prefect's `TaskRunCreate`, its fields as sent.
#[derive(Debug, Clone)]
pub struct TaskRunInput {
    pub id: Option<Id>,
    pub flow_run_id: Option<Id>,
    pub fields: JsonMap,
    pub state: Option<State>,
}

impl Services {
    /// Creates a task run unless its flow run already has one with its task key and dynamic
    /// key; `(run, created)`.
    pub async fn create_task_run(&self, input: TaskRunInput) -> Result<(TaskRun, bool)> {
        let now = self.now();
        let id = input.id.unwrap_or_else(uuid::Uuid::now_v7);
        let run = task_run_from_fields(id, input.flow_run_id, &input.fields, now)
            .map_err(ServiceError::Invalid)?;
        let state = input
            .state
            .unwrap_or_else(|| State::new(sluice_core::domain::StateType::Pending, now));
        let run = rules::with_state(&run, state, now);
        match self.store.create_task_run(&run).await {
            Ok(out) => Ok(out),
            Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(format!(
                "task run {id} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read_task_run(&self, id: Id) -> Result<TaskRun> {
        self.store.read_task_run(id).await?.ok_or_else(not_found)
    }

    pub async fn list_task_runs(
        &self,
        filter: &TaskRunFilter,
        sort: TaskRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<TaskRun>> {
        Ok(self
            .store
            .list_task_runs(filter, sort, limit, offset)
            .await?)
    }

    pub async fn count_task_runs(&self, filter: &TaskRunFilter) -> Result<usize> {
        Ok(self.store.count_task_runs(filter).await?)
    }

    pub async fn delete_task_run(&self, id: Id) -> Result<()> {
        if self.store.delete_task_run(id).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    pub async fn task_run_states(&self, id: Id) -> Result<Vec<State>> {
        Ok(self.store.list_task_run_states(id).await?)
    }

    /// Changes a task run's fields a client may patch (its name), compare-and-set.
    pub async fn rename_task_run(&self, id: Id, name: String) -> Result<()> {
        self.change_task_run(id, |run| {
            run.name = name.clone();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Writes a state (older clients' `set_state`; Prefect 3's engine reports states as events
    /// instead). Accepted as proposed; the run's times and counts follow it.
    pub async fn set_task_run_state(&self, id: Id, state: State) -> Result<TaskRun> {
        let now = self.now();
        self.change_task_run(id, |run| {
            *run = rules::with_state(run, state.clone(), now);
            Ok(())
        })
        .await
    }

    async fn change_task_run(
        &self,
        id: Id,
        change: impl Fn(&mut TaskRun) -> Result<()>,
    ) -> Result<TaskRun> {
        for _ in 0..CAS_ATTEMPTS {
            let mut run = self.read_task_run(id).await?;
            change(&mut run)?;
            run.updated = self.now();
            match self.store.update_task_run(&run).await {
                Ok(()) => return Ok(run),
                Err(StoreError::Conflict(_)) => {}
                Err(StoreError::NotFound(_)) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "task run {id} kept changing; try again"
        )))
    }

    /// Task runs per flow run, leaving out the parent task runs of subflows (the UI shows
    /// those as the subflows themselves), as Prefect's `/ui/flow_runs/count-task-runs`.
    pub async fn count_task_runs_by_flow_run(
        &self,
        flow_run_ids: &[Id],
    ) -> Result<Vec<(Id, usize)>> {
        let filter = TaskRunFilter {
            flow_run_ids: Some(flow_run_ids.to_vec()),
            ..TaskRunFilter::default()
        };
        let runs = self
            .store
            .list_task_runs(&filter, TaskRunSort::IdDesc, None, 0)
            .await?;
        let parents = FlowRunFilter {
            parent_task_run_ids: Some(runs.iter().map(|r| r.id).collect()),
            ..FlowRunFilter::default()
        };
        let trackers: std::collections::HashSet<Id> = if runs.is_empty() {
            Default::default()
        } else {
            self.store
                .list_flow_runs(&parents, FlowRunSort::IdDesc, None, 0)
                .await?
                .into_iter()
                .filter_map(|f| f.parent_task_run_id)
                .collect()
        };
        Ok(flow_run_ids
            .iter()
            .map(|id| {
                let n = runs
                    .iter()
                    .filter(|r| r.flow_run_id == Some(*id) && !trackers.contains(&r.id))
                    .count();
                (*id, n)
            })
            .collect())
    }

    /// A subflow's parent task run takes the state the subflow just took (a copy with its own
    /// id and time, naming the subflow as its child), as Prefect's server keeps it. A parent
    /// task run Sluice never heard of is left alone.
    pub(crate) async fn mirror_to_parent_task_run(&self, subflow: &FlowRun) {
        let (Some(parent), Some(state)) = (subflow.parent_task_run_id, &subflow.state) else {
            return;
        };
        let mut copy = State::new(state.state_type, self.now());
        copy.name.clone_from(&state.name);
        copy.message.clone_from(&state.message);
        copy.data = state.data.clone();
        copy.state_details.insert(
            "child_flow_run_id".to_owned(),
            Value::String(subflow.id.to_string()),
        );
        match self.set_task_run_state(parent, copy).await {
            Ok(_) | Err(ServiceError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(task_run = %parent, error = %e, "could not update a subflow's parent task run");
            }
        }
    }
}
