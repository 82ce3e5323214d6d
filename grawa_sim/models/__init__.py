"""The model registry: small MNIST-1D models, deep CIFAR models, per-sample losses."""
