"""Stage 'rank': train the XGBoost reranker on the holdout split and rank the candidate pool with it.

Flags: see `python -m audience stage rank --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("rank")
