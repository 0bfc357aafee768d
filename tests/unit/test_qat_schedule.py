"""The QAT schedule of `training { }` (`tritium.qat`): the strength of each epoch for every
spelling, scaling to another run length, and the problems of bad values."""

from __future__ import annotations

import pytest

from tritium import qat

SEED = {"warmup_epochs": 10, "gradual_quantization": True, "quantization_epochs": [10, 30, 50]}


def strengths(spec, epochs: int) -> list[float]:
    s = qat.parse(spec, epochs)
    return [s.strength(e) for e in range(epochs)]


def test_the_seed_schedule_gradual_and_stepwise():
    lam = strengths(SEED, 100)
    assert lam[:10] == [0.0] * 10                       # warm-up: quantizers off
    assert lam[10] == pytest.approx(1 / 3) and lam[30] == pytest.approx(2 / 3)
    assert lam[20] == pytest.approx(0.5) and lam[40] == pytest.approx(5 / 6)
    assert lam[50:] == [1.0] * 50                       # ordinary QAT from the last stage
    assert all(a <= b for a, b in zip(lam, lam[1:], strict=False))
    step = strengths({**SEED, "gradual_quantization": False}, 100)
    assert step[:10] == [0.0] * 10
    assert step[10:30] == pytest.approx([1 / 3] * 20)
    assert step[30:50] == pytest.approx([2 / 3] * 20)
    assert step[50:] == [1.0] * 50


@pytest.mark.parametrize("name,expect", [
    ("none", [1.0] * 20),
    ("immediate", [1.0] * 20),
    ("Immediate", [1.0] * 20),
    ("delayed", [0.0, 0.0] + [1.0] * 18),
    ("progressive", [0.0, 0.0] + [1 / 3] * 4 + [2 / 3] * 4 + [1.0] * 10),
])
def test_names(name: str, expect: list[float]):
    assert strengths(name, 20) == pytest.approx(expect)


def test_gradual_ramps_linearly_after_the_warm_up_to_half_the_epochs():
    lam = strengths("gradual", 20)
    assert lam[:2] == [0.0, 0.0]
    ramp = lam[2:10]
    assert all(0.0 < x < 1.0 for x in ramp)
    diffs = [b - a for a, b in zip(ramp, ramp[1:], strict=False)]
    assert max(diffs) - min(diffs) < 1e-12            # linear
    assert lam[10:] == [1.0] * 10
    assert strengths("linear", 20) == lam            # an alias


def test_dictionary_defaults():
    assert strengths({}, 5) == [1.0] * 5
    assert strengths({"warmup_epochs": 2}, 5) == [0.0, 0.0, 1.0, 1.0, 1.0]
    lam = strengths({"warmup_epochs": 2, "gradual_quantization": True}, 10)
    assert lam[:2] == [0.0, 0.0] and 0 < lam[2] < lam[3] < 1 and lam[6:] == [1.0] * 4
    # stages alone: float until the first
    assert strengths({"quantization_epochs": [1, 3]}, 5) == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert strengths({"quantization_epochs": 2}, 4) == [0.0, 0.0, 1.0, 1.0]
    # `type` names a schedule; the other keys change it
    t = qat.parse({"type": "progressive", "gradual_quantization": True}, 20)
    assert (t.name, t.stages, t.gradual) == ("progressive", (2, 6, 10), True)


def test_strength_is_a_function_of_the_epoch_alone():
    s = qat.parse(SEED, 100)
    assert [s.strength(e) for e in (50, 10, 30)] == [s.strength(50), s.strength(10),
                                                     s.strength(30)]
    assert s.active and not qat.parse("none", 100).active
    assert not qat.parse({"quantization_epochs": [0]}, 3).active


