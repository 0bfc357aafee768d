"""IR types: tensors with a dtype and a shape of static, symbolic or unknown dims; scalars.

    tensor<[batch, 64], f32>     a 2-d f32 tensor whose first dim is the symbol `batch`
    tensor<[?, 10], trit>        first dim unknown
    tensor<[], f32>              a 0-d tensor
    i64 / f32 / bool / str       scalars (hyperparameters, dim-of results, conditions)

A dim is an `int` (static), a `str` (a symbolic name, equal wherever the same name appears
in one function) or `None` (printed `?`: unknown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import vocab

Dim = int | str | None

# bool < trit < u8 < i8 < i16 < i32 < i64 < bf16 < f16 < f32 < f64: the promotion order of
# `promote` (tritium.vocab.IR_DTYPES).
DTYPES = vocab.IR_DTYPES
FLOAT_DTYPES = vocab.IR_FLOAT_DTYPES
INT_DTYPES = vocab.IR_INT_DTYPES
SCALAR_DTYPES = vocab.IR_SCALAR_DTYPES

# numpy storage of each dtype. bf16 has no numpy dtype: it is stored (and computed) as f32.
NUMPY_DTYPES: dict[str, type] = {
    "bool": np.bool_, "trit": np.int8, "u8": np.uint8, "i8": np.int8, "i16": np.int16,
    "i32": np.int32, "i64": np.int64, "bf16": np.float32, "f16": np.float16, "f32": np.float32,
    "f64": np.float64, "str": np.str_,
}


@dataclass(frozen=True, slots=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown tensor dtype {self.dtype!r}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def numel(self) -> int | None:
        if not self.is_static:
            return None
        return math.prod(self.shape)  # type: ignore[arg-type]  # exact: no int64 overflow

    def with_shape(self, shape: tuple[Dim, ...] | list[Dim]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"tensor<[{', '.join(dim_str(d) for d in self.shape)}], {self.dtype}>"


@dataclass(frozen=True, slots=True)
class ScalarType:
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in SCALAR_DTYPES:
            raise ValueError(f"unknown scalar dtype {self.dtype!r}")

    def __str__(self) -> str:
        return self.dtype


Type = TensorType | ScalarType


def dim_str(d: Dim) -> str:
    return "?" if d is None else str(d)


def is_float(t: Type) -> bool:
    return t.dtype in FLOAT_DTYPES


def promote(a: str, b: str) -> str:
    """The dtype of a binary arithmetic result (the later one in `DTYPES`)."""
    order = {d: i for i, d in enumerate(DTYPES)}
    if a == "str" or b == "str":
        raise TypeError("str values have no arithmetic")
    return a if order.get(a, 0) >= order.get(b, 0) else b


def dims_compatible(a: Dim, b: Dim) -> bool:
    """Two dims may be equal at run time unless both are static and differ."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def join_dim(a: Dim, b: Dim) -> Dim:
    """The more precise of two compatible dims: static over symbolic over unknown."""
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return a if a is not None else b


def types_compatible(a: Type, b: Type) -> bool:
    """Same kind, dtype and rank, and every pair of dims compatible."""
    if isinstance(a, ScalarType) or isinstance(b, ScalarType):
        return a == b
    return (
        a.dtype == b.dtype
        and a.rank == b.rank
        and all(dims_compatible(x, y) for x, y in zip(a.shape, b.shape))
    )


def broadcast_shapes(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """numpy broadcasting over static/symbolic/unknown dims; raises ValueError on a clash."""
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out: list[Dim] = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif dims_compatible(x, y):
            out.append(join_dim(x, y))
        else:
            raise ValueError(f"cannot broadcast dims {dim_str(x)} and {dim_str(y)}")
    return tuple(out)
