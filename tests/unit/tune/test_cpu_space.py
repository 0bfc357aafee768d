"""The canonical CPU search spaces: no two configs run the same code."""

from __future__ import annotations

import pytest

from tritium.backends.cpu import isa as isa_mod
from tritium.backends.cpu.build import KernelConfig
from tritium.tune import cpu
from tritium.tune.cpu import _path, _relevant


def _small(isa: str) -> dict:
    names = {p.name for p in KernelConfig.search_params(isa)}
    only = {"tok_chunk": (16, 64), "gemv_max_m": (1, 2, 8), "gemm_min_m": (2, 8, 64),
            "gemm_mr": (4, 8), "gemm_nrv": (2, 3), "gemm_mc": (64,), "gemm_kc": (0,),
            "gemm_pf": (0,), "gemm_unpack": (1,), "threads": (0, 1),
            "pool": ("openmp", "pthread")}
    return {k: v for k, v in only.items() if k in names}


@pytest.mark.parametrize("isa", isa_mod.supported_isas())
@pytest.mark.parametrize("kernel", ["cpu.linear", "cpu.linear_f32"])
@pytest.mark.parametrize("m", [1, 2, 5, 8, 16, 64, 100])
def test_canonical_space_has_one_config_per_distinct_code_path(isa, kernel, m):
    full = cpu.linear_space(kernel, m, isa)
    only = {k: v for k, v in _small(isa).items() if k in full.names}
    space = cpu.linear_space(kernel, m, isa, only=only)
    defaults = {p.name: p.default for p in KernelConfig.search_params(isa)}
    names = set(defaults)
    int8 = kernel == "cpu.linear"
    seen = {}
    for config in space.grid():
        KernelConfig.from_params(isa, config)  # every config is buildable as it is
        full_cfg = {**defaults, **config}
        path = _path(m, full_cfg, names, int8)
        effective = (path, full_cfg["threads"], full_cfg["pool"],
                     tuple(sorted((n, full_cfg[n]) for n in _relevant(path, names))))
        assert effective not in seen, (config, seen.get(effective))
        seen[effective] = config
    assert space.default() == {n: defaults[n] for n in space.names}
    if not int8:
        assert not {"gemv_max_m", "gemm_min_m"} & set(space.names)


def test_a_batch_of_one_on_a_path_without_g2_only_tunes_threads_and_pool():
    space = cpu.linear_space("cpu.linear", 1, "avx2")
    assert space.names == ("threads", "pool")
