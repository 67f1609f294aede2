//! A flow run's graph as Prefect's UI draws it (`GET /flow_runs/{id}/graph-v2`, Prefect's
//! `flow_run_graph_v2` query): one node per task run, a subflow's task run drawn as the subflow
//! run itself, edges from the task inputs that name another run, and the artifacts beside the
//! nodes that made them.

use std::collections::{HashMap, HashSet};

use crate::domain::{Artifact, FlowRun, Id, StateType, TaskRun, Timestamp};

/// Prefect's `PREFECT_API_MAX_FLOW_RUN_GRAPH_NODES` default.
pub const MAX_NODES: usize = 10_000;
/// Prefect's `PREFECT_API_MAX_FLOW_RUN_GRAPH_ARTIFACTS` default.
pub const MAX_ARTIFACTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    FlowRun,
    TaskRun,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::FlowRun => "flow-run",
            NodeKind::TaskRun => "task-run",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GraphArtifact {
    pub id: Id,
    pub created: Timestamp,
    pub key: Option<String>,
    pub artifact_type: Option<String>,
    pub is_latest: bool,
    /// Only a progress artifact's value travels with the graph.
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub id: Id,
    pub label: String,
    pub state_type: Option<StateType>,
    pub start_time: Timestamp,
    pub end_time: Option<Timestamp>,
    pub parents: Vec<Id>,
    pub children: Vec<Id>,
    pub encapsulating: Vec<Id>,
    pub artifacts: Vec<GraphArtifact>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub root_node_ids: Vec<Id>,
    pub nodes: Vec<Node>,
    /// The flow run's own artifacts (made outside any task).
    pub artifacts: Vec<GraphArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The graph of flow run {flow_run_id} has more than {max_nodes} nodes.")]
pub struct GraphTooLarge {
    pub flow_run_id: Id,
    pub max_nodes: usize,
}

/// What the graph is made of, read by the caller.
pub struct GraphInput<'a> {
    pub run: &'a FlowRun,
    /// The run's task runs.
    pub task_runs: &'a [TaskRun],
    /// The subflow runs whose parent task run is one of `task_runs`, with their flow's name.
    pub subflows: &'a [(FlowRun, String)],
    /// The run's artifacts, and the latest artifact id of each of their keys.
    pub artifacts: &'a [Artifact],
    pub latest_of_key: &'a HashMap<String, Id>,
    /// Only nodes still running or ended at or after this instant.
    pub since: Option<Timestamp>,
    pub max_nodes: usize,
}

/// The references to other runs in a task run's `task_inputs`: `(input name, run id)`.
fn input_references(run: &TaskRun) -> Vec<(String, Id)> {
    let Some(inputs) = run.fields.get("task_inputs").and_then(|v| v.as_object()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, items) in inputs {
        for item in items.as_array().into_iter().flatten() {
            if let Some(id) = item
                .get("id")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
            {
                out.push((name.clone(), id));
            }
        }
    }
    out
}

