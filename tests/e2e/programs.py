"""What the end-to-end tests of language forms share: run a statement program's `main()`
and compare a model's PyTorch forward with the IR interpreter on the same weights."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

import tritium
from tritium.check import check_source
from tritium.driver import compile_program
from tritium.ir import interpret
from tritium.ir.lowering import lower


def run_main(tmp_path, src: str) -> tuple[str, object]:
    """(what `main()` of the compiled ``src`` prints, the generated module)."""
    f = tmp_path / "prog.tri"
    f.write_text(src)
    module = compile_program(str(f)).module
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        module.main()
    return buf.getvalue(), module


def agree_with_ir(tmp_path, src: str, shape) -> tuple[np.ndarray, np.ndarray, object, torch.Tensor]:
    """(the loaded model's output, the IR interpreter's on the model's own weights, the
    model, the seeded input of ``shape``); ``src`` must check clean."""
    f = tmp_path / "m.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.errors]
    model = tritium.load(f)
    model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    lowered = lower(result, None, None)
    state = model.state_dict()
    params = {n: state[n].detach().numpy() for n in lowered.params}
    got = interpret(lowered.module, lowered.entry, [x.numpy()], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    return ref.numpy(), np.asarray(got), model, x
