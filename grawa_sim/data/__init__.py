"""Data sets, per-worker shards and batch streams, CIFAR folders, augmentation, the two-basins landscape."""
