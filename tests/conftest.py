"""One torch thread per test process (and per notebook kernel or subprocess it starts); a scratch folder.

On a 2-core machine two intra-op threads per process oversubscribe the CPU as soon as
anything else runs; pytest-xdist supplies the parallelism instead (see the Makefile).

The suite never writes into the project's committed files: quick modes, figures and notebook
results go to a scratch folder ($GRAWA_SCRATCH, $GRAWA_FIGURES, $GRAWA_RESULTS) removed at the end.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
if "GRAWA_SCRATCH" not in os.environ:
    _scratch = tempfile.mkdtemp(prefix="grawa-tests-")
    atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    os.environ["GRAWA_SCRATCH"] = _scratch
    os.environ.setdefault("GRAWA_FIGURES", os.path.join(_scratch, "figures"))
    os.environ.setdefault("GRAWA_RESULTS", os.path.join(_scratch, "results"))

import torch  # noqa: E402

torch.set_num_threads(1)
