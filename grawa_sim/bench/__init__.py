"""Benchmarks that print speed ratios measured side by side in one process."""
