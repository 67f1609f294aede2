#!/usr/bin/env bash
# Installs the Python-packaged tools the tests and CI use into one virtualenv, each at a pinned
# version, and only when it is not there yet.
#
#   infra/tools.sh [TOOL...]     TOOL: moto | cfn-lint | cargo-lambda | sam | prefect | prefect2 (default: moto)
#
# The virtualenv lives at $SLUICE_TOOLS (default: tools/ in the cargo target directory,
# ${CARGO_TARGET_DIR:-target}, so clones that share a target directory share it); put its bin/
# on PATH to use the tools. Prints the virtualenv's path on stdout. Needs python3 with venv/pip.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${SLUICE_TOOLS:-${CARGO_TARGET_DIR:-$repo/target}/tools}"

# The pins. Bump them here and nowhere else.
requirements_of() {
    case "$1" in
        moto) echo "moto[server]==5.2.5" ;;
        cfn-lint) echo "cfn-lint==1.58.0" ;;
        cargo-lambda) echo "cargo-lambda==1.9.2 ziglang==0.15.1" ;;
        sam) echo "aws-sam-cli==1.170.0" ;;
        # Prefect's client for the compatibility test; its own virtualenv (SLUICE_TOOLS), as
        # its dependencies are not the other tools' business. prefect-aws: its blocks are
        # registered and saved by the flow tests; prefect-docker and prefect-kubernetes: their
        # stock workers are run against pools migrated from Docker and Kubernetes blocks.
        prefect) echo "prefect==3.9.1 prefect-aws==0.7.12 prefect-docker==0.7.4 prefect-kubernetes==0.8.0" ;;
        # Prefect 2 (its server and SDK) for the import test from an agent-era server; its own
        # virtualenv, as for prefect. prefect-aws 0.4 is the last line for Prefect 2 (ECSTask,
        # S3Bucket).
        prefect2) echo "prefect==2.20.27 prefect-aws==0.4.19" ;;
        *)
            echo "infra/tools.sh: unknown tool '$1' (known: moto cfn-lint cargo-lambda sam prefect prefect2)" >&2
            return 2
            ;;
    esac
}

if [ "$#" -eq 0 ]; then
    set -- moto
fi

wanted=()
for tool in "$@"; do
    reqs="$(requirements_of "$tool")" || exit 2
    read -r -a split <<<"$reqs"
    wanted+=("${split[@]}")
done

mkdir -p "$(dirname "$tools")"
# Two test runs starting at once must not build the same virtualenv together.
exec 9>"$tools.lock"
flock 9

if [ ! -x "$tools/bin/python" ]; then
    echo "infra/tools.sh: creating a virtualenv at $tools" >&2
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi

mkdir -p "$tools/.installed"
missing=()
for req in "${wanted[@]}"; do
    if [ ! -e "$tools/.installed/$req" ]; then
        missing+=("$req")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "infra/tools.sh: installing ${missing[*]}" >&2
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
    for req in "${missing[@]}"; do
        touch "$tools/.installed/$req"
    done
fi

echo "$tools"
