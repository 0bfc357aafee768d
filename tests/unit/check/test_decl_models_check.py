"""The model forms of the seed's example models handled with the `decl` forms (issue 13):
a `params { }` hyperparameter and a layer sharing one name (ex_attention_mechanism's
`dropout`), and the initializer key `fan_mode` (ex_custom_conv's `kaiming_normal`)."""

from __future__ import annotations

from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source

SHARED = """
block Att {
    params {
        dim: int
        dropout: float = 0.1
    }
    layer fc: TernaryLinear { in_features: dim, out_features: dim }
    layer dropout: Dropout { p: dropout }
    forward(x: Tensor) -> Tensor {
        return dropout(fc(x))
    }
}
model M {
    layer a: Att { dim: 8, dropout: 0.2 }
    forward(x: Tensor[b, 8]) -> Tensor[b, 8] { return a(x) }
}
"""


def test_a_hyperparameter_and_a_layer_may_share_a_name() -> None:
    r = check_source(SHARED)
    assert r.ok, [d.message for d in r.errors]
    py = generate(r)
    assert "self.dropout = nn.Dropout(p=dropout)" in py and "self.dropout(self.fc(x))" in py
    # two layers of one name stay an error
    twice = SHARED.replace("    layer dropout: Dropout { p: dropout }\n",
                           "    layer dropout: Dropout { p: dropout }\n"
                           "    layer dropout: Dropout { p: 0.5 }\n")
    assert "E0206" in [d.code for d in check_source(twice).errors]


def test_fan_mode_is_the_kaiming_mode() -> None:
    src = ("layer C {\n"
           "    param w: Tensor[4, 3] { init: \"kaiming_normal\", fan_mode: \"fan_out\" }\n"
           "    fn forward(x: Tensor[N, 3]) -> Tensor[N, 4] { return x @ transpose(w) }\n"
           "}\n")
    r = check_source(src)
    assert r.ok, [d.message for d in r.errors]
    assert generate(r) == generate(check_source(src.replace("fan_mode", "mode")))
    assert generate(r) != generate(check_source(src.replace('"fan_out"', '"fan_in"')))
    bad = check_source(src.replace('"fan_out"', '"fan_sideways"'))
    assert bad.errors
