"""Write a synthetic dataset in the VK-LSVD layout (presets tiny/small/medium/large/vk-small/vk) with
its hidden truth.
Usage: python scripts/01_synthetic_data.py --preset small [--data-dir data/synthetic-small] [--overwrite]"""

import sys

from _stage import main

if __name__ == "__main__":
    raise SystemExit(main(["synth", *sys.argv[1:]]))
