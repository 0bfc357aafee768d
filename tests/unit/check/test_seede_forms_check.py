"""The checker's meaning of forms of the seed's example programs (issue 13, seede):
`masked_fill` (function and method), Python's `sum` of a list, `unbind`, dict items, a layer
name reassigned in `forward` (`qkv = qkv(x)`), `state x: Tensor { shape: [..] }` specs,
`pass`-only bodies, and what the messages say for a per-channel bias and for a name that is
another body's constant."""

from __future__ import annotations

import pytest

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source


def diags(src: str):
    return check_source(src, "t.tri").diagnostics


def errors(src: str):
    return [d for d in diags(src) if d.is_error]


def clean(src: str) -> None:
    """No errors, and it compiles: the generated module passes the validator."""
    result = check_source(src, "t.tri")
    errs = [d for d in result.diagnostics if d.is_error]
    assert not errs, [(d.code, d.message) for d in errs]
    validate(generate(result))


def one(src: str, code: str, *words: str):
    errs = errors(src)
    assert len(errs) == 1, [(d.code, d.message) for d in errs]
    d = errs[0]
    assert d.code == code and all(w in d.message + (d.help or "") for w in words), (
        d.code, d.message, d.help)
    return d


def typed(src: str, name: str) -> str:
    """The declared-type check of `name` against a wrong type names its actual type."""
    errs = errors(src + f"let _probe: str = {name}\n")
    assert errs and errs[-1].code in ("E0401", "E0402"), [(d.code, d.message) for d in errs]
    return errs[-1].message


# ----------------------------------------------------------------------------- masked_fill

def test_masked_fill_keeps_x_and_broadcasts_the_mask():
    src = ("let s = ones([2, 3])\nlet m = tensor([true, false, true])\n"
           "let a = masked_fill(s, m, float(\"-inf\"))\nlet b = s.masked_fill(m > 0, 0.0)\n"
           "let c: Tensor<float32, [2, 3]> = a + b\nprint(c)\n")
    clean(src)
    assert "[2, 3]" in typed(src, "a")


@pytest.mark.parametrize("call, code", [
    ("masked_fill(ones([2, 3]), ones([4]) > 0, 0.0)", "E0505"),      # mask does not broadcast
    ("masked_fill(ones([3]), ones([2, 3]) > 0, 0.0)", "E0505"),      # mask has more dims
    ("masked_fill(ones([3]), ones([3]) > 0, ones([3]))", "E0404"),   # value not a number
    ("masked_fill(ones([3]), ones([3]) > 0)", "E0306"),              # value missing
])
def test_masked_fill_errors(call, code):
    one(f"let a = {call}\nprint(a)\n", code)


# ----------------------------------------------------------------------------- sum

def test_sum_of_a_list_adds_its_elements_and_sum_of_a_tensor_reduces():
    src = ("let parts = [ones([2, 2]), zeros([2, 2]), ones([2])]\nlet t = sum(parts)\n"
           "let c = sum([p * 2.0 for p in parts])\nlet n = sum([1, 2, 3])\n"
           "let r = sum(ones([2, 2]))\nlet d = sum(ones([2, 3]), dim: 1)\nprint(t, c, n, r, d)\n")
    clean(src)
    assert "[2, 2]" in typed(src, "t")       # elementwise, broadcast: [2, 2]
    assert "int" in typed(src, "n")
    assert "[]" in typed(src, "r")           # the reduction: a 0-d tensor
    assert "[2]" in typed(src, "d")


def test_sum_of_a_list_errors():
    one("let t = sum([ones([2]), ones([3])])\nprint(t)\n", "E0505")
    one("let t = sum([ones([2])], dim: 0)\nprint(t)\n", "E0307", "stack")
    one('let t = sum("ab")\nprint(t)\n', "E0404")
    one("let t = sum([[1], [2]])\nprint(t)\n", "E0404", "a + b")   # Python's sum: 0 + [1]
    one('let t = sum(["a", "b"])\nprint(t)\n', "E0404", "str")


# ----------------------------------------------------------------------------- unbind

def test_unbind_gives_one_tensor_per_slice():
    src = ("let qkv = ones([3, 2, 4])\nlet parts = unbind(qkv, dim: 0)\n"
           "let (q, k, v) = unbind(qkv)\nlet y: Tensor<float32, [2, 4]> = q + k + v\n"
           "print(parts, y)\n")
    clean(src)
    one("let (q, k) = unbind(ones([3, 2]))\nprint(q, k)\n", "E0864")
    one("let p = unbind(ones([3, 2]), dim: 2)\nprint(p)\n", "E0508")


