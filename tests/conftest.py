"""One torch thread per test process (and per notebook kernel or subprocess it starts).

On a 2-core machine two intra-op threads per process oversubscribe the CPU as soon as
anything else runs; pytest-xdist supplies the parallelism instead (see the Makefile).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