pub fn build(input: &GraphInput<'_>) -> Result<Graph, GraphTooLarge> {
    let subflow_of: HashMap<Id, &(FlowRun, String)> = input
        .subflows
        .iter()
        .filter_map(|s| s.0.parent_task_run_id.map(|t| (t, s)))
        .collect();
    // Each task run becomes a node (its subflow, if it stands for one), with the ids it refers
    // to; runs with no time at all are not drawn.
    let mut nodes: Vec<(Node, Vec<(String, Id)>)> = Vec::new();
    for task in input.task_runs {
        let node = match subflow_of.get(&task.id) {
            Some((sub, flow_name)) => {
                let Some(start) = sub
                    .start_time
                    .or(sub.expected_start_time)
                    .or(task.start_time)
                    .or(task.expected_start_time)
                else {
                    continue;
                };
                Node {
                    kind: NodeKind::FlowRun,
                    id: sub.id,
                    label: format!("{flow_name} / {}", sub.name),
                    state_type: sub.state_type(),
                    start_time: start,
                    end_time: sub.end_time,
                    parents: Vec::new(),
                    children: Vec::new(),
                    encapsulating: Vec::new(),
                    artifacts: Vec::new(),
                }
            }
            None => {
                let Some(start) = task.start_time.or(task.expected_start_time) else {
                    continue;
                };
                let state_type = task.state.as_ref().map(|s| s.state_type);
                // A completed run with no end (a cache hit) is drawn as a point.
                let end_time = task.end_time.or_else(|| {
                    (state_type == Some(StateType::Completed))
                        .then_some(task.expected_start_time)
                        .flatten()
                });
                Node {
                    kind: NodeKind::TaskRun,
                    id: task.id,
                    label: task.name.clone(),
                    state_type,
                    start_time: start,
                    end_time,
                    parents: Vec::new(),
                    children: Vec::new(),
                    encapsulating: Vec::new(),
                    artifacts: Vec::new(),
                }
            }
        };
        nodes.push((node, input_references(task)));
    }
    let present: HashSet<Id> = nodes.iter().map(|(n, _)| n.id).collect();
    let mut children: HashMap<Id, Vec<Id>> = HashMap::new();
    for (node, refs) in &mut nodes {
        for (input_name, parent) in refs.iter() {
            if !present.contains(parent) {
                continue;
            }
            if input_name == "__parents__" {
                if !node.encapsulating.contains(parent) {
                    node.encapsulating.push(*parent);
                }
            } else {
                if !node.parents.contains(parent) {
                    node.parents.push(*parent);
                }
                let list = children.entry(*parent).or_default();
                if !list.contains(&node.id) {
                    list.push(node.id);
                }
            }
        }
    }
    let mut by_task: HashMap<Option<Id>, Vec<GraphArtifact>> = HashMap::new();
    let mut artifacts: Vec<&Artifact> = input
        .artifacts
        .iter()
        .filter(|a| a.kind.as_deref() != Some("result"))
        .collect();
    artifacts.sort_by_key(|a| (a.created, a.id));
    for a in artifacts.into_iter().take(MAX_ARTIFACTS) {
        let is_latest = match &a.key {
            None => true,
            Some(key) => input.latest_of_key.get(key) == Some(&a.id),
        };
        by_task
            .entry(a.task_run_id)
            .or_default()
            .push(GraphArtifact {
                id: a.id,
                created: a.created,
                key: a.key.clone(),
                artifact_type: a.kind.clone(),
                is_latest,
                data: (a.kind.as_deref() == Some("progress")).then(|| a.data.clone()),
            });
    }
    let mut out: Vec<Node> = nodes
        .into_iter()
        .map(|(mut node, _)| {
            node.children = children.remove(&node.id).unwrap_or_default();
            if node.kind == NodeKind::TaskRun {
                node.artifacts = by_task.remove(&Some(node.id)).unwrap_or_default();
            }
            node
        })
        .filter(|n| match (input.since, n.end_time) {
            (Some(since), Some(end)) => end >= since,
            _ => true,
        })
        .collect();
    out.sort_by(|a, b| {
        a.start_time
            .cmp(&b.start_time)
            .then_with(|| match (a.end_time, b.end_time) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then(a.id.cmp(&b.id))
    });
    if out.len() > input.max_nodes {
        return Err(GraphTooLarge {
            flow_run_id: input.run.id,
            max_nodes: input.max_nodes,
        });
    }
    Ok(Graph {
        start_time: input.run.start_time.or(input.run.expected_start_time),
        end_time: input.run.end_time,
        root_node_ids: out
            .iter()
            .filter(|n| n.parents.is_empty())
            .map(|n| n.id)
            .collect(),
        nodes: out,
        artifacts: by_task.remove(&None).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JsonMap, State};
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).expect("valid time")
    }

    fn task(name: &str, start: i64, end: Option<i64>, inputs: serde_json::Value) -> TaskRun {
        let mut fields = JsonMap::new();
        fields.insert("task_inputs".into(), inputs);
        TaskRun {
            id: uuid::Uuid::new_v4(),
            created: t(0),
            updated: t(0),
            name: name.into(),
            flow_run_id: None,
            task_key: name.into(),
            dynamic_key: "0".into(),
            tags: Vec::new(),
            state: Some(State::new(
                if end.is_some() {
                    StateType::Completed
                } else {
                    StateType::Running
                },
                t(start),
            )),
            run_count: 1,
            expected_start_time: Some(t(start)),
            start_time: Some(t(start)),
            end_time: end.map(t),
            fields,
            version: 1,
        }
    }

    fn graph(
        run: &FlowRun,
        tasks: &[TaskRun],
        subflows: &[(FlowRun, String)],
    ) -> Result<Graph, GraphTooLarge> {
        build(&GraphInput {
            run,
            task_runs: tasks,
            subflows,
            artifacts: &[],
            latest_of_key: &HashMap::new(),
            since: None,
            max_nodes: MAX_NODES,
        })
    }

    #[test]
    fn inputs_naming_another_run_are_edges_and_parents_are_encapsulation() {
        let run = FlowRun::new(uuid::Uuid::new_v4(), t(0));
        let a = task("a", 1, Some(2), json!({}));
        let b = task(
            "b",
            3,
            Some(4),
            json!({"x": [{"input_type": "task_run", "id": a.id}], "y": [{"input_type": "parameter", "name": "n"}]}),
        );
        let c = task(
            "c",
            5,
            None,
            json!({"__parents__": [{"input_type": "task_run", "id": b.id}], "z": [{"input_type": "task_run", "id": uuid::Uuid::new_v4()}]}),
        );
        let g = graph(&run, &[c.clone(), b.clone(), a.clone()], &[]).expect("small graph");
        let ids: Vec<Id> = g.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![a.id, b.id, c.id], "ordered by start time");
        assert_eq!(g.nodes[1].parents, vec![a.id]);
        assert_eq!(g.nodes[0].children, vec![b.id]);
        assert_eq!(g.nodes[2].encapsulating, vec![b.id]);
        assert!(g.nodes[2].parents.is_empty(), "unknown ids are no edge");
        assert_eq!(g.root_node_ids, vec![a.id, c.id]);
    }

    #[test]
    fn a_subflow_task_is_drawn_as_the_subflow_run() {
        let run = FlowRun::new(uuid::Uuid::new_v4(), t(0));
        let parent = task("child-flow", 1, Some(9), json!({}));
        let mut sub = FlowRun::new(uuid::Uuid::new_v4(), t(0));
        sub.name = "lucky-fox".into();
        sub.parent_task_run_id = Some(parent.id);
        sub.start_time = Some(t(2));
        sub.end_time = Some(t(8));
        let g = graph(&run, &[parent], &[(sub.clone(), "child".into())]).expect("graph");
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].kind, NodeKind::FlowRun);
        assert_eq!(g.nodes[0].id, sub.id);
        assert_eq!(g.nodes[0].label, "child / lucky-fox");
        assert_eq!(g.nodes[0].start_time, t(2));
    }

    #[test]
    fn too_many_nodes_is_an_error() {
        let run = FlowRun::new(uuid::Uuid::new_v4(), t(0));
        let tasks: Vec<TaskRun> = (0..3)
            .map(|i| task("t", i, Some(i + 1), json!({})))
            .collect();
        let err = build(&GraphInput {
            run: &run,
            task_runs: &tasks,
            subflows: &[],
            artifacts: &[],
            latest_of_key: &HashMap::new(),
            since: None,
            max_nodes: 2,
        })
        .expect_err("three nodes over a limit of two");
        assert_eq!(err.max_nodes, 2);
    }
}