# ----------------------------------------------------------------------------- dicts

def test_dict_items_are_read_and_set():
    src = ('let d = {"a": 1}\nd["b"] = 2.5\nlet k = "c"\nd[k] = 3\nd[f"{k}-x"] = ones([2])\n'
           'd["a"] += 1\nlet a = d["a"]\nlet b: float = d["b"]\nprint(a, b, d)\n'
           'fn stats(x: Tensor) -> dict {\n    let out = {}\n'
           '    for i in 0..2 {\n        out[f"m{i}"] = mean(x)\n    }\n    return out\n}\n'
           'print(stats(ones([3])))\n')
    clean(src)
    known = 'let d = {"a": 1}\nd["b"] = 2.5\nd["a"] += 1\nlet a = d["a"]\nlet b = d["b"]\n'
    assert "int" in typed(known, "a") and "float" in typed(known, "b")


def test_dict_item_errors():
    one('let d = {"a": 1}\nlet x = d["b"]\nprint(x)\n', "E1042", "`b`")
    one('let d = {"a": 1}\nd[ones([2])] = 1\nprint(d)\n', "E1041")
    one('let d = {"a": 1}\nlet x = d["a", "b"]\nprint(x)\n', "E0508")
    # an unknown key makes the dict's keys unknown: no false E1042 after it
    clean('fn f(k: str) -> dict {\n    let d = {"a": 1}\n    d[k] = 2\n    let v = d["z"]\n'
          '    print(v)\n    return d\n}\nprint(f("z"))\n')


# ----------------------------------------------------------------------------- shadowing

SHADOW = """model Shadow {
    layer qkv: Linear { in_features: 4, out_features: 12 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        qkv = qkv(x)
        qkv = reshape(qkv, [-1, 3, 4])
        q, k, v = unbind(qkv, dim: 1)
        return q * k + v
    }
}
"""


def test_a_layer_name_assigned_in_forward_names_the_value_from_there_on():
    clean(SHADOW)
    errs = errors(SHADOW.replace("qkv = qkv(x)", "qkv += x"))
    assert any(d.code == "E0205" and "`qkv`" in d.message for d in errs)


# ----------------------------------------------------------------------------- stubs

def test_a_pass_only_body_warns_and_calling_it_is_an_error():
    src = ('fn todo(x: Tensor) -> Tensor {\n    """later"""\n    pass\n}\n'
           "fn noop() {\n    pass\n}\nnoop()\n")
    ds = diags(src)
    assert [d.code for d in ds if d.is_error] == []
    assert any(d.code == "W1040" and "`todo`" in d.message for d in ds)
    one(src + "let y = todo(ones([2]))\nprint(y)\n", "E1040", "`todo`")
    # a body that is not only `pass` still must return
    one("fn f(x: Tensor) -> Tensor {\n    print(x)\n    pass\n}\n", "E0407")


# ----------------------------------------------------------------------------- state specs

def test_state_with_a_spec_is_a_buffer_of_that_shape():
    src = """layer Norm {
    params { channels: int }
    state running_mean: Tensor {
        shape: [channels]
        init: "zeros"
        requires_grad: false
    }
    state running_var: Tensor { shape: [channels], init: "constant", value: 0.5 }
    state steps: int = 0
    forward(x: Tensor[b, channels]) -> Tensor[b, channels] {
        if self.training {
            running_mean = 0.9 * running_mean + 0.1 * mean(x, dim: 0)
            steps += 1
        }
        return (x - running_mean) / sqrt(running_var + 0.00001)
    }
}
model M {
    layer n: Norm { channels: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        return n(x)
    }
}
"""
    clean(src)
    one(src.replace("[channels], init", "[3], init"), "E0505")   # [b, 4] - [4] ok, / [3] not


@pytest.mark.parametrize("spec, words", [
    ('shape: [4], init: "normal"', ("init",)),
    ('shape: [4], requires_grad: true', ("param",)),
    ('shape: [4], init: "constant"', ("value",)),
    ('shape: [4], mean: 0.0', ("mean",)),
])
def test_state_spec_errors(spec, words):
    src = ("layer L {\n    state s: Tensor { " + spec + " }\n"
           "    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {\n        return x + s\n    }\n}\n")
    one(src, "E1043", *words)


