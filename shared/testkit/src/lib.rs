//! Test support shared by every crate's tests.
//!
//! Some tests read material that is not the project's: the real-world `prefect.yaml` corpus in a
//! `shared/testdata` folder beside the repository (present in CI, absent from a user's clone), or
//! Prefect's published base job templates (bundled in the `prefect` wheel that `infra/test.sh`
//! installs). A test that cannot find what it needs calls [`skip`]: it says so on stderr and, when
//! `SLUICE_SKIP_LOG` names a file (`infra/test.sh` sets it), appends one line there, so the run's
//! summary counts skipped tests instead of passing them off as passed.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Records that `test` did not run, and why. Returns `false` so callers can write
/// `if !available { return skip(..) }`-style guards tersely.
pub fn skip(test: &str, reason: &str) -> bool {
    eprintln!("{test}: skipped: {reason}");
    if let Some(log) = std::env::var_os("SLUICE_SKIP_LOG").filter(|v| !v.is_empty()) {
        // One short append per skip: O_APPEND keeps concurrent test threads' lines whole.
        let line = format!("{test}\t{reason}\n");
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(log) {
            let _ = f.write_all(line.as_bytes());
        }
    }
    false
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reason recorded when the outside test data is missing (one text, so the summary groups it).
pub const NO_SHARED_TESTDATA: &str =
    "the real-world test data (a `shared/testdata` folder beside the repository) is not present";

/// `<repo>/../shared/testdata/<rel>` when it exists; otherwise records a skip of `test` and
/// answers `None`.
pub fn shared_testdata(test: &str, rel: &str) -> Option<PathBuf> {
    let path = repo_root().join("../shared/testdata").join(rel);
    if path.exists() {
        Some(path)
    } else {
        skip(test, NO_SHARED_TESTDATA);
        None
    }
}

/// Where Prefect's wheel keeps the worker metadata its server falls back to: the default base
/// job template of every worker type Prefect's collections publish (process, ecs, kubernetes,
/// docker, ...).
const WORKER_METADATA: &str =
    "prefect/server/api/collections_data/views/aggregate-worker-metadata.json";

/// The metadata file inside the virtualenv named by `SLUICE_PREFECT_VENV`, if any.
fn installed_worker_metadata() -> Option<PathBuf> {
    let venv = PathBuf::from(std::env::var_os("SLUICE_PREFECT_VENV").filter(|v| !v.is_empty())?);
    // lib/python3.X/site-packages: the minor version is the interpreter's, so look it up.
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages").join(WORKER_METADATA))
        .find(|p| p.is_file())
}

/// Where a published template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// The `prefect` package installed by `infra/test.sh`.
    InstalledPrefect,
    /// The snapshot in the outside test data.
    SharedSnapshot,
}

/// Prefect's published default base job template for `pool_type`: from the installed `prefect`
/// package when `SLUICE_PREFECT_VENV` names one, else from the outside snapshot, else `None`
/// (and `test` is recorded as skipped). With `SLUICE_REQUIRE_PREFECT=1` a missing template
/// fails the test instead: the installed package must have it.
pub fn prefect_template(test: &str, pool_type: &str) -> Option<(Value, TemplateSource)> {
    if let Some(path) = installed_worker_metadata() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let metadata: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let found = metadata
            .as_object()
            .into_iter()
            .flat_map(|collections| collections.values())
            .find_map(|workers| workers.get(pool_type))
            .and_then(|worker| worker.get("default_base_job_configuration"))
            .cloned();
        match found {
            Some(template) => return Some((template, TemplateSource::InstalledPrefect)),
            None => panic!("{} has no template for {pool_type}", path.display()),
        }
    }
    assert!(
        std::env::var("SLUICE_REQUIRE_PREFECT").as_deref() != Ok("1"),
        "SLUICE_REQUIRE_PREFECT=1 but SLUICE_PREFECT_VENV names no virtualenv with prefect"
    );
    let path = repo_root()
        .join("../shared/testdata/base-job-templates")
        .join(format!("{pool_type}.json"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            Some((value, TemplateSource::SharedSnapshot))
        }
        Err(_) => {
            skip(
                test,
                "Prefect's published templates are unavailable: SLUICE_PREFECT_VENV is not set \
                 (infra/test.sh sets it) and no shared snapshot is beside the repository",
            );
            None
        }
    }
}
