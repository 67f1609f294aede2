"""Fills a server with what the UI pages show, through Prefect's own SDK: a completed flow
run with task runs, a subflow, logs and an artifact; a failed run; a deployment with a schedule
on a process pool; a Secret block; a variable; a global and a tag concurrency limit.
Prints a JSON object naming what it made (ids for the pages' paths)."""

import asyncio
import json
import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.variables import Variable


@task
def add(a: int, b: int) -> int:
    return a + b


@task(tags=["ui-tag"])
def shout(word: str) -> str:
    get_run_logger().info("shouting %s", word)
    return word.upper()


@flow(name="ui-sub")
def sub() -> int:
    return add(20, 22)


@flow(name="ui-etl")
def etl(n: int = 3) -> int:
    get_run_logger().info("etl starting with n=%s", n)
    total = sum(f.result() for f in add.map(range(n), 1))
    shout("done")
    create_markdown_artifact(
        key="ui-report", markdown=f"# ETL report\n\ntotal: {total}", description="ETL report"
    )
    sub()
    return total


@flow(name="ui-broken")
def broken() -> None:
    get_run_logger().info("about to fail")
    raise ValueError("boom from the UI test")


def main(pool: str) -> dict:
    # Called outside any event loop: in one, these calls would return coroutines.
    made = {}
    Secret(value="not-for-the-browser").save("ui-secret", overwrite=True)
    Variable.set("ui_variable", "hello from the UI test", overwrite=True)
    state = etl(return_state=True)
    made["completed_run"] = str(state.state_details.flow_run_id)
    state = broken(return_state=True)
    made["failed_run"] = str(state.state_details.flow_run_id)
    made.update(asyncio.run(register(pool)))
    return made


async def register(pool: str) -> dict:
    made = {}
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="ui-limit", limit=3)
        )
        await client.create_concurrency_limit(tag="ui-tag", concurrency_limit=2)
        flow_id = await client.create_flow_from_name("ui-etl")
        made["flow"] = str(flow_id)
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name="ui-nightly",
            work_pool_name=pool,
            entrypoint="seed.py:etl",
            path=".",
            parameters={"n": 5},
            tags=["ui"],
            schedules=[
                {"schedule": CronSchedule(cron="0 3 * * *", timezone="UTC"), "active": True}
            ],
        )
        made["deployment"] = str(deployment_id)
        runs = await client.read_flow_runs(limit=50)
        made["task_runs"] = len(await client.read_task_runs(limit=200))
        made["runs"] = len(runs)
    return made


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
