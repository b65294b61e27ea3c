"""Scoring runs against the truth week, and the synthetic oracle."""
