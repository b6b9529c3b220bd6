"""Captioners and pseudo-query construction."""