def test_scaled_to_a_shorter_run_keeps_its_shape_and_ends_quantized():
    s = qat.parse(SEED, 100).scaled(100, 10)
    assert (s.warmup_epochs, s.stages) == (1, (1, 3, 5))
    two = qat.parse(SEED, 100).scaled(100, 2)
    assert [two.strength(e) for e in range(2)] == pytest.approx([2 / 3, 1.0])
    assert qat.parse(SEED, 100).scaled(100, 100) == qat.parse(SEED, 100)


def test_describe_names_the_schedule_and_its_stages():
    text = qat.parse(SEED, 100).describe()
    assert text.startswith("custom: float (quantizers off) for epochs 1-10")
    assert "linearly" in text and "epoch 51" in text
    assert "0.33 from epoch 11" in qat.parse("progressive", 100).describe()
    assert qat.parse("none", 4).describe() == "none: fully quantized from the first epoch"


@pytest.mark.parametrize("spec,epochs,path,words", [
    ({"warmup_epochs": -1}, 10, ("warmup_epochs",), "whole number"),
    ({"warmup_epochs": 1.5}, 10, ("warmup_epochs",), "whole number"),
    ({"warmup_epochs": True}, 10, ("warmup_epochs",), "whole number"),
    ({"gradual_quantization": "yes"}, 10, ("gradual_quantization",), "true or false"),
    ({"quantization_epochs": [3, 3]}, 10, ("quantization_epochs", 1), "must increase: 3 after 3"),
    ({"quantization_epochs": [5, 2]}, 10, ("quantization_epochs", 1), "must increase"),
    ({"quantization_epochs": [1, -2]}, 10, ("quantization_epochs", 1), "whole number"),
    ({"quantization_epochs": []}, 10, ("quantization_epochs",), "empty"),
    ({"quantization_epochs": [2, 10]}, 10, ("quantization_epochs", 1), "before the end"),
    ({"quantization_epochs": 12}, 10, ("quantization_epochs",), "before the end"),
    ({"warmup_epochs": 10}, 10, ("warmup_epochs",), "before the end"),
    ({"warmup_epochs": 4, "quantization_epochs": [2]}, 10, ("warmup_epochs",),
     "after the first stage"),
    ("progresive", 10, (), "unknown QAT schedule"),
    ({"type": "sometimes"}, 10, ("type",), "unknown QAT schedule"),
    (3, 10, (), "a schedule name or a dictionary"),
    ([10, 30], 10, (), "a schedule name or a dictionary"),
])
def test_bad_values_are_problems_at_their_part(spec, epochs, path, words):
    sched, probs = qat.check(spec, epochs)
    errors = [p for p in probs if not p.warning]
    assert sched is None and errors
    assert errors[0].path == path and words in errors[0].message
    with pytest.raises(qat.ScheduleError, match="."):
        qat.parse(spec, epochs)


def test_unknown_keys_are_warnings_and_a_misspelt_name_gets_a_suggestion():
    sched, probs = qat.check({**SEED, "ramp": "cosine"}, 100, "quantization_schedule")
    assert sched is not None and [p.path for p in probs] == [("ramp",)]
    assert probs[0].warning and "`ramp` in `quantization_schedule`" in probs[0].message
    _, probs = qat.check("progresive", 10)
    assert "did you mean `progressive`" in (probs[0].help or "")


def test_without_epochs_only_what_does_not_depend_on_them_is_checked():
    assert qat.check({"quantization_epochs": [10, 300]}, None)[0] is not None
    assert qat.check({"quantization_epochs": [10, 5]}, None)[0] is None


def test_describe_does_not_walk_the_epochs():
    huge = qat.QatSchedule("custom", 10**15, (10**15, 10**16), True)
    assert "epochs 1-1000000000000000" in huge.describe()
    for spec in (SEED, "progressive", "gradual", "delayed", {"quantization_epochs": [0, 3]},
                 {"warmup_epochs": 0, "gradual_quantization": True}):
        s = qat.parse(spec, 100)
        first = next(e for e in range(100) if s.strength(e) > 0)
        text = s.describe()
        assert (f"for epoch{'s 1-' if first > 1 else ' '}{first};" in text) == (first > 0)
