"""Stage 'evaluate': NDCG@100 of every method against the truth week (and the synthetic oracle).

Flags: see `python -m audience stage evaluate --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("evaluate")
