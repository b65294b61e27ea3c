"""User representations built from the fit weeks."""
