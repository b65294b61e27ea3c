"""Nearest-neighbour search over user vectors: hnswlib (approximate) and exact blocked matmul.

The HNSW build is single-threaded by default (`build_threads`): hnswlib's parallel insertion order depends
on thread timing, so a parallel build gives a different graph, and different candidates, on every run.

Both return top-k by similarity (cosine on unit vectors, or inner product) as `TopK`. hnswlib does not
store `ef` with an index, so `HnswIndex.save` writes it in a sidecar JSON and `load` restores it.
Limits: exact search costs O(n_queries x n_users x dim) (blocked to ~256 MB of scores at a time);
HNSW memory is about n_users x (4 x dim + 8 x M) bytes and build time grows ~ n log n.
"""

from __future__ import annotations

import json
from pathlib import Path

import hnswlib
import numpy as np

from audience.arrays import TopK, top_k
from audience.config import HnswConfig


class HnswIndex:
    """hnswlib index over the rows of `vectors` whose ids are given (dense user indices)."""

    def __init__(
        self,
        space: str = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 256,
        n_threads: int = 1,
        seed: int = 0,
        build_threads: int = 1,
    ):
        if space not in ("cosine", "ip"):
            raise ValueError(f"space must be 'cosine' or 'ip', got {space!r}")
        self.space, self.m, self.ef_construction, self.ef = space, m, ef_construction, ef
        self.n_threads, self.seed, self.build_threads = n_threads, seed, build_threads
        self.index: hnswlib.Index | None = None
        self.size = 0
        self._vectors: np.ndarray | None = None
        self._ids: np.ndarray | None = None

    @classmethod
    def from_config(cls, space: str, cfg: HnswConfig, n_threads: int = 1, seed: int = 0) -> HnswIndex:
        return cls(space, cfg.m, cfg.ef_construction, cfg.ef, n_threads, seed, cfg.build_threads)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> HnswIndex:
        dim = vectors.shape[1]
        self.index = hnswlib.Index(space=self.space, dim=dim)
        self.index.init_index(
            max_elements=max(len(ids), 1),
            ef_construction=self.ef_construction,
            M=self.m,
            random_seed=self.seed,
        )
        if len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            self.index.add_items(vectors, ids.astype(np.int64), num_threads=self.build_threads)
        self.index.set_num_threads(self.n_threads)
        self.size = len(ids)
        self._vectors, self._ids = vectors, ids  # references only: the exact fallback for huge k
        return self

    def query(self, queries: np.ndarray, k: int) -> TopK:
        out = TopK.empty(queries.shape[0], k)
        k_eff = min(k, self.size)
        if self.index is None or k_eff == 0 or queries.shape[0] == 0:
            return out
        self.index.set_ef(max(self.ef, k_eff))
        try:
            labels, distances = self.index.knn_query(
                np.ascontiguousarray(queries, dtype=np.float32), k=k_eff, num_threads=self.n_threads
            )
        except RuntimeError:  # hnswlib cannot always return k close to the index size (ip space): go exact
            if self._vectors is None:
                raise
            return exact_search(self._vectors, self._ids, queries, k)
        out.ids[:, :k_eff] = labels.astype(np.int32)
        out.scores[:, :k_eff] = 1.0 - distances  # cosine and ip distances are 1 - similarity
        return out

    def save(self, path: Path) -> None:
        assert self.index is not None
        self.index.save_index(str(path))
        meta = {
            "space": self.space,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "size": self.size,
            "dim": self.index.dim,
        }
        Path(f"{path}.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path, n_threads: int = 1) -> HnswIndex:
        meta = json.loads(Path(f"{path}.json").read_text())
        obj = cls(meta["space"], meta["m"], meta["ef_construction"], meta["ef"], n_threads)
        obj.index = hnswlib.Index(space=meta["space"], dim=meta["dim"])
        obj.index.load_index(str(path), max_elements=max(meta["size"], 1))
        obj.index.set_num_threads(n_threads)
        obj.size = meta["size"]
        return obj


def exact_search(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int, block_bytes: int = 256 << 20
) -> TopK:
    """Brute force inner-product top-k (cosine when rows are unit vectors), in blocks of queries. The
    float32 inputs are multiplied in float64 and the scores rounded to float32, so a (query, vector) score
    does not depend on how a BLAS kernel tiles the product (the block, the other vectors): equal vectors
    tie exactly, and a search over a subset of the vectors (a user shard) scores them as the whole search
    does, unless a float64 sum falls within its rounding error of a float32 rounding boundary."""
    out = TopK.empty(queries.shape[0], k)
    if len(ids) == 0:
        return out
    vectors = np.ascontiguousarray(vectors, dtype=np.float64)
    step = max(1, block_bytes // (12 * max(len(ids), 1)))  # the float64 product and its float32 copy
    for start in range(0, queries.shape[0], step):  # blocks of queries, each a single matmul
        block = (queries[start : start + step].astype(np.float32).astype(np.float64) @ vectors.T).astype(
            np.float32
        )
        top = top_k(block, k, ids.astype(np.int32))
        out.ids[start : start + step] = top.ids
        out.scores[start : start + step] = top.scores
    return out


def recall_against_exact(approx: TopK, exact: TopK) -> float:
    """Share of the exact top-k found by the approximate search (micro-averaged over queries)."""
    n, k = exact.ids.shape
    valid = exact.ids >= 0
    if not valid.any():
        return float("nan")
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    n_users = int(max(exact.ids.max(), approx.ids.max())) + 1
    exact_keys = rows[valid.ravel()] * n_users + exact.ids.ravel()[valid.ravel()]
    av = approx.ids.ravel() >= 0
    approx_keys = rows[av] * n_users + approx.ids.ravel()[av]
    return float(np.isin(exact_keys, approx_keys).mean())
