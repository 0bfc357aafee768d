"""What the end-to-end tests of language forms share: run a statement program's `main()`,
and compare a model's PyTorch forward with the IR interpreter on the same weights."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

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


def checked(src: str, path: Path):
    """The checker's result for ``src`` written at ``path`` (its siblings resolve there);
    fails the test with the messages when it has errors."""
    path.write_text(src, encoding="utf-8")
    result = check_source(src, str(path), path)
    assert result.ok, [d.message for d in result.errors]
    return result


def ir_output(result, model: torch.nn.Module, inputs: list[torch.Tensor],
              entry: str | None = None) -> np.ndarray:
    """The IR interpreter's output for the checked program ``result`` (its ``entry``) on
    ``inputs``, with the model's own parameters and buffers as the weights."""
    lowered = lower(result, entry, None)
    state = {**dict(model.named_buffers()), **model.state_dict()}
    params = {n: state[n].detach().numpy() for n in lowered.params}
    got = interpret(lowered.module, lowered.entry, [x.numpy() for x in inputs], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    return np.asarray(got)


def agree_with_ir(tmp_path, src: str, shape, *, entry: str | None = None,
                  randomize: float | None = None,
                  name: str = "m.tri") -> tuple[np.ndarray, np.ndarray, object, torch.Tensor]:
    """(the loaded model's output, the IR interpreter's on the model's own weights, the
    model, the seeded input of ``shape``) for ``src`` written as ``tmp_path / name``, which
    must check clean. ``randomize``: first set every parameter to that many standard
    normals (seed 0), so that zero- or one-initialized weights do not hide a mistake."""
    path = tmp_path / name
    result = checked(src, path)
    model = (tritium.load(path, entry) if entry else tritium.load(path)).eval()
    if randomize is not None:
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * randomize)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    return ref.numpy(), ir_output(result, model, [x], entry), model, x
