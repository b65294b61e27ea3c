"""Hub download against a local mirror: a tiny HTTP server on 127.0.0.1 that serves a temp directory laid out
like the `deepvk/VK-LSVD` dataset repo and answers the few hub endpoints huggingface_hub uses (HEAD/GET
`/datasets/{repo}/resolve/{rev}/{path}` with Range support, GET `/api/datasets/{repo}/tree/{rev}/{path}`)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import polars as pl
import pytest

from audience.data.download import (
    METADATA_FILES,
    HubUnreachableError,
    download_dataset,
    list_remote_files,
    remote_files,
)
from audience.data.layout import DatasetLayout
from audience.errors import DataError

REPO_ID = "deepvk/VK-LSVD"
COMMIT = hashlib.sha1(b"vk-lsvd mirror").hexdigest()
REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "01_download_data.py"
TINY = "tiny"
TINY_FILES = [
    *METADATA_FILES,
    "subsamples/tiny/train/week_00.parquet",
    "subsamples/tiny/train/week_01.parquet",
    "subsamples/tiny/train/week_02.parquet",
    "subsamples/tiny/validation/week_03.parquet",
    "subsamples/tiny/test/week_04.parquet",
]


def _write_week(path: Path, week: int, n_rows: int = 200) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(week)
    pl.DataFrame(
        {
            "user_id": rng.integers(0, 1000, n_rows, dtype=np.int64),
            "item_id": rng.integers(0, 5000, n_rows, dtype=np.int64),
            "timespent": rng.integers(0, 60, n_rows, dtype=np.int64).astype(np.uint8),
            "like": rng.random(n_rows) < 0.1,
        }
    ).write_parquet(path)


def build_hub_tree(root: Path) -> None:
    """Fake VK-LSVD repo: shared metadata, a 3-train-week subsample `tiny`, another subsample, full data with
    the published week numbering (25 train weeks, validation 25, test 26), and unrelated repo files."""
    meta = root / "metadata"
    meta.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pl.DataFrame({"user_id": np.arange(1000), "age": rng.integers(18, 70, 1000)}).write_parquet(
        meta / "users_metadata.parquet"
    )
    pl.DataFrame({"item_id": np.arange(5000), "duration": rng.integers(5, 60, 5000)}).write_parquet(
        meta / "items_metadata.parquet"
    )
    np.savez(
        meta / "item_embeddings.npz", item_id=np.arange(5000), embedding=rng.random((5000, 8), np.float32)
    )
    for week in range(3):
        _write_week(root / f"subsamples/tiny/train/week_{week:02d}.parquet", week, n_rows=20_000)
    _write_week(root / "subsamples/tiny/validation/week_03.parquet", 3)
    _write_week(root / "subsamples/tiny/test/week_04.parquet", 4)
    _write_week(root / "subsamples/other/train/week_00.parquet", 0)
    _write_week(root / "subsamples/other/validation/week_01.parquet", 1)
    for week in range(25):
        _write_week(root / f"interactions/train/week_{week:02d}.parquet", week, n_rows=10)
    _write_week(root / "interactions/validation/week_25.parquet", 25, n_rows=10)
    _write_week(root / "interactions/test/week_26.parquet", 26, n_rows=10)
    (root / "README.md").write_text("# fake VK-LSVD\n")
    (root / "subsamples/tiny/notes.txt").write_text("not a week file\n")


class HubMirror:
    """Serves `root` like the hub serves a dataset repo; records every request as (method, path, Range)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.api_enabled = True
        self.cut_next_get: set[str] = set()  # hub paths whose next GET sends half the body, then hangs up
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def gets(self, prefix: str = "/datasets/") -> list[tuple[str, str, str | None]]:
        with self._lock:
            return [r for r in self.requests if r[0] == "GET" and r[1].startswith(prefix)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._route(head=True)

            def do_GET(self) -> None:
                self._route(head=False)

            def _send(
                self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False
            ) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, head: bool) -> None:
                body = json.dumps({"error": code}).encode()
                headers = {"X-Error-Code": code, "X-Repo-Commit": COMMIT, "Content-Type": "application/json"}
                self._send(status, headers, body, head)

            def _route(self, head: bool) -> None:
                url = urlsplit(self.path)
                path = unquote(url.path)
                with mirror._lock:
                    mirror.requests.append((self.command, path, self.headers.get("Range")))
                resolve = f"/datasets/{REPO_ID}/resolve/"
                tree = f"/api/datasets/{REPO_ID}/tree/"
                if path == "/":
                    self._send(200, {"Content-Type": "text/plain"}, b"hub mirror", head)
                elif path.startswith(resolve):
                    revision, _, filename = path[len(resolve) :].partition("/")
                    self._resolve(revision, filename, head)
                elif path.startswith(tree) and mirror.api_enabled and not head:
                    revision, _, folder = path[len(tree) :].partition("/")
                    recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                    self._tree(revision, folder.strip("/"), recursive)
                else:
                    self._send(404, {"Content-Type": "text/plain"}, b"not found", head)

            def _resolve(self, revision: str, filename: str, head: bool) -> None:
                if revision not in ("main", COMMIT):
                    return self._error(404, "RevisionNotFound", head)
                file = mirror.root / filename
                if not file.is_file():
                    return self._error(404, "EntryNotFound", head)
                data = file.read_bytes()
                headers = {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                    "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream",
                }
                wanted = self.headers.get("Range")
                if head or not wanted:
                    if not head and filename in mirror.cut_next_get:
                        mirror.cut_next_get.discard(filename)
                        return self._hang_up_midway(headers, data)
                    return self._send(200, headers, data, head)
                start_s, _, end_s = wanted.removeprefix("bytes=").partition("-")
                start, end = int(start_s), int(end_s) if end_s else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206, headers, data[start : end + 1])

            def _hang_up_midway(self, headers: dict[str, str], data: bytes) -> None:
                self.send_response(200)
                for key, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _tree(self, revision: str, folder: str, recursive: bool) -> None:
                if revision not in ("main", COMMIT):
                    return self._error(404, "RevisionNotFound", head=False)
                base = mirror.root / folder if folder else mirror.root
                if not base.is_dir():
                    return self._error(404, "EntryNotFound", head=False)
                children = sorted(base.rglob("*") if recursive else base.iterdir())
                entries = []
                for child in children:
                    rel = child.relative_to(mirror.root).as_posix()
                    if child.is_dir():
                        entries.append(
                            {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "path": rel}
                        )
                        continue
                    data = child.read_bytes()
                    entries.append(
                        {
                            "type": "file",
                            "oid": hashlib.sha1(data).hexdigest(),
                            "size": len(data),
                            "path": rel,
                            "lfs": {
                                "oid": hashlib.sha256(data).hexdigest(),
                                "size": len(data),
                                "pointerSize": 134,
                            },
                        }
                    )
                self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode())

        return Handler

    def __enter__(self) -> HubMirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    build_hub_tree(root)
    return root


