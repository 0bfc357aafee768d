"""The PyTorch backend: generated modules build, run, train with STE, freeze, and match a
hand-written PyTorch ResNet-18; nothing in a .tri file can inject code."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import tritium
from tritium import runtime as trt
from tritium.driver import CompileError

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name,shape,out", [
    ("mlp", (3, 64), (3, 10)),
    ("lenet5", (2, 1, 32, 32), (2, 10)),
    ("resnet18", (2, 3, 32, 32), (2, 10)),
    ("mobilenetv2", (2, 3, 32, 32), (2, 10)),
])
def test_examples_build_and_run(name, shape, out):
    model = tritium.load(EX / f"{name}.tri")
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(*shape))
    assert tuple(y.shape) == out and torch.isfinite(y).all()


def test_transformer_example_runs():
    model = tritium.load(EX / "bitnet_block.tri").eval()
    with torch.no_grad():
        y = model(torch.randint(0, 256, (2, 5)))
    assert tuple(y.shape) == (2, 5, 256)
    block = tritium.load(EX / "bitnet_block.tri", "BitNetBlock", dim=32, heads=4, ffn=64)
    assert tuple(block(torch.randn(1, 3, 32)).shape) == (1, 3, 32)


@pytest.mark.parametrize("name,shape", [("mlp", (8, 64)), ("lenet5", (4, 1, 32, 32))])
def test_every_ternary_weight_gets_gradient(name, shape):
    model = tritium.load(EX / f"{name}.tri")
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(*shape)), torch.randint(0, 10, (shape[0],)))
    loss.backward()
    ternary = [m for m in model.modules() if isinstance(m, trt.TernaryLayer)]
    assert ternary
    for m in ternary:
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


def test_freeze_gives_packed_inference_with_same_outputs():
    torch.manual_seed(0)
    model = tritium.load(EX / "mlp.tri").eval()
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = model(x)
        trt.freeze_model(model)
        got = model(x)
    assert not any("weight" == n.split(".")[-1] and p.dtype == torch.float32 and p.dim() == 2
                   for n, p in model.named_parameters())
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


class _HandBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        aq = "int8_image"   # as examples/resnet18.tri
        self.conv1 = trt.TernaryConv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False,
                                       act_quant=aq)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = trt.TernaryConv2d(c_out, c_out, 3, padding=1, bias=False, act_quant=aq)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(trt.TernaryConv2d(c_in, c_out, 1, stride=stride, bias=False,
                                                            act_quant=aq),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class _HandResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(64)
        chans = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (a, b, s) in enumerate(chans, 1):
            setattr(self, f"layer{i}", nn.Sequential(_HandBlock(a, b, s), _HandBlock(b, b, 1)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_resnet18_matches_hand_written_pytorch():
    torch.manual_seed(0)
    gen = tritium.load(EX / "resnet18.tri")
    hand = _HandResNet18()
    assert set(gen.state_dict()) == set(hand.state_dict())
    # give the batch norms non-trivial statistics, then copy every weight across
    gen.train()
    with torch.no_grad():
        gen(torch.randn(8, 3, 32, 32))
    hand.load_state_dict(gen.state_dict())
    gen.eval()
    hand.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gen(x), hand(x), rtol=1e-5, atol=1e-5)


HOSTILE = '''
block Evil {
    params { lambda_: int }
    layer training: Linear { in_features: 4, out_features: 4 }
    layer forward: ReLU
    layer self: Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[n, 4]) -> Tensor[n, 4] {
        let print = x
        let torch = self(print)
        let _import = forward(training(torch))
        return _import
    }
}
model M {
    layer class: Evil { lambda_: 1 }
    forward(x: Tensor[n, 4]) -> Tensor[n, 4] {
        let str = class(x)
        return str
    }
    training { optimizer: "adam\\"); import os; os.system(\\"touch PWNED", loss: "x\\n'''
HOSTILE += '''import os" }
}
'''


def test_hostile_names_and_strings_cannot_inject(tmp_path):
    f = tmp_path / "evil.tri"
    f.write_text(HOSTILE)
    result = tritium.compile(f)
    src = result.python
    assert "import os" not in src.replace("'adam\"); import os; os.system(\"touch PWNED'", "") \
        .replace("'x\\nimport os'", "")
    compile(src, "evil.py", "exec")   # valid Python
    model = tritium.load(f)
    assert isinstance(model.training, bool)      # nn.Module.training is not shadowed
    assert hasattr(model, "class_") and hasattr(model.class_, "training_")
    y = model(torch.randn(2, 4))
    assert y.shape == (2, 4)
    assert model.tritium_training["optimizer"] == 'adam"); import os; os.system("touch PWNED'
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CompileError, match="no model, block or layer named `Nope`"):
        tritium.load(EX / "mlp.tri", "Nope")
    with pytest.raises(CompileError, match="cannot build `BasicBlock`"):
        tritium.load(EX / "resnet18.tri", "BasicBlock")
    bad = tmp_path / "bad.tri"
    bad.write_text("model M { forward(x: Tensor) -> Tensor { return relux(x) } }")
    with pytest.raises(CompileError) as err:
        tritium.load(bad)
    assert err.value.diagnostics[0].code == "E0305"


def test_explicit_layer_forms_and_design_dialects(tmp_path):
    f = tmp_path / "layers.tri"
    f.write_text('''
layer Scaled(in_features: int, out_features: int) {
    let W: TernaryTensor<trit, [out_features, in_features]> = random_ternary([out_features, in_features])
    param alpha: Tensor[1] = ones([1])
    fn forward(x: Tensor<float32, [?, in_features]>) -> Tensor<float32, [?, out_features]> {
        return alpha * ternary_matmul(x, W)
    }
}
layer Affine(w: TernaryTensor<trit, [n_in, n_out]>, b: Tensor<float32, [n_out]>,
             x: Tensor<float32, [?, n_in]>) -> Tensor<float32, [?, n_out]> {
    return x @ w + b
}
layer Head {
    param w: TernaryTensor[16, 4]
    param b: Tensor[4]
    fn forward(x: Tensor[N, 16]) -> Tensor[N, 4] { return x @ w + b }
}
''')
    s = tritium.load(f, "Scaled", in_features=8, out_features=3)
    x = torch.randn(2, 8)
    y = s(x)
    assert y.shape == (2, 3)
    w = s.W.detach()
    # W holds random trits, so its TWN view is a scaled copy of them; the output uses it
    assert set(w.unique().tolist()) <= {-1.0, 0.0, 1.0}
    a = tritium.load(f, "Affine", n_in=8, n_out=3)
    assert a(torch.zeros(3), torch.randn(2, 8)).shape == (2, 3)   # inputs in declared order
    h = tritium.load(f, "Head")
    out = h(torch.randn(5, 16))
    out.sum().backward()
    assert h.w.grad is not None and h.w.grad.abs().sum() > 0


def test_format_key_chooses_the_packed_format_and_import_names_are_mangled(tmp_path):
    f = tmp_path / "fmt.tri"
    f.write_text('''
model F {
    layer a: TernaryLinear { in_features: 300, out_features: 7, format: "t1.6" }
    layer b: TernaryLinear { in_features: 7, out_features: 2 }
    forward(x: Tensor[n, 300]) -> Tensor[n, 2] { return b(a(x)) }
}
''')
    model = tritium.load(f).eval()          # the class is emitted as `F_` (F is torch's)
    assert type(model).__name__ == "F_"
    x = torch.randn(3, 300)
    with torch.no_grad():
        ref = model(x)
        trt.freeze_model(model)
        got = model(x)
    assert (model.a.format, model.b.format) == ("t1.6", "t2")
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet18", "mobilenetv2", "bitnet_block"])
def test_generated_source_is_formatted(name):
    src = tritium.compile(EX / f"{name}.tri", with_ir=False).python
    long = [ln for ln in src.splitlines() if len(ln) > 99 and not ln.lstrip().startswith("#")]
    assert long == []
    assert src == tritium.compile(EX / f"{name}.tri", with_ir=False, use_cache=False).python


def _ruff() -> str | None:
    local = Path(sys.executable).parent / "ruff"
    return str(local) if local.exists() else shutil.which("ruff")


GENERATED = sorted(EX.glob("*.tri")) + sorted((ROOT / "tests/golden/codegen").glob("*.tri"))


@pytest.mark.parametrize("path", GENERATED, ids=[p.name for p in GENERATED])
@pytest.mark.parametrize("annotate", [False, True])
def test_generated_source_passes_ruff(path, annotate, monkeypatch):
    """The generated module reads like the project's own code: `ruff check` with the
    project's config (imports used and sorted, ...) and lines within 100 characters."""
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff)")
    from tritium.backends.pytorch.codegen import generate
    from tritium.check import check_file
    monkeypatch.chdir(ROOT)      # file names as `tritium compile examples/mlp.tri` has them
    src = generate(check_file(path.relative_to(ROOT)), annotate=annotate)
    echoes = [ln for ln in src.splitlines() if ln.lstrip().startswith("# line ")]
    assert bool(echoes) == annotate
    res = subprocess.run([ruff, "check", "--config", str(ROOT / "pyproject.toml"),
                          "--extend-select", "E501", "--no-cache", "--output-format", "concise",
                          "--stdin-filename", str(ROOT / "generated.py"), "-"],
                         input=src, text=True, capture_output=True, cwd=ROOT)
    assert res.returncode == 0, f"{res.stdout}{res.stderr}\n{src}"


