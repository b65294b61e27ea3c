"""Stage 'submission': write and validate submissions/submission.parquet.

Flags: see `python -m audience stage submission --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("submission")
