"""Download VK-LSVD (full data or one subsample, plus the shared metadata) from the Hugging Face Hub.

Files land at exactly `data_dir/<hub path>`, so `DatasetLayout(data_dir, subsample)` finds them. Which week
files exist is asked from the hub's tree listing (the week count is not hard-coded); `remote_files` is the
static fallback for mirrors without the listing API. Downloads go through `huggingface_hub.hf_hub_download`
with `local_dir`, which skips files already complete (a re-run transfers nothing) and resumes a broken
connection within the run with an HTTP Range request. Before any of that, a short reachability check turns "no
network" into one clear `HubUnreachableError` instead of minutes of retries.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from audience.data.layout import WEEK_PATTERN
from audience.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_REPO_ID = "deepvk/VK-LSVD"
DEFAULT_SUBSAMPLE = "up0.01_ip0.01"
DEFAULT_TIMEOUT_S = 10.0
N_TRAIN_WEEKS = 25  # static fallback only: train weeks 00..24, validation week 25, test week 26
METADATA_FILES = (
    "metadata/users_metadata.parquet",
    "metadata/items_metadata.parquet",
    "metadata/item_embeddings.npz",
)
SPLITS = ("train", "validation", "test")
SYNTHETIC_HINT = (
    "To work without the hub, generate the synthetic dataset instead: "
    "`python scripts/01_synthetic_data.py --preset small --data-dir data/synthetic` (or `make data`)."
)


class HubUnreachableError(DataError):
    """The Hugging Face Hub (or the mirror named by `endpoint`/`HF_ENDPOINT`) could not be reached."""


def normalize_subsample(subsample: str | None) -> str | None:
    """`None`, `""` and `"full"` all mean the full dataset (files under `interactions/`)."""
    if subsample is None:
        return None
    subsample = subsample.strip().strip("/")
    return None if subsample in ("", "full") else subsample


def interactions_prefix(subsample: str | None) -> str:
    """Hub folder holding the train/validation/test week files of a subsample (or of the full data)."""
    subsample = normalize_subsample(subsample)
    return f"subsamples/{subsample}" if subsample else "interactions"


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub URL to use: the explicit argument, else `HF_ENDPOINT` (read now, so a value set after
    `huggingface_hub` was imported still counts), else huggingface_hub's own default."""
    from huggingface_hub import constants

    chosen = endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    return chosen.rstrip("/")


def _unreachable_message(endpoint: str, reason: str) -> str:
    return f"could not reach the Hugging Face Hub at {endpoint} ({reason}). {SYNTHETIC_HINT}"