# ----------------------------------------------------------------------------- messages

def test_a_channel_bias_on_a_conv_output_says_what_to_write():
    d = one("layer C(w: TernaryTensor<trit, [32, 3, 3, 3]>, b: TernaryTensor<trit, [32]>,\n"
            "        x: Tensor<float32, [?, 3, 32, 32]>) -> Tensor<float32, [?, 32, 30, 30]> {\n"
            "    return conv2d(x, w) + b\n}\n", "E0505")
    assert "reshape(bias, [1, 32, 1, 1])" in d.help and "bias=bias" in d.help


def test_a_channel_bias_of_symbolic_size_warns():
    src = ("fn f(x: Tensor<float32, [n, c, h, w]>, b: Tensor<float32, [c]>) -> Tensor {\n"
           "    return x + b\n}\n")
    ds = diags(src)
    assert [d.code for d in ds if d.is_error] == []
    assert any(d.code == "W1041" for d in ds)
    assert not any(d.code == "W1041" for d in diags(src.replace("[c]>", "[w]>")))


def test_another_bodys_constant_is_named_in_the_help():
    d = one("block P {\n    params { n: int }\n    patches: int = n * n\n"
            "    forward(x: Tensor) -> Tensor {\n        return x\n    }\n}\n"
            "model M {\n    layer p: P { n: 4 }\n"
            "    forward(x: Tensor[b, 16]) -> Tensor[b, 16] {\n        return p(x) * patches\n"
            "    }\n}\n", "E0304", "`patches`", "constant of `P`")
    assert d.help


# ----------------------------------------------------------------------------- sub-layer methods

SUBLAYERS = """block Q {
    params { n: int }
    layer fc: Linear { in_features: n, out_features: n }
    forward(x: Tensor) -> Tensor {
        return fc(x)
    }
    method density(scale: float = 1.0) -> float {
        return 0.5 * scale
    }
}
model M {
    layer one: Q { n: 4 }
    layer stage: Sequential {
        Q { n: 4 }
        ReLU {}
    }
    layer rep: Q[3] { n: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        return rep(stage(one(x)))
    }
    method report() -> dict {
        return {"a": one.density(), "b": stage[0].density(2.0), "c": rep[-1].density(scale: 3.0)}
    }
}
"""


def test_a_sub_layers_method_is_called_through_it():
    clean(SUBLAYERS)
    res = check_source(SUBLAYERS, "t.tri")
    assert "sublayer_method" in res.call_forms.values()
    python = generate(res)   # what checks compiles: the validator accepts the calls
    validate(python)
    assert "self.rep[-1].density(scale=3.0)" in python.replace("(-1)", "-1")


@pytest.mark.parametrize("old, new, code", [
    ("stage[0].density(2.0)", "stage[2].density()", "E0508"),          # out of range
    ("stage[0].density(2.0)", "stage[0].density(1.0, 2.0)", "E0306"),  # too many
    ("rep[-1].density(scale: 3.0)", "rep[-1].density(size: 3.0)", "E0306"),
    ("one.density()", "one.nothing()", "E0305"),
    ("stage[0].density(2.0)", "one[0].density()", "E0405"),            # not a stack
])
def test_sub_layer_method_errors(old, new, code):
    errs = errors(SUBLAYERS.replace(old, new))
    assert code in [d.code for d in errs], [(d.code, d.message) for d in errs]


# ----------------------------------------------------------------------------- named arguments

NAMED = ('fn f(a: int, b: str, c: float = 0.5) -> str {\n    return f"{a}{b}{c}"\n}\n')


def test_named_arguments_of_user_functions_bind_by_name():
    clean(NAMED + 'let r = f(b: "x", a: 2)\nlet s = f(1, c: 2.0, b: "y")\nprint(r, s)\n')
    one(NAMED + 'let r = f(b: 2, a: 2)\nprint(r)\n', "E0401", "`b`")


@pytest.mark.parametrize("call, code", [
    ('f(1, "x", z: 1.0)', "E0307"),     # no such parameter
    ('f(1, "x", a: 2)', "E0306"),       # given twice
    ('f(b: "x")', "E0306"),             # `a` missing
])
def test_named_argument_errors(call, code):
    one(NAMED + f"let r = {call}\nprint(r)\n", code)
