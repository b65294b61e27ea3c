"""Stage 'assign': cap-aware assignment (100 distinct users per clip, each user in at most 100 lists).

Flags: see `python -m audience stage assign --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("assign")
