"""The QAT schedule of a `training { }` block: its spellings, its checks and the
quantization strength of each epoch. Torch-free; the checker, `tritium train` and its
`--qat-schedule` flag share it.

    training {
        epochs: 100
        quantization_schedule: { warmup_epochs: 10, gradual_quantization: true,
                                 quantization_epochs: [10, 30, 50] }
    }

The strength λ of an epoch (0: the ternary layers and quantizers run on their float
input, 1: fully quantized; in between the effective value is ``(1-λ)·x + λ·q(x)``) is
a function of the epoch alone (:meth:`QatSchedule.strength`), so a resumed run continues
at the right stage. Epochs count from 0: `warmup_epochs: 10` trains epochs 0..9 in float,
and a stage at epoch 10 begins after ten epochs.

Stages ``s_1 < … < s_k`` are where λ reaches ``i/k``. Stepwise (`gradual_quantization:
false`) λ holds that value until the next stage; gradual (true) λ moves linearly from one
stage's value to the next one's (rising from 0 right after the warm-up when the warm-up
ends before the first stage). From the last stage on λ is 1: ordinary QAT. Evaluation and
freezing are always fully quantized.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

#: the `training { }` keys of the schedule (the seed language wrote both)
SCHEDULE_KEYS = ("qat_schedule", "quantization_schedule")
#: the keys of the dictionary form
SUBKEYS = ("type", "warmup_epochs", "gradual_quantization", "quantization_epochs")
#: the schedule names and what each means (the epochs are the run's)
NAMES = {
    "none": "no schedule: quantized from the first epoch",
    "immediate": "quantized from the first epoch (the same as none)",
    "delayed": "float for the first 10% of the epochs, then quantized at once",
    "progressive": "float for the first 10% of the epochs, then strength 1/3, 2/3 and 1 "
                   "from 10%, 30% and 50% of the epochs",
    "gradual": "float for the first 10% of the epochs, then the strength rises linearly "
               "to 1 at 50% of the epochs",
}
ALIASES = {"linear": "gradual", "staged": "progressive", "stepwise": "progressive",
           "off": "none", "constant": "immediate", "full": "immediate"}
MAX_EPOCH = 100_000


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a schedule: `path` names the part (``()`` the whole value,
    ``("warmup_epochs",)``, ``("quantization_epochs", 2)`` an item); a `warning` is an
    unknown key, which has no effect."""

    path: tuple
    message: str
    help: str | None = None
    warning: bool = False


class ScheduleError(ValueError):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.message)


