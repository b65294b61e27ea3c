"""Download VK-LSVD (one subsample or the full data, plus the shared metadata) from the Hugging Face Hub.

    python scripts/01_download_data.py --data-dir data/vk-lsvd --subsample up0.01_ip0.01
    python scripts/01_download_data.py --subsample full --no-test --weeks 0,1,2

Re-running is cheap: complete files are skipped. Exit code 2, with one line, when the hub cannot be reached
(the message points to the synthetic data generator instead) or the data is bad; any other error is a bug
and keeps its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import audience  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from audience.data.download import (
    DEFAULT_REPO_ID,
    DEFAULT_SUBSAMPLE,
    DEFAULT_TIMEOUT_S,
    HubUnreachableError,
    download_dataset,
)
from audience.errors import DataError


def _weeks(text: str) -> list[int]:
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--weeks: expected comma-separated integers, got {text!r}") from exc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data/vk-lsvd"), help="local mirror of the hub repo"
    )
    parser.add_argument(
        "--subsample",
        default=DEFAULT_SUBSAMPLE,
        help="subsample name, e.g. ur0.01_ir0.01; 'full' = full data",
    )
    parser.add_argument("--no-test", action="store_true", help="skip the test week")
    parser.add_argument("--weeks", type=_weeks, default=None, help="only these train weeks, e.g. 0,1,2")
    parser.add_argument("--endpoint", default=None, help="hub URL (default: $HF_ENDPOINT or huggingface.co)")
    parser.add_argument(
        "--revision", default=None, help="branch, tag or commit of the dataset (default: main)"
    )
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID, help=argparse.SUPPRESS)
    parser.add_argument("--max-workers", type=int, default=2, help="files downloaded in parallel")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the hub to answer"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = download_dataset(
            args.data_dir,
            args.subsample,
            repo_id=args.repo_id,
            revision=args.revision,
            endpoint=args.endpoint,
            include_test=not args.no_test,
            weeks=args.weeks,
            max_workers=args.max_workers,
            progress=not args.quiet,
            timeout=args.timeout,
        )
    except (HubUnreachableError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} files ({total_mb:.1f} MB) under {args.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
