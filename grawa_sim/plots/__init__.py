"""Figures of the studies (matplotlib only; every figure saved as PNG and PDF)."""
