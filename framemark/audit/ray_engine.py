"""The Ray engine of ``framemark audit``: the same :class:`~.work.Auditor` as the local engine, as Ray actors.

Each actor loads the runtime once and checks one file at a time; the driver keeps every actor busy with
``ray.wait`` and yields outcomes as they finish, so rows reach the results store as soon as they exist. An actor
that dies on a file (a decoder crash, the node lost) costs that file a row saying so; a fresh actor takes its
place. Ray is an optional dependency (``pip install 'framemark[ray]'``): importing this module never fails, using
it without Ray raises AuditError with that advice.

On a remote cluster (``address``) every node needs framemark installed (same version) and must see the input
files, the model folder and the ledger at the same paths as the driver (shared storage); the watermark key and
trust anchors travel to the actors inside the runtime's ``Resolved`` (use a cluster you trust with the key).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .config import AuditConfig
from .errors import AuditError
from .plan import Task
from .work import Auditor, Outcome, crash_outcome

INSTALL_HINT = "the Ray engine needs Ray: pip install 'framemark[ray]' (or use --engine local)"


def import_ray():
    try:
        import ray
    except ImportError:
        raise AuditError(INSTALL_HINT) from None
    return ray


class _AuditActor:
    """Ray actor body: one Auditor, kept for the actor's life."""

    def __init__(self, config: AuditConfig):
        self.auditor = Auditor(config)

    def ready(self) -> bool:
        return True

    def audit(self, task: Task) -> Outcome:
        return self.auditor.audit(task)


def ray_outcomes(tasks: list[Task], config: AuditConfig, *, address: str | None = None, workers: int | None = None,
                 threads: int = 1, temp_dir: str | None = None) -> Iterator[Outcome]:
    """Run ``tasks`` on Ray actors and yield each outcome as it finishes.

    ``address``: a running cluster (``ray://host:10001`` or ``host:6379``, or ``auto``); None starts a private
    local cluster of ``workers * threads`` CPUs for this audit and shuts it down at the end. ``workers``: actors
    (default: as many as the cluster's CPUs allow at ``threads`` CPUs each). ``threads``: CPUs reserved by, and
    torch threads of, each actor. If Ray is already initialised in this process, that connection is used.
    """
    if not tasks:
        return
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=(workers or os.cpu_count() or 1) * threads, include_dashboard=False,
                         log_to_driver=False, _temp_dir=temp_dir)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError...: all mean "no cluster"
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise AuditError(f"cannot start or reach {where}: {type(exc).__name__}: {exc}") from exc
        started_here = True
    try:
        yield from _run(ray, tasks, config, workers, threads)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray, tasks: list[Task], config: AuditConfig, workers: int | None, threads: int) -> Iterator[Outcome]:
    from dataclasses import replace

    from ray.exceptions import RayActorError, RayTaskError

    cpus = int(ray.cluster_resources().get("CPU", 1))
    n = max(1, min(workers or max(1, cpus // threads), len(tasks)))
    actor_class = ray.remote(num_cpus=threads, max_restarts=0)(_AuditActor)
    config = replace(config, threads=threads)
    config_ref = ray.put(config)

    def start_actor():
        return actor_class.remote(config_ref)

    actors = [start_actor() for _ in range(n)]
    try:
        try:
            ray.get([a.ready.remote() for a in actors])
        except (RayActorError, RayTaskError) as exc:
            raise AuditError(f"a Ray worker could not start: {_cause(exc)}") from None
        pending = list(reversed(tasks))
        inflight = {}
        for actor in actors:
            if pending:
                task = pending.pop()
                inflight[actor.audit.remote(task)] = (actor, task)
        deaths = 0
        while inflight:
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            actor, task = inflight.pop(ref)
            try:
                outcome = ray.get(ref)
            except RayActorError as exc:
                deaths += 1
                outcome = crash_outcome(task, f"the Ray worker died while checking this file ({_cause(exc)}); the "
                                              f"file may crash the decoder")
                actors.remove(actor)
                if deaths > len(tasks):
                    raise AuditError("Ray workers keep dying; see the Ray logs") from None
                actor = start_actor()
                actors.append(actor)
            except RayTaskError as exc:  # Auditor.audit catches our errors, so this is Ray's own trouble with the task
                outcome = crash_outcome(task, f"Ray could not run this file: {_cause(exc)}")
            yield outcome
            if pending:
                task = pending.pop()
                inflight[actor.audit.remote(task)] = (actor, task)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
