"""The foundation: the worker axis and its collectives, errors, devices, atomic files, statistics."""