@pytest.fixture
def mirror(hub_root: Path) -> Iterator[HubMirror]:
    with HubMirror(hub_root) as server:
        yield server


@pytest.fixture(autouse=True)
def isolated_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep huggingface_hub away from the user's cache, token and endpoint settings."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for var in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return home


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _local_files(data_dir: Path) -> set[str]:
    """Downloaded files relative to data_dir, leaving out huggingface_hub's `.cache/` bookkeeping."""
    return {
        p.relative_to(data_dir).as_posix()
        for p in data_dir.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(data_dir).parts
    }


def _download(data_dir: Path, mirror: HubMirror, **kwargs: object) -> list[Path]:
    subsample = kwargs.pop("subsample", TINY)
    options: dict[str, object] = {"endpoint": mirror.url, "progress": False, "token": False, **kwargs}
    return download_dataset(data_dir, subsample, **options)  # type: ignore[arg-type]


def test_remote_files_static_layout() -> None:
    files = remote_files("up0.01_ip0.01")
    assert files[:3] == list(METADATA_FILES)
    assert files[3] == "subsamples/up0.01_ip0.01/train/week_00.parquet"
    assert files[27] == "subsamples/up0.01_ip0.01/train/week_24.parquet"
    assert files[-2:] == [
        "subsamples/up0.01_ip0.01/validation/week_25.parquet",
        "subsamples/up0.01_ip0.01/test/week_26.parquet",
    ]
    assert len(files) == 3 + 25 + 2
    full = remote_files("full", include_test=False, weeks=[0, 7])
    assert full[3:] == [
        "interactions/train/week_00.parquet",
        "interactions/train/week_07.parquet",
        "interactions/validation/week_25.parquet",
    ]
    assert remote_files(None) == remote_files("") == remote_files("full")


