//! Typed calls for the CLI resource verbs: pools, queues, workers, deployments, flow runs, variables.
