"""The Dask client of a run: a running scheduler's address, or a LocalCluster sized to this machine.

One client per process, opened on first use and closed at exit, so the stages of `audience run` (and the
holdout runs inside the rank stage) share one cluster and its broadcast data. A LocalCluster has one
single-threaded worker process per core by default (one thread per worker keeps each task's memory bound
simple) and splits the machine's memory evenly between them; `DaskConfig.memory_limit` overrides it. A
worker's numba kernels run on its own threads (NUMBA_NUM_THREADS; set it the same way on the workers of a
real cluster). A worker above 95 % of its limit is restarted by its nanny and its tasks rerun elsewhere
(the scheduler retries a task up to `distributed.scheduler.allowed-failures` times, 3 by default).
"""

from __future__ import annotations

import atexit
import logging
import os

from audience.config import DaskConfig
from audience.errors import SchedulerUnreachable

log = logging.getLogger(__name__)
_clients: dict[tuple, object] = {}


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def local_cluster_shape(cfg: DaskConfig) -> tuple[int, int]:
    """(workers, memory bytes per worker) of the LocalCluster `cfg` asks for."""
    from dask.utils import parse_bytes

    workers = cfg.workers or os.cpu_count() or 1
    memory = parse_bytes(cfg.memory_limit) if cfg.memory_limit else machine_memory_bytes() // workers
    return workers, int(memory)


def client_for(cfg: DaskConfig):
    """The process's `distributed.Client` for `cfg` (opened once; the cluster it started, if any, is
    closed at exit)."""
    key = (cfg.scheduler, cfg.workers, cfg.threads_per_worker, cfg.memory_limit)
    client = _clients.get(key)
    if client is not None and client.status == "running":
        return client
    from distributed import Client, LocalCluster

    # the in-process scheduler and client log every connection at INFO: keep the run's own log readable
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout=cfg.connect_timeout_s)
        except OSError as exc:  # distributed raises OSError ("Timed out trying to connect") after the timeout
            raise SchedulerUnreachable(
                f"dask scheduler {cfg.scheduler}: no answer within {cfg.connect_timeout_s:g} s ({exc})"
            ) from None
    else:
        workers, memory = local_cluster_shape(cfg)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=memory,
            processes=True,
            dashboard_address=":0",
            # numba's kernels inside a task use the worker's threads, not every core of the machine
            env={"NUMBA_NUM_THREADS": str(cfg.threads_per_worker)},
        )
        client = Client(cluster)
        log.info("dask: LocalCluster of %d workers x %.1f GB", workers, memory / 1e9)
    _clients[key] = client
    return client


def close_clients() -> None:
    """Close every client this process opened (and the LocalClusters they started)."""
    for client in list(_clients.values()):
        cluster = getattr(client, "cluster", None)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception as exc:  # closing at exit: a dead cluster must not hide the run's result
            log.debug("dask: closing the client failed: %s", exc)
    _clients.clear()


atexit.register(close_clients)
