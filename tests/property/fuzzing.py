"""The fuzz targets' shared settings: the number of examples comes from
TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per target), else each target's default; no
deadline and no health checks (a target's first examples compile kernels or build models)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

N_ENV = os.environ.get("TRITIUM_FUZZ_EXAMPLES")


def fuzz(default: int):
    """Hypothesis settings for a fuzz target that runs ``default`` examples in `make test`."""
    return settings(max_examples=int(N_ENV) if N_ENV else default, deadline=None,
                    suppress_health_check=list(HealthCheck))
