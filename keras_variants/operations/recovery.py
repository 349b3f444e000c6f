"""A flow run whose worker dies: marked crashed, then run once more by a worker that lives.

A process worker runs each flow run as a child process; when the machine, or the worker with
its children, is killed (SIGKILL, a power cut), nothing is left to say so and the run stays
Running on the Prefect server. So prefect.yaml's deployments send a heartbeat every
:data:`HEARTBEAT_S` seconds (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in their job variables) and
carry the tag :data:`TAG`, and two automations on the server act on them (:func:`automations`):

- a run tagged :data:`TAG` whose heartbeats stop for :data:`SILENT_S` seconds is set Crashed
  (only those: other runs on the server beat every 180 s, Prefect's default, or not at all);
- a Crashed run of the pool that had run once (``prefect.run-count`` 1) is scheduled again
  (``AwaitingRetry``), so a worker of the pool takes it: a second crash is left Crashed.

A worker killed alone takes its runs with it sooner: their output goes through it, and each
ends Crashed at its next log line, which the second automation retries the same way.

The run's own work picks up after the lost attempt: the pipeline's start marks the MLflow
runs of dead processes on its machine FAILED, and nothing was registered (models are
registered only once every trial has finished, and promoted under the promotion lock).

:func:`install` is a build step of prefect.yaml: ``prefect deploy`` makes the work pool
(a process pool) if it is missing, and (re)makes the two automations.
"""

from __future__ import annotations

from typing import Any

POOL = "keras-variants"
TAG = "keras-variants-heartbeat"  # the runs whose silence means their process is gone
HEARTBEAT_S = 30  # Prefect's smallest heartbeat interval
SILENT_S = 3 * HEARTBEAT_S  # three heartbeats missed: the run is gone
PREFIX = "variants recovery"
ENDS = ("Completed", "Failed", "Cancelled", "Crashed")


def automations(pool: str = POOL, silent_s: int = SILENT_S) -> list[dict[str, Any]]:
    """The two automations, as the Prefect server's API takes them."""
    runs = {"prefect.resource.id": "prefect.flow-run.*"}
    in_pool = {"prefect.resource.role": "work-pool", "prefect.resource.name": pool}
    tagged = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
    silent = {
        "name": f"{PREFIX}: {pool}: a run's heartbeats stopped",
        "description": (
            f"A flow run tagged {TAG} that has sent no heartbeat for {silent_s} s (its worker "
            "or machine died) is set Crashed"
        ),
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.heartbeat", *(f"prefect.flow-run.{e}" for e in ENDS)],
            "match": runs,
            "match_related": tagged,
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": silent_s,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": f"no heartbeat for {silent_s} s: its worker or machine died",
            }
        ],
    }
    retry = {
        "name": f"{PREFIX}: {pool}: retry a crashed run once",
        "description": (
            f"A flow run of the {pool} pool that crashed on its first attempt is scheduled "
            "again, for a worker of the pool that lives; one that crashes again stays Crashed"
        ),
        "trigger": {
            "type": "event",
            "posture": "Reactive",
            "expect": ["prefect.flow-run.Crashed"],
            "match": runs | {"prefect.run-count": "1"},
            "match_related": in_pool,
            "threshold": 1,
            "within": 0,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "SCHEDULED",
                "name": "AwaitingRetry",
                "message": "crashed on its first attempt; retried once by another worker",
                "force": True,
            }
        ],
    }
    return [silent, retry]


def install(pool: str = POOL, silent_s: int = SILENT_S) -> dict[str, Any]:
    """Make the process work pool ``pool`` if missing, and (re)make the automations; what
    it did, for ``prefect deploy``'s step outputs."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        try:
            made = WorkPoolCreate(name=pool, type="process", base_job_template=template)
            client.create_work_pool(made)
            made_pool = True
        except ObjectAlreadyExists:
            made_pool = False
        names = []
        for spec in automations(pool, silent_s):
            for old in client.read_automations_by_name(spec["name"]):
                client.delete_automation(old.id)
            Automation.model_validate(spec).create()
            names.append(spec["name"])
    return {"pool": pool, "made_pool": made_pool, "automations": names}