def test_list_remote_files_takes_weeks_from_the_hub(mirror: HubMirror) -> None:
    assert list_remote_files(TINY, endpoint=mirror.url, token=False) == TINY_FILES
    full = list_remote_files(None, endpoint=mirror.url, token=False, include_test=False)
    assert len(full) == 3 + 25 + 1 and full[-1] == "interactions/validation/week_25.parquet"


def test_download_yields_exact_layout_and_bytes(tmp_path: Path, mirror: HubMirror, hub_root: Path) -> None:
    data_dir = tmp_path / "data"
    paths = _download(data_dir, mirror)
    assert paths == [data_dir / p for p in TINY_FILES]
    assert _local_files(data_dir) == set(TINY_FILES)
    for rel in TINY_FILES:
        assert (data_dir / rel).read_bytes() == (hub_root / rel).read_bytes(), rel
    layout = DatasetLayout(data_dir, TINY)
    layout.check_metadata_present()
    assert [p.name for p in layout.train_weeks()] == ["week_00.parquet", "week_01.parquet", "week_02.parquet"]
    assert layout.validation_week().name == "week_03.parquet"
    assert layout.test_week() is not None
    assert pl.read_parquet(layout.validation_week()).height == 200


def test_second_run_downloads_nothing(tmp_path: Path, mirror: HubMirror) -> None:
    data_dir = tmp_path / "data"
    first = _download(data_dir, mirror, max_workers=3)
    assert len(mirror.gets()) == len(TINY_FILES)
    mirror.clear()
    assert _download(data_dir, mirror) == first
    assert mirror.gets() == []


def test_weeks_and_no_test(tmp_path: Path, mirror: HubMirror) -> None:
    data_dir = tmp_path / "data"
    _download(data_dir, mirror, weeks=[0, 2], include_test=False)
    assert _local_files(data_dir) == {
        *METADATA_FILES,
        "subsamples/tiny/train/week_00.parquet",
        "subsamples/tiny/train/week_02.parquet",
        "subsamples/tiny/validation/week_03.parquet",
    }
    with pytest.raises(DataError, match=r"train weeks \[9\] not on the hub"):
        _download(data_dir, mirror, weeks=[9])


def test_unknown_subsample_names_the_available_ones(tmp_path: Path, mirror: HubMirror) -> None:
    with pytest.raises(DataError, match=r"available subsamples: other, tiny"):
        _download(tmp_path / "data", mirror, subsample="up9_ip9")


def test_transfer_cut_midway_is_resumed_with_range(
    tmp_path: Path, mirror: HubMirror, hub_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # huggingface_hub hands bytes to the file in DOWNLOAD_CHUNK_SIZE (10 MB) pieces and resumes from the last
    # whole piece written; with small pieces a cut file of ~90 kB is resumed mid-way instead of restarted.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    target = "subsamples/tiny/train/week_01.parquet"
    mirror.cut_next_get.add(target)
    data_dir = tmp_path / "data"
    _download(data_dir, mirror, max_workers=1)
    assert (data_dir / target).read_bytes() == (hub_root / target).read_bytes()
    ranges = [r for _, path, r in mirror.gets() if path.endswith(target)]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] is not None, ranges
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= (hub_root / target).stat().st_size // 2  # continued, not restarted


