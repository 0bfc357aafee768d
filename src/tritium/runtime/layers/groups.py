"""Frozen BitLinear layers of one input served by one native call: :class:`SharedInputGroup`
(installed by :func:`tritium.runtime.layers.freeze.group_shared_inputs`); see
:mod:`tritium.runtime.layers`."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import torch

from tritium.runtime import plan as _plan_mod

if TYPE_CHECKING:
    from tritium.runtime.layers.ternary import BitLinear


class SharedInputGroup:
    """Frozen :class:`BitLinear` siblings (one module's children with the same input width,
    norm eps and packed format) of which the model calls some on one tensor -- q/k/v, or
    gate/up -- served by one native call (``tri_rms_multi_planned``: the RMSNorm and int8
    quantization once, then each layer's product; exactly what separate calls give).

    Installed by :func:`tritium.runtime.layers.freeze.group_shared_inputs`. The first forward
    only observes which members the model calls one after another on the same tensor (same
    object, same version); from then on, the first call of such a cluster computes all of its
    members' outputs and keeps the others' for their calls on that same tensor. Outputs made
    for a tensor that their layers were then not called on count as misses; after a few the
    group turns itself off (each layer runs alone again). Calls with an activation, a residual,
    autograd, several tokens from the int8 GEMM's batch size on, or a tuned config for a member
    at that batch size run each layer alone."""

    MAX_MISSES = 4

    def __init__(self, members: list[BitLinear]) -> None:
        self.members = list(members)
        self._reset()

    def _reset(self) -> None:
        self.index = {id(m): i for i, m in enumerate(self.members)}
        self.state = "observe"
        self.clusters: dict[int, tuple[int, ...]] = {}
        self.misses = 0
        self._obs: list[list[int]] = []
        self._obs_x: tuple[torch.Tensor, int] | None = None
        # (the input, its version, the outputs made for it that no member took yet): one
        # attribute, read once per call, so that a thread never takes an output from the
        # outputs another thread made for another input
        self._memo: tuple[torch.Tensor, int, dict[int, torch.Tensor]] | None = None
        self._arrays: dict[tuple[int, ...], tuple] = {}

    def __getstate__(self) -> dict[str, Any]:
        # copies and pickles start over (no ctypes arrays, no kept tensors)
        return {"members": self.members}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.members = state["members"]
        self._reset()

    def _observe(self, i: int, x: torch.Tensor) -> None:
        if any(i in c for c in self._obs):      # the second forward: decide
            self.clusters = {j: tuple(c) for c in self._obs if len(c) > 1 for j in c}
            self.state = "fused" if self.clusters else "off"
            self._obs, self._obs_x = [], None
            return
        last = self._obs_x
        if last is not None and last[0] is x and last[1] == x._version:
            self._obs[-1].append(i)
        else:
            self._obs.append([i])
            self._obs_x = (x, x._version)

    def serve(self, layer: BitLinear, x: torch.Tensor) -> torch.Tensor | None:
        """``layer``'s output for ``x`` from (or made with) its cluster, or None: run alone."""
        i = self.index.get(id(layer))
        if i is None or self.state == "off":
            return None
        if self.state == "observe":
            self._observe(i, x)
            if self.state != "fused":
                return None
        memo = self._memo
        if memo is not None and memo[0] is x and memo[1] == x._version:
            y = memo[2].pop(i, None)
            if y is not None:
                if not memo[2] and self._memo is memo:
                    self._memo = None
                return y
        if memo is not None and memo[2]:      # outputs made for a tensor nobody asked about
            self._memo = None
            self.misses += 1
            if self.misses >= self.MAX_MISSES:
                self.state = "off"
                return None
        cluster = self.clusters.get(i)
        if cluster is None:
            return None
        outs = self._run(cluster, x)
        if outs is None:
            return None
        y = outs.pop(i)
        self._memo = (x, x._version, outs)
        return y

    def _run(self, cluster: tuple[int, ...], x: torch.Tensor) -> dict[int, torch.Tensor] | None:
        plans = []
        eps = self.members[cluster[0]].eps
        for j in cluster:
            if self.members[j].eps != eps:   # changed since grouping: one norm no longer fits
                return None
            plan = self.members[j]._frozen_plan(x, None)
            if plan is None:
                return None
            plans.append(plan)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        m = x2.shape[0]
        p0 = plans[0]
        # a tuned config for a member runs in the member's own call
        if m >= p0.g2_min or any(p.lib is not p0.lib or p.fmt != p0.fmt for p in plans) \
                or _plan_mod._RESOLVER is not None and not all(p.runs_default(m) for p in plans):
            return None
        key = tuple(id(p) for p in plans)
        hit = self._arrays.get(cluster)
        if hit is None or hit[0] != key:
            ptrs = (ctypes.c_void_p * len(plans))(*[p.args_ptr for p in plans])
            hit = self._arrays[cluster] = (key, ptrs, plans)
        ys = [x2.new(m, p.n) for p in plans]
        out_ptrs = (ctypes.c_void_p * len(ys))(*[y.data_ptr() for y in ys])
        rc = p0.lib.call.tri_rms_multi_planned(
            ctypes.addressof(hit[1]), len(plans), x2.data_ptr(), m,
            self.members[cluster[0]].eps, ctypes.addressof(out_ptrs),
            p0.env_threads or torch.get_num_threads())
        if rc == 2:
            return None
        if rc:
            raise MemoryError("tritium: the native BitLinear kernel could not allocate its "
                              "buffers")
        lead = shape[:-1]
        return {j: y if len(shape) == 2 else y.view(*lead, y.shape[1])
                for j, y in zip(cluster, ys, strict=True)}
