"""Training: the stacked engine, the per-worker loop reference, the simulated clock, run() and Result."""
