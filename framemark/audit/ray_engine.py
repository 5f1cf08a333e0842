"""The Ray engine of ``framemark audit``: the same :class:`~.work.Auditor` as the local engine, as Ray actors.

Each actor loads the runtime once and checks one file at a time (on a GPU, a batch of files whose inversions
run together); the driver keeps every actor busy with ``ray.wait`` and yields outcomes as they finish, so rows
reach the results store as soon as they exist. An actor that dies on a file (a decoder crash, the node lost)
costs that file a row saying so (on a batch: its files are tried again one at a time); a fresh actor takes its
place. When the model runs on CUDA each actor asks Ray for ``gpus`` GPUs (default one), and Ray gives it its own
(``CUDA_VISIBLE_DEVICES``): the actor's runtime then uses device ``cuda``, whatever index the driver named.
Ray is an optional dependency (``pip install 'framemark[ray]'``): importing this module never fails, using it
without Ray raises AuditError with that advice.

On a remote cluster (``address``) every node needs framemark installed (same version) and must see the input
files, the model folder and the ledger at the same paths as the driver (shared storage); the watermark key and
trust anchors travel to the actors inside the runtime's ``Resolved`` (use a cluster you trust with the key).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .config import AuditConfig
from .engines import batches
from .errors import AuditError
from .plan import Task
from .work import Auditor, Outcome, crash_outcome, on_device

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

    def audit_batch(self, tasks: list[Task]) -> list[Outcome]:
        return self.auditor.audit_batch(tasks)


def ray_outcomes(tasks: list[Task], config: AuditConfig, *, address: str | None = None, workers: int | None = None,
                 threads: int = 1, temp_dir: str | None = None, gpus: float = 1.0,
                 batch_size: int = 1) -> Iterator[Outcome]:
    """Run ``tasks`` on Ray actors and yield each outcome as it finishes.

    ``address``: a running cluster (``ray://host:10001`` or ``host:6379``, or ``auto``); None starts a private
    local cluster of ``workers * threads`` CPUs (and this machine's GPUs) for this audit and shuts it down at the
    end. ``workers``: actors (default: as many as the cluster's CPUs allow at ``threads`` CPUs each, and its GPUs
    at ``gpus`` each). ``threads``: CPUs reserved by, and torch threads of, each actor. ``gpus``: GPUs each actor
    asks for when the runtime's device is CUDA (a fraction packs several actors on one GPU); on the CPU none.
    ``batch_size``: files an actor checks at once. If Ray is already initialised in this process, that
    connection is used.
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
        yield from _run(ray, tasks, config, workers, threads, gpus, batch_size)
    finally:
        if started_here:
            ray.shutdown()


def actor_plan(device: str, resources: dict, *, workers: int | None, threads: int, gpus: float,
               jobs: int) -> tuple[int, float, str]:
    """How many actors, the GPUs each asks for, and the device its runtime uses, from the cluster's resources
    (``ray.cluster_resources()``). On CUDA an actor sees only the GPU Ray gave it, so its device is ``cuda``;
    AuditError when the cluster has no GPU (actors asking for one would wait for ever) or ``gpus`` is not
    positive."""
    cpus = int(resources.get("CPU", 1))
    if not device.startswith("cuda"):
        return max(1, min(workers or max(1, cpus // threads), jobs)), 0.0, device
    if gpus <= 0:
        raise AuditError(f"GPUs per Ray actor must be positive for --device {device} (got {gpus})")
    available = float(resources.get("GPU", 0))
    if available <= 0:
        raise AuditError(f"--device {device}: the Ray cluster has no GPU (its resources: "
                         f"{int(cpus)} CPUs); start its nodes with GPUs or use --device cpu")
    fit = max(1, min(cpus // threads, int(available // gpus)))
    return max(1, min(workers or fit, jobs)), gpus, "cuda"


def _run(ray, tasks: list[Task], config: AuditConfig, workers: int | None, threads: int, gpus: float,
         batch_size: int) -> Iterator[Outcome]:
    from dataclasses import replace

    from ray.exceptions import RayActorError, RayTaskError

    jobs = batches(tasks, batch_size)
    n, per_actor, device = actor_plan(config.resolved.options.device, ray.cluster_resources(), workers=workers,
                                      threads=threads, gpus=gpus, jobs=len(jobs))
    actor_class = ray.remote(num_cpus=threads, num_gpus=per_actor, max_restarts=0)(_AuditActor)
    config = on_device(replace(config, threads=threads), device)
    config_ref = ray.put(config)

    def start_actor():
        return actor_class.remote(config_ref)

    actors = [start_actor() for _ in range(n)]
    try:
        try:
            ray.get([a.ready.remote() for a in actors])
        except (RayActorError, RayTaskError) as exc:
            raise AuditError(f"a Ray worker could not start: {_cause(exc)}") from None
        pending = list(reversed(jobs))
        inflight = {}
        for actor in actors:
            if pending:
                job = pending.pop()
                inflight[actor.audit_batch.remote(job)] = (actor, job)
        deaths = 0
        while inflight:
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            actor, job = inflight.pop(ref)
            try:
                outcomes = ray.get(ref)
            except RayActorError as exc:
                deaths += 1
                if len(job) == 1:
                    outcomes = [crash_outcome(job[0], f"the Ray worker died while checking this file "
                                                      f"({_cause(exc)}); the file may crash the decoder")]
                else:  # one of the batch is to blame: find it, one by one
                    outcomes = []
                    pending.extend([task] for task in reversed(job))
                actors.remove(actor)
                if deaths > len(tasks):
                    raise AuditError("Ray workers keep dying; see the Ray logs") from None
                actor = start_actor()
                actors.append(actor)
            except RayTaskError as exc:  # Auditor catches our errors, so this is Ray's own trouble with the task
                outcomes = [crash_outcome(task, f"Ray could not run this file: {_cause(exc)}") for task in job]
            yield from outcomes
            if pending:
                job = pending.pop()
                inflight[actor.audit_batch.remote(job)] = (actor, job)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
