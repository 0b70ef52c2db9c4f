"""Imported once by the fork server of a sweep's worker processes (trainlab.sweep_pool): what
every job of a training sweep imports, so that each forked unit starts with it done.

torch.optim's import of torch._dynamo is skipped as the CLI skips it (trainlab.lazy_dynamo),
and what is alive afterwards is kept from the collector's full passes (`gc.freeze`, as the
CLI does after its imports).
"""

import gc

from trainlab import lazy_dynamo

lazy_dynamo.install()

import cloudpickle  # noqa: E402, F401  - the units arrive pickled
import torch.optim  # noqa: E402, F401

import trainlab.fused  # noqa: E402, F401
import trainlab.hydra_app  # noqa: E402, F401  - the task function's module
import trainlab.sweep_job  # noqa: E402, F401
import trainlab.tasks  # noqa: E402, F401
import trainlab.train  # noqa: E402, F401

gc.collect()
gc.freeze()