def test_static_repetition_is_written_out_and_folded_norms_become_identity():
    src = tritium.compile(EX / "resnet18.tri", with_ir=False).python
    assert "lambda" not in src and "repeat_configs" not in src and "trt.norm" not in src
    assert "BasicBlock(c_in=64, c_out=128, stride=2),\n" \
           "            BasicBlock(c_in=128, c_out=128, stride=1)," in src
    torch.manual_seed(0)
    model = tritium.load(EX / "resnet18.tri")
    assert [(b.c_in, b.c_out, b.stride) for b in model.layer2] == [(64, 128, 2), (128, 128, 1)]
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = trt.freeze_model(copy.deepcopy(model), fold_bn=False)(x)
        trt.freeze_model(model)
        got = model(x)
    assert type(model.layer1[0].bn1) is nn.Identity and type(model.layer4[1].bn2) is nn.Identity
    assert isinstance(model.bn, nn.BatchNorm2d)      # after a float conv: kept
    # the convs quantize their input to int8 (int8_image): folding moves a conv's float
    # epilogue by ulps, which can flip one rounding step of the next conv's input bytes; such
    # a flip moved the logits by up to 0.2% of their range over 12 seeds (else 2e-7)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-2 * float(ref.abs().max()))


REPEAT = '''
block Unit {
    params { c_in: int, c_out: int, stride: int = 1 }
    layer conv: TernaryConv2d { in_channels: c_in, out_channels: c_out, kernel_size: 3, stride: stride, padding: 1 }
    forward(x: Tensor) -> Tensor { return conv(x) }
}
block Grow {
    params { c_in: int, c_out: int }
    repeat { c_in: c_out, c_out: c_out * 2 }
    layer conv: TernaryConv2d { in_channels: c_in, out_channels: c_out, kernel_size: 1 }
    forward(x: Tensor) -> Tensor { return conv(x) }
}
block Swap {
    params { a: int, b: int }
    repeat { a: b, b: a }
    layer lin: Linear { in_features: a, out_features: b }
    forward(x: Tensor) -> Tensor { return lin(x) }
}
block Stage {
    params { n: int, c: int }
    layer units: Unit[n] { c_in: c, c_out: c + 1, stride: 2 }
    layer grow: Grow[n] { c_in: c + 1, c_out: c + 2 }
    layer lin: Linear[n] { in_features: 2, out_features: 2 }
    layer two: Linear[2] { in_features: 2, out_features: 2 }
    forward(x: Tensor) -> Tensor { return grow(units(x)) }
}
model M {
    depth: 3
    layer s: Stage { n: 3, c: 4 }
    layer g: Grow[depth] { c_in: 24, c_out: 8 }
    layer many: Unit[20] { c_in: 32, c_out: 32, stride: 2 }
    layer swaps: Swap[17] { a: 2, b: 3 }
    forward(x: Tensor[b, 4, 8, 8]) -> Tensor { return many(g(s(x))) }
}
'''


