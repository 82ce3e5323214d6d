"""Run folders on disk: atomic storage, resumable sweeps, flatness of a saved run."""
