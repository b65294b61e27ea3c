"""Learning the first stage's weights (candidates/combined.py) on label weeks.

A logistic regression of "the user engaged with the clip" on the combined terms, over each label clip's
positive users and `negatives` users drawn uniformly from all users: the whole population the first stage
ranks, where the reranker's pools are a sample biased towards what the sources already find. The terms are
standardised for the fit (L2, C = 1) and the coefficients mapped back to raw units, with the intercept.
Limits: linear in the terms, so it is a recall stage that decides who enters the pool, not a ranker; the
uniform negatives may include a pseudo-new clip's hidden audience (a few per thousand), counted as negatives;
users drawn twice for one clip count twice."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from audience.candidates.base import ClipQueries
from audience.candidates.combined import TermTables
from audience.errors import TooLittleData
from audience.profiles.fit_data import FitData


def label_sample(
    data: FitData,
    queries: ClipQueries,
    positive_clip: np.ndarray,
    positive_user: np.ndarray,
    negatives: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(terms, labels, term names) of one label week: its positive (clip row, user) pairs and `negatives`
    uniform users per clip of `queries`."""
    tables = TermTables(data)
    n_clips = len(queries)
    negative_clip = np.repeat(np.arange(n_clips, dtype=np.int64), negatives)
    negative_user = rng.integers(0, tables.n_users, negative_clip.size)
    clips = np.concatenate([np.asarray(positive_clip, dtype=np.int64), negative_clip])
    users = np.concatenate([np.asarray(positive_user, dtype=np.int64), negative_user])
    labels = np.concatenate([np.ones(len(positive_clip), np.int8), np.zeros(negative_clip.size, np.int8)])
    return tables.pair_terms(tables.clip_side(queries), clips, users), labels, tables.terms


def fit_weights(terms: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """The logistic regression's weights per term in raw units, and 'intercept'. Raises TooLittleData
    without both classes."""
    if labels.size == 0 or labels.min() == labels.max():
        raise TooLittleData(f"first stage: {int(labels.sum())} positives among {labels.size} pairs")
    mean, scale = terms.mean(axis=0), terms.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=1.0, max_iter=1000).fit((terms - mean) / scale, labels)
    coef = model.coef_[0] / scale
    weights = {name: float(c) for name, c in zip(names, coef, strict=True)}
    weights["intercept"] = float(model.intercept_[0] - (coef * mean).sum())
    return weights
