"""The fields of a checkpoint's run metadata (`tritium.*` strings), each parsed and checked
as untrusted input: a field that is malformed, out of range or too large is a `_FieldError`
naming it, which :meth:`tritium.driver.models.RunInfo.from_extra` reports as a
CheckpointError."""

from __future__ import annotations

import math
import re
from typing import Any

VARIANTS = ("ternary", "fp32")
WEIGHT_FORMATS = ("t2", "t1.6")
MAX_INPUT_RANK = 8
MAX_INPUT_ELEMENTS = 1 << 28
MAX_CLASSES = 1 << 24
MAX_TEXT_FIELD = 4096


class _FieldError(Exception):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _json_field(text: str, field: str, depth: int) -> Any:
    from ..cachedir import parse_json

    try:
        return parse_json(text, max_depth=depth)
    except ValueError as e:
        raise _FieldError(field, f"not valid JSON ({str(e)[:200]})") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _source_field(text: str) -> str:
    from ..frontend.source import MAX_SOURCE_BYTES

    if not text.strip():
        raise _FieldError("tritium.source", "the program source is empty")
    if "\0" in text:
        raise _FieldError("tritium.source", "the program source contains a NUL character")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise _FieldError("tritium.source", f"the program source is larger than "
                                            f"{MAX_SOURCE_BYTES} bytes")
    return text


def _text_field(text: str, field: str) -> str:
    if not text or len(text) > MAX_TEXT_FIELD:
        raise _FieldError(field, f"expected 1 to {MAX_TEXT_FIELD} characters, got {len(text)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _FieldError(field, f"{text[:60]!r} contains control characters")
    return text


def _digest_field(text: str | None) -> str | None:
    if text is not None and not re.fullmatch(r"[0-9a-f]{16}", text):
        raise _FieldError("tritium.dataset_digest",
                          f"expected 16 hexadecimal digits, got {text[:80]!r}")
    return text


def _name_field(text: str) -> str:
    if not text.isidentifier() or len(text) > 256:
        raise _FieldError("tritium.entry", f"{text[:60]!r} is not a model name")
    return text


def _hyper_field(text: str) -> dict[str, Any]:
    value = _json_field(text, "tritium.hyperparameters", 1)
    if not isinstance(value, dict):
        raise _FieldError("tritium.hyperparameters", "expected a JSON object")
    for k, v in value.items():
        if not k.isidentifier() or len(k) > 256:
            raise _FieldError("tritium.hyperparameters", f"{k[:60]!r} is not a parameter name")
        if not (_is_int(v) or _finite(v) or isinstance(v, bool)
                or (isinstance(v, str) and len(v) <= MAX_TEXT_FIELD)):
            raise _FieldError("tritium.hyperparameters",
                              f"{k}: expected a number, a boolean or a short string, "
                              f"got {str(v)[:60]!r}")
    return value


def _shape_field(text: str) -> list[int] | None:
    value = _json_field(text, "tritium.input_shape", 1)
    if value is None:
        return None
    if (not isinstance(value, list) or not 1 <= len(value) <= MAX_INPUT_RANK
            or not all(_is_int(d) and d > 0 for d in value)
            or math.prod(value) > MAX_INPUT_ELEMENTS):
        raise _FieldError("tritium.input_shape",
                          f"expected null or 1 to {MAX_INPUT_RANK} positive sizes of at most "
                          f"{MAX_INPUT_ELEMENTS} elements in all, got {text[:80]!r}")
    return [int(d) for d in value]


def _norm_field(text: str) -> tuple[float, float]:
    value = _json_field(text, "tritium.normalization", 1)
    if (not isinstance(value, list) or len(value) != 2 or not all(_finite(v) for v in value)
            or not value[1] > 0):
        raise _FieldError("tritium.normalization",
                          f"expected [mean, std] with finite numbers and std > 0, "
                          f"got {text[:80]!r}")
    return float(value[0]), float(value[1])


def _classes_field(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 9 \
            or not 1 <= int(text) <= MAX_CLASSES:
        raise _FieldError("tritium.num_classes",
                          f"expected a whole number from 1 to {MAX_CLASSES}, got {text[:40]!r}")
    return int(text)


def _input_fields(extra: dict[str, str]) -> dict[str, Any]:
    """The fields saying how inputs are prepared and what the model is (both kinds)."""
    return dict(
        dataset=_text_field(extra.get("tritium.dataset", "digits"), "tritium.dataset"),
        dataset_digest=_digest_field(extra.get("tritium.dataset_digest")),
        input_shape=_shape_field(extra.get("tritium.input_shape", "null")),
        normalization=_norm_field(extra.get("tritium.normalization", "[0.0, 1.0]")),
        num_classes=_classes_field(extra.get("tritium.num_classes", "10")),
        variant=_choice_field(extra.get("tritium.variant", "ternary"), "tritium.variant",
                              VARIANTS),
        format=_choice_field(extra.get("tritium.format", "t2"), "tritium.format",
                             WEIGHT_FORMATS),
    )


_LAYER_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def _layers_field(text: str) -> list[str]:
    value = _json_field(text, "tritium.fp32_layers", 1)
    if not isinstance(value, list) or len(value) > 100_000 or not all(
            isinstance(v, str) and len(v) <= 1000 and _LAYER_NAME.fullmatch(v) for v in value):
        raise _FieldError("tritium.fp32_layers", "expected a list of dotted layer names")
    return value


def _entry_field(text: str) -> str:
    from ..argcheck import entry_point_problem

    problem = entry_point_problem(text)
    if problem is not None:
        raise _FieldError("tritium.python_entry", problem)
    return text


def _kwargs_field(text: str) -> dict[str, Any]:
    value = _json_field(text, "tritium.python_kwargs", 4)
    if not isinstance(value, dict) or not all(k.isidentifier() and len(k) <= 256
                                              for k in value):
        raise _FieldError("tritium.python_kwargs", "expected a JSON object keyed by "
                                                   "parameter names")
    return value


def _ternarize_field(text: str | None) -> list[dict[str, Any]] | None:
    from ..runtime.ternarize import ternarize_record_problem

    if text is None:
        return None
    value = _json_field(text, "tritium.ternarize", 5)
    problem = ternarize_record_problem(value)
    if problem is not None:
        raise _FieldError("tritium.ternarize", problem)
    return value


def _choice_field(text: str, field: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise _FieldError(field, f"{text[:40]!r} is not one of {', '.join(choices)}")
    return text
