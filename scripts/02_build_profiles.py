"""Stage 'profiles': user profiles (averaged clip embeddings) and activity counts from the fit weeks.

Flags: see `python -m audience stage profiles --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("profiles")