@dataclass(frozen=True)
class QatSchedule:
    """A resolved schedule: `name` as written (``"custom"`` for a dictionary without
    `type`), the float warm-up and the stage epochs of the run, stepwise or gradual."""

    name: str = "none"
    warmup_epochs: int = 0
    stages: tuple[int, ...] = ()
    gradual: bool = False

    @property
    def active(self) -> bool:
        """Whether any epoch trains with less than full quantization."""
        return self.strength(0) < 1.0

    def _knots(self) -> list[tuple[int, float]]:
        k = len(self.stages)
        knots: list[tuple[int, float]] = []
        if self.gradual and self.stages and self.warmup_epochs < self.stages[0]:
            knots.append((self.warmup_epochs - 1, 0.0))   # the ramp begins after the warm-up
        for i, s in enumerate(self.stages, 1):
            if knots and knots[-1][0] == s:
                knots[-1] = (s, i / k)       # stages that scaling merged: the higher wins
            else:
                knots.append((s, i / k))
        return knots

    def strength(self, epoch: int) -> float:
        """λ of the (0-based) `epoch`."""
        if not self.stages:
            return 1.0
        knots = self._knots()
        if epoch < knots[0][0]:
            return 0.0
        if epoch >= knots[-1][0]:
            return 1.0
        for (a, la), (b, lb) in zip(knots, knots[1:], strict=False):
            if a <= epoch < b:
                return la + (lb - la) * (epoch - a) / (b - a) if self.gradual else la
        return 1.0   # not reached: the knots cover every epoch in between

    def scaled(self, written_for: int, epochs: int) -> QatSchedule:
        """The schedule written for `written_for` epochs, stretched to a run of `epochs`
        (each epoch number e becomes floor(e * epochs / written_for))."""
        if written_for == epochs or written_for <= 0:
            return self

        def f(e: int) -> int:
            return e * epochs // written_for
        return QatSchedule(self.name, f(self.warmup_epochs),
                           tuple(f(s) for s in self.stages), self.gradual)

    def to_dict(self) -> dict:
        return {"name": self.name, "warmup_epochs": self.warmup_epochs,
                "quantization_epochs": list(self.stages), "gradual": self.gradual}

    def describe(self) -> str:
        """One line for the report (epochs counted from 1, as the progress lines do)."""
        if not self.active:
            return f"{self.name}: fully quantized from the first epoch"
        last = self.stages[-1]
        # the first epoch with strength > 0 (found without walking the epochs: a resumed
        # state file names the stages, and its numbers may be anything)
        first = self.warmup_epochs if self.gradual and self.warmup_epochs < self.stages[0] \
            else self.stages[0]
        parts = [f"float (quantizers off) for epoch{'s 1-' if first > 1 else ' '}{first}"
                 if first else ""]
        if self.gradual:
            parts.append(f"strength rising linearly from {self.strength(first):.2g} in "
                         f"epoch {first + 1} to 1 in epoch {last + 1}")
        else:
            steps = sorted({(s, self.strength(s)) for s in self.stages})
            parts.append("strength " + ", ".join(f"{lam:.2g} from epoch {s + 1}"
                                                 for s, lam in steps))
        parts.append("then ordinary QAT")
        return f"{self.name}: " + "; ".join(p for p in parts if p)


