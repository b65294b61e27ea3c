"""The challenge's cap rule as one feasibility check: every target clip gets `list_size` distinct users and
no user is in more than `user_cap` lists. Its own module, below the assignment, so the profiles stage can ask
it without taking the assignment's code into its cache keys (code_key.py)."""

from __future__ import annotations


def cap_infeasibility(n_clips: int, list_size: int, n_users: int, user_cap: int) -> str | None:
    """Why no assignment can give `n_clips` lists of `list_size` distinct users with no user in more than
    `user_cap` lists, or None when one can: the one feasibility check of the cap (the profiles stage and the
    assignment both ask it)."""
    if n_clips > 0 and n_users < list_size:
        return f"{n_users} users < list_size {list_size} (a list needs distinct users)"
    if n_clips * list_size > n_users * user_cap:
        return (
            f"{n_clips} target clips need {n_clips * list_size} slots, but {n_users} users x cap {user_cap} "
            f"allow only {n_users * user_cap}"
        )
    return None
