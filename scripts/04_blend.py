"""Stage 'blend': blend the candidate sources into one pool per clip.

Flags: see `python -m audience stage blend --help`.
"""

from _stage import run_stage

if __name__ == "__main__":
    run_stage("blend")