def check_hub_reachable(endpoint: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Return the resolved endpoint if it answers an HTTP request within `timeout` seconds (any HTTP status
    counts as an answer); raise `HubUnreachableError` otherwise. Runs in a helper thread so that even a
    hanging DNS lookup cannot hold the caller much longer than `timeout`."""
    from huggingface_hub import constants

    url = resolve_endpoint(endpoint)
    if constants.is_offline_mode():
        raise HubUnreachableError(_unreachable_message(url, "offline mode: HF_HUB_OFFLINE is set"))
    if not url.startswith(("http://", "https://")):
        raise DataError(f"hub endpoint {url!r}: expected an http:// or https:// URL")

    outcome: list[BaseException | None] = []

    def probe() -> None:
        request = urllib.request.Request(
            url + "/", method="HEAD", headers={"User-Agent": "audience-download"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered, with an error status: it is reachable
        except Exception as exc:  # URLError, TimeoutError, OSError, ssl errors: not reachable
            outcome.append(exc)

    worker = threading.Thread(target=probe, name="hub-reachability", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if not outcome:
        raise HubUnreachableError(_unreachable_message(url, f"no answer within {timeout:g} s"))
    if outcome[0] is not None:
        exc = outcome[0]
        reason = getattr(exc, "reason", None) or exc
        raise HubUnreachableError(_unreachable_message(url, str(reason))) from exc
    return url


def remote_files(
    subsample: str | None,
    n_train_weeks: int = N_TRAIN_WEEKS,
    include_validation: bool = True,
    include_test: bool = True,
    weeks: Sequence[int] | None = None,
) -> list[str]:
    """Static list of hub paths (metadata first, then train weeks, validation, test), assuming the published
    layout: train weeks 0..n_train_weeks-1, validation week n_train_weeks, test week n_train_weeks+1.
    `weeks` keeps only those train weeks. Used when the hub's listing API is not available."""
    prefix = interactions_prefix(subsample)
    train_weeks = [w for w in range(n_train_weeks) if weeks is None or w in set(weeks)]
    paths = list(METADATA_FILES)
    paths += [f"{prefix}/train/week_{w:02d}.parquet" for w in train_weeks]
    if include_validation:
        paths.append(f"{prefix}/validation/week_{n_train_weeks:02d}.parquet")
    if include_test:
        paths.append(f"{prefix}/test/week_{n_train_weeks + 1:02d}.parquet")
    return paths


def _hub_errors() -> tuple[type[Exception], ...]:
    from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError

    return EntryNotFoundError, HfHubHTTPError


def _list_tree(api: object, repo_id: str, path: str, revision: str | None, recursive: bool) -> dict[str, int]:
    """{hub path: size in bytes} of the files under `path` on the hub."""
    from huggingface_hub.hf_api import RepoFile

    entries = api.list_repo_tree(  # type: ignore[attr-defined]
        repo_id, path_in_repo=path, recursive=recursive, repo_type="dataset", revision=revision
    )
    return {e.path: int(e.size) for e in entries if isinstance(e, RepoFile)}


def _hub_listing(
    subsample: str | None,
    *,
    repo_id: str,
    revision: str | None,
    endpoint: str | None,
    token: str | bool | None,
    include_validation: bool,
    include_test: bool,
    weeks: Sequence[int] | None,
) -> dict[str, int]:
    """{hub path: size} of the files to fetch, as the hub's tree listing reports them."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=resolve_endpoint(endpoint), token=token)
    prefix = interactions_prefix(subsample)
    where = f"{repo_id}@{revision or 'main'}"
    try:
        interactions = _list_tree(api, repo_id, prefix, revision, recursive=True)
        metadata = _list_tree(api, repo_id, "metadata", revision, recursive=False)
    except RepositoryNotFoundError as exc:
        raise DataError(f"{repo_id}: dataset repository not found on the hub (or it needs a token)") from exc
    except RevisionNotFoundError as exc:
        raise DataError(f"{where}: revision not found on the hub") from exc
    except EntryNotFoundError as exc:
        raise DataError(
            f"{where}: no folder {prefix!r}; {_available_subsamples(api, repo_id, revision)}"
        ) from exc

    by_split: dict[str, list[tuple[int, str]]] = {split: [] for split in SPLITS}
    for path in interactions:
        parts = path[len(prefix) + 1 :].split("/")
        if len(parts) == 2 and parts[0] in by_split and (m := WEEK_PATTERN.match(parts[1])):
            by_split[parts[0]].append((int(m.group(1)), path))
    train = sorted(by_split["train"])
    validation = sorted(by_split["validation"])
    if not train:
        raise DataError(f"{where}: {prefix}/train holds no week_NN.parquet files on the hub")
    if include_validation and len(validation) != 1:
        raise DataError(
            f"{where}: {prefix}/validation: expected one week_NN.parquet, found {len(validation)}"
        )
    if weeks is not None:
        missing = sorted(set(weeks) - {w for w, _ in train})
        if missing:
            raise DataError(
                f"{where}: train weeks {missing} not on the hub (available: {[w for w, _ in train]})"
            )
        train = [(w, p) for w, p in train if w in set(weeks)]
    absent = [p for p in METADATA_FILES if p not in metadata]
    if absent:
        raise DataError(f"{where}: metadata files missing on the hub: {absent}")

    selected = list(METADATA_FILES) + [p for _, p in train]
    if include_validation:
        selected += [p for _, p in validation]
    if include_test:
        selected += [p for _, p in sorted(by_split["test"])]
    sizes = {**interactions, **metadata}
    return {p: sizes[p] for p in selected}


def _available_subsamples(api: object, repo_id: str, revision: str | None) -> str:
    """'available subsamples: a, b' from the hub, or a neutral phrase if that listing fails too."""
    from huggingface_hub.hf_api import RepoFolder

    try:
        entries = api.list_repo_tree(  # type: ignore[attr-defined]
            repo_id, path_in_repo="subsamples", repo_type="dataset", revision=revision
        )
        names = sorted(e.path.rsplit("/", 1)[-1] for e in entries if isinstance(e, RepoFolder))
    except _hub_errors():
        return "could not list the available subsamples"
    return f"available subsamples: {', '.join(names) or 'none'} (or 'full' for the full data)"


def list_remote_files(
    subsample: str | None,
    *,
    repo_id: str = DEFAULT_REPO_ID,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    include_validation: bool = True,
    include_test: bool = True,
    weeks: Sequence[int] | None = None,
) -> list[str]:
    """Hub paths to fetch for a subsample (None = full data), with the week files the hub really lists, plus
    the three metadata files. Raises `DataError` when the subsample, revision or repo does not exist, and
    lets huggingface_hub's HTTP errors through when the listing API itself fails."""
    listing = _hub_listing(
        normalize_subsample(subsample),
        repo_id=repo_id,
        revision=revision,
        endpoint=endpoint,
        token=token,
        include_validation=include_validation,
        include_test=include_test,
        weeks=weeks,
    )
    return list(listing)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the connection failed" for whichever HTTP stack huggingface_hub uses."""
    from huggingface_hub.utils import LocalEntryNotFoundError, OfflineModeIsEnabled

    found: list[type[BaseException]] = [
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        ConnectionError,
        TimeoutError,
    ]
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
    ):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


@contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Silence huggingface_hub's per-file bars when progress is off, restoring the previous state after."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def download_dataset(
    data_dir: Path,
    subsample: str | None,
    repo_id: str = DEFAULT_REPO_ID,
    revision: str | None = None,
    endpoint: str | None = None,
    include_test: bool = True,
    weeks: list[int] | None = None,
    max_workers: int = 2,
    token: str | bool | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Fetch the metadata and the week files of `subsample` (None/"full" = full data; `weeks` keeps only
    those train weeks) into `data_dir/<hub path>`; return the local paths, metadata first.

    Resumable: complete files are skipped (huggingface_hub compares the stored etag, so a re-run transfers
    nothing), a file whose size differs from the hub's is fetched again, and a connection cut mid-file is
    resumed by huggingface_hub with a Range request; a run killed mid-file restarts that one file (hub 2.x
    keeps no partial file between runs). Raises `HubUnreachableError` within about `timeout` seconds when
    the endpoint (argument, else `HF_ENDPOINT`, else huggingface.co) does not answer."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from tqdm.auto import tqdm

    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    subsample = normalize_subsample(subsample)
    url = check_hub_reachable(endpoint, timeout=timeout)
    data_dir = Path(data_dir)

    sizes: dict[str, int | None]
    try:
        sizes = dict(
            _hub_listing(
                subsample,
                repo_id=repo_id,
                revision=revision,
                endpoint=url,
                token=token,
                include_validation=True,
                include_test=include_test,
                weeks=weeks,
            )
        )
    except _network_errors() as exc:
        raise HubUnreachableError(_unreachable_message(url, f"listing failed: {exc}")) from exc
    except HfHubHTTPError as exc:  # e.g. a plain file mirror without the /api tree endpoint
        logger.warning("hub listing unavailable at %s (%s); using the static VK-LSVD file list", url, exc)
        static = remote_files(subsample, include_validation=True, include_test=include_test, weeks=weeks)
        sizes = dict.fromkeys(static)

    data_dir.mkdir(parents=True, exist_ok=True)

    def fetch(path: str) -> Path:
        local = data_dir / path
        expected = sizes[path]
        stale = local.is_file() and expected is not None and local.stat().st_size != expected
        try:
            got = hf_hub_download(
                repo_id=repo_id,
                repo_type="dataset",
                filename=path,
                local_dir=data_dir,
                revision=revision,
                endpoint=url,
                token=token,
                force_download=stale,
            )
        except (RepositoryNotFoundError, GatedRepoError) as exc:
            raise DataError(f"{repo_id}: dataset repository not found or not accessible on {url}") from exc
        except RevisionNotFoundError as exc:
            raise DataError(f"{repo_id}@{revision}: revision not found on {url}") from exc
        except _network_errors() as exc:  # includes LocalEntryNotFoundError: HEAD failed, no local copy
            raise HubUnreachableError(_unreachable_message(url, f"while fetching {path}: {exc}")) from exc
        except EntryNotFoundError as exc:
            raise DataError(f"{repo_id}: {path} not found on {url} at revision {revision or 'main'}") from exc
        size = Path(got).stat().st_size
        if expected is not None and size != expected:
            raise DataError(f"{got}: {size} bytes after download, the hub lists {expected}")
        return local

    paths = list(sizes)
    done: dict[str, Path] = {}
    with (
        _hf_progress_bars(progress),
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hf-download") as pool,
        tqdm(
            total=len(paths), unit="file", desc=f"VK-LSVD {subsample or 'full'}", disable=not progress
        ) as bar,
    ):
        futures: dict[Future[Path], str] = {pool.submit(fetch, p): p for p in paths}
        try:
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [done[p] for p in paths]