def _named(name: str, epochs: int) -> QatSchedule:
    if name in ("none", "immediate"):
        return QatSchedule(name)
    w = epochs // 10
    if name == "delayed":
        return QatSchedule(name, w, (w,), False)
    if name == "progressive":
        return QatSchedule(name, w, (w, 3 * epochs // 10, epochs // 2), False)
    return QatSchedule(name, w, (epochs // 2,) if epochs // 2 > w else (w,), True)


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_EPOCH


def _name_problem(v: object, path: tuple) -> tuple[str | None, Problem | None]:
    if not isinstance(v, str):
        return None, Problem(path, f"a QAT schedule name must be a string, got {v!r}",
                             help=f"one of {', '.join(NAMES)}")
    key = ALIASES.get(v.strip().lower(), v.strip().lower())
    if key not in NAMES:
        close = difflib.get_close_matches(key, [*NAMES, *ALIASES], n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return None, Problem(path, f"unknown QAT schedule `{v}`",
                             help=f"{hint}one of {', '.join(NAMES)}, or a dictionary "
                                  "{ warmup_epochs, gradual_quantization, quantization_epochs }")
    return key, None


def check(spec: object, epochs: int | None, key: str = "qat_schedule"
          ) -> tuple[QatSchedule | None, list[Problem]]:
    """The schedule `spec` (a name or a dictionary) for a run of `epochs` (None: not
    known, so only what does not depend on it is checked) and its problems; the schedule
    is None when an error (not a warning) was found."""
    probs: list[Problem] = []
    run = epochs if epochs is not None else MAX_EPOCH
    if spec is None:                       # `qat_schedule: None`
        return QatSchedule("none"), []
    if isinstance(spec, str):
        name, p = _name_problem(spec, ())
        if p is not None:
            return None, [p]
        assert name is not None
        return _named(name, epochs or 10), []
    if not isinstance(spec, dict):
        return None, [Problem((), f"`{key}` must be a schedule name or a dictionary, got "
                                  f"{spec!r}",
                              help=f"a name ({', '.join(NAMES)}) or {{ warmup_epochs: 10, "
                                   "gradual_quantization: true, quantization_epochs: "
                                   "[10, 30, 50] }")]
    for k in spec:
        if k not in SUBKEYS:
            probs.append(Problem((k,), f"unknown key `{k}` in `{key}`: it has no effect",
                                 help=f"known keys: {', '.join(SUBKEYS)}", warning=True))
    base = QatSchedule("custom")
    if "type" in spec:
        name, p = _name_problem(spec["type"], ("type",))
        if p is not None:
            return None, [*probs, p]
        assert name is not None
        base = _named(name, epochs or 10)
    errors: list[Problem] = []
    warm = spec.get("warmup_epochs")
    if warm is not None and not _whole(warm):
        errors.append(Problem(("warmup_epochs",), f"`warmup_epochs` must be a whole number "
                              f"of epochs from 0 to {MAX_EPOCH}, got {warm!r}"))
    gradual = spec.get("gradual_quantization")
    if gradual is not None and not isinstance(gradual, bool):
        errors.append(Problem(("gradual_quantization",),
                              f"`gradual_quantization` must be true or false, got {gradual!r}"))
    stages_v = spec.get("quantization_epochs")
    listed = isinstance(stages_v, list)
    stages: list[int] | None = None
    if stages_v is not None:
        items = stages_v if listed else [stages_v]
        stages = []
        if not items:
            errors.append(Problem(("quantization_epochs",), "`quantization_epochs` is empty",
                                  help="list the epochs where the stages begin, e.g. "
                                       "[10, 30, 50]"))
        for i, s in enumerate(items):
            where = ("quantization_epochs", i) if listed else ("quantization_epochs",)
            if not _whole(s):
                errors.append(Problem(where, f"a stage of `quantization_epochs` must be a "
                                      f"whole number of epochs from 0 to {MAX_EPOCH}, got {s!r}"))
            elif stages and s <= stages[-1]:
                errors.append(Problem(where, f"the stages of `quantization_epochs` must "
                                      f"increase: {s} after {stages[-1]}"))
            else:
                stages.append(s)
    if errors:
        return None, [*probs, *errors]
    g = base.gradual if gradual is None else gradual
    if stages is not None:                 # written stages: float until the first one
        st = tuple(stages)
        w = st[0] if warm is None else warm
    elif warm is None and gradual is None or "type" in spec:
        st = base.stages                   # the named schedule's stages
        w = base.warmup_epochs if warm is None else warm
    else:                                  # a warm-up, then at once or a linear ramp
        w = warm or 0
        half = (run - w) // 2
        st = (w + half,) if g and half >= 1 else (w,)
    if st and w > st[0]:
        return None, [*probs, Problem(("warmup_epochs",), f"the float warm-up "
                                      f"(`warmup_epochs: {w}`) ends after the first stage "
                                      f"begins (epoch {st[0]})",
                                      help="the first stage begins at the end of the warm-up "
                                           "or later")]
    if epochs is not None and st and st[-1] >= epochs:
        if stages is not None:
            where, what = (("quantization_epochs", len(st) - 1) if listed else
                           ("quantization_epochs",)), f"the stage at epoch {st[-1]} does not begin"
        else:
            where, what = ("warmup_epochs",), f"the float warm-up (`warmup_epochs: {w}`) " \
                "does not end"
        return None, [*probs, Problem(where, f"{what} before the end of "
                                      f"training (`epochs: {epochs}` runs epochs 0 to "
                                      f"{epochs - 1})",
                                      help="every stage must begin before the last epoch, "
                                           "so that training ends fully quantized")]
    return QatSchedule(base.name if "type" in spec else "custom", w, st, g), probs


def parse(spec: object, epochs: int | None, key: str = "qat_schedule") -> QatSchedule:
    """As :func:`check`, raising :class:`ScheduleError` for the first error."""
    sched, probs = check(spec, epochs, key)
    for p in probs:
        if not p.warning:
            raise ScheduleError(p)
    assert sched is not None
    return sched
