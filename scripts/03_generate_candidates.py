"""Stage 'candidates': top users per target clip from every candidate source.

Flags: see `python -m audience stage candidates --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("candidates")