def test_repetitions_known_only_at_run_time(tmp_path):
    f = tmp_path / "rep.tri"
    f.write_text(REPEAT)
    src = tritium.compile(f, with_ir=False).python
    assert "lambda" not in src
    assert "Grow(c_in=24, c_out=8),\n            Grow(c_in=8, c_out=16)," in src
    model = tritium.load(f)
    assert [(u.c_in, u.c_out, u.stride) for u in model.s.units] == [(4, 5, 2), (5, 5, 1),
                                                                    (5, 5, 1)]
    assert [(u.c_in, u.c_out) for u in model.s.grow] == [(5, 6), (6, 12), (12, 24)]
    assert [(u.c_in, u.c_out) for u in model.g] == [(24, 8), (8, 16), (16, 32)]
    assert len(model.s.lin) == 3 and len(model.s.two) == 2
    # a large known count: the first instance and the others alike, or a loop
    assert "*[Unit(c_in=32, c_out=32, stride=1) for _i in range(19)]" in src
    assert [(u.c_in, u.stride) for u in model.many] == [(32, 2)] + [(32, 1)] * 19
    assert [(u.a, u.b) for u in model.swaps] == [(2, 3), (3, 2)] * 8 + [(2, 3)]
    assert "for _i in range(16):" in src
    assert model(torch.randn(2, 4, 8, 8)).shape == (2, 32, 2, 2)


def test_annotated_source_lines_are_inert(tmp_path):
    """With annotate=True every statement follows an echo of its .tri line: program text in
    comments is escaped (no line break of any kind can end the comment)."""
    from tritium.backends.pytorch.codegen import generate
    from tritium.backends.pytorch.validate import validate
    from tritium.check import check_source
    text = HOSTILE.replace("let print = x", "let print = x  // \u2028import os\u0085\\\\", 1)
    result = check_source(text, "evil\u2029\nimport os.tri")
    assert result.ok, [(d.code, d.message) for d in result.errors]
    src = generate(result, annotate=True)
    validate(src)
    for c in "\r\u2028\u2029\x85\x0b\x0c\x00":
        assert c not in src
    assert not [ln for ln in src.splitlines() if ln.strip().startswith("import os")]
    assert "# line 8: let print = x  // \\u2028import os\\x85\\\\" in src
