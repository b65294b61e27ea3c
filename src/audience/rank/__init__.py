"""Turning many candidate sources into one ranked pool per clip."""