def test_truncated_local_file_is_fetched_again(tmp_path: Path, mirror: HubMirror, hub_root: Path) -> None:
    data_dir = tmp_path / "data"
    _download(data_dir, mirror)
    damaged = data_dir / "subsamples/tiny/train/week_02.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])
    orphan = data_dir / "metadata/items_metadata.parquet"  # a partial copy huggingface_hub has no record of
    orphan.write_bytes(orphan.read_bytes()[:50])
    for meta in (data_dir / ".cache").rglob("items_metadata.parquet.metadata"):
        meta.unlink()
    mirror.clear()
    _download(data_dir, mirror)
    for rel in TINY_FILES:
        assert (data_dir / rel).read_bytes() == (hub_root / rel).read_bytes(), rel
    assert sorted(path for _, path, _ in mirror.gets()) == [
        f"/datasets/{REPO_ID}/resolve/main/metadata/items_metadata.parquet",
        f"/datasets/{REPO_ID}/resolve/main/subsamples/tiny/train/week_02.parquet",
    ]


def test_hf_endpoint_environment_variable_is_used(
    tmp_path: Path, mirror: HubMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url + "/")
    data_dir = tmp_path / "data"
    download_dataset(data_dir, TINY, weeks=[1], progress=False, token=False)
    assert "subsamples/tiny/train/week_01.parquet" in _local_files(data_dir)


def test_static_file_list_when_listing_api_is_missing(tmp_path: Path, mirror: HubMirror) -> None:
    mirror.api_enabled = False
    data_dir = tmp_path / "data"
    paths = _download(data_dir, mirror, subsample="full", weeks=[0, 24], max_workers=4)
    assert [p.relative_to(data_dir).as_posix() for p in paths] == remote_files(None, weeks=[0, 24])
    assert DatasetLayout(data_dir).validation_week().name == "week_25.parquet"


def test_closed_port_fails_fast_pointing_to_synthetic_data(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(HubUnreachableError) as caught:
        download_dataset(tmp_path / "data", TINY, endpoint=_closed_port_url(), progress=False, token=False)
    assert time.monotonic() - start < 15
    message = str(caught.value)
    assert "could not reach the Hugging Face Hub" in message
    assert "python scripts/01_synthetic_data.py --preset small --data-dir data/synthetic" in message
    assert isinstance(caught.value, DataError)
    assert not (tmp_path / "data").exists()


def test_silent_endpoint_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(HubUnreachableError, match="synthetic"):
            download_dataset(tmp_path / "data", TINY, endpoint=url, progress=False, timeout=0.5)
        assert time.monotonic() - start < 5


def _run_script(*args: str, env_extra: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "PYTHONPATH"}
    env.update({"HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", **env_extra})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_script_end_to_end(tmp_path: Path, mirror: HubMirror, hub_root: Path, isolated_hf: Path) -> None:
    data_dir = tmp_path / "cli data"
    done = _run_script(
        "--data-dir",
        str(data_dir),
        "--subsample",
        TINY,
        "--endpoint",
        mirror.url,
        "--quiet",
        env_extra={},
        home=isolated_hf,
    )
    assert done.returncode == 0, done.stderr
    assert _local_files(data_dir) == set(TINY_FILES)
    assert (data_dir / TINY_FILES[-1]).read_bytes() == (hub_root / TINY_FILES[-1]).read_bytes()
    assert str(data_dir) in done.stdout

    mirror.clear()
    again = _run_script(
        "--data-dir",
        str(data_dir),
        "--subsample",
        TINY,
        "--weeks",
        "0,1",
        "--no-test",
        "--max-workers",
        "1",
        env_extra={"HF_ENDPOINT": mirror.url},
        home=isolated_hf,
    )
    assert again.returncode == 0, again.stderr
    assert mirror.gets() == []


def test_script_unreachable_exits_2_without_traceback(tmp_path: Path, isolated_hf: Path) -> None:
    done = _run_script(
        "--data-dir",
        str(tmp_path / "data"),
        "--endpoint",
        _closed_port_url(),
        "--timeout",
        "3",
        env_extra={},
        home=isolated_hf,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "scripts/01_synthetic_data.py --preset small --data-dir data/synthetic" in done.stderr
