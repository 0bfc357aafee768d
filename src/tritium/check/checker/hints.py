"""What some messages say to write (issue 13): a name that is another body's constant
or only a section's entry (`num_patches` of the seed's ViT), and a per-channel bias `[C]`
added to a conv output `[N, C, H, W]`, which `+` broadcasts against the last dim."""

from __future__ import annotations

from ...frontend import ast as A


def defined_in_other_body(ck, name: str) -> str | None:
    """Why a name may be undefined here: it is a constant of another definition's body (a
    block's `num_patches: int = (image_size / patch_size) ** 2`), which is that body's own,
    or only an entry of a section (`performance { num_patches: 196 }`), which states an
    expectation and defines nothing."""
    bodies = [(d.name, getattr(d.node, "body", None) or ()) for d in ck.defs.values()]
    for owner, body in bodies:
        for item in body:
            if isinstance(item, A.ConfigEntry) and item.key == name:
                return (f"`{name}` is a constant of `{owner}`'s body, which only that body "
                        f"sees: define it in this body too (e.g. `{name}: int = …` computed "
                        f"from this body's constants)")
    for owner, body in bodies:
        for item in body:
            if isinstance(item, A.Section) and item.name not in ("params", "repeat") and any(
                    e.key == name for e in item.entries):
                return (f"`{name}` is an entry of `{item.name} {{ }}` in `{owner}`, which "
                        f"states an expectation and defines no name: define it as a constant "
                        f"of the body (`{name}: …`)")
    return None


def channel_bias_help(a, b, symbolic: bool = False) -> str | None:
    """What to write for a per-channel bias `[C]` added to a conv output `[N, C, H, W]`: `+`
    broadcasts a rank-1 tensor against the last dim (NumPy and PyTorch rules; the seed's
    programs write `conv_out + bias` meaning the channels). With `symbolic`, only where the
    channel dim is the bias's size and the last dim is not known to be (a warning)."""
    if a is None or b is None:
        return None
    v, t = (a, b) if len(a) == 1 else (b, a) if len(b) == 1 else (None, None)
    if v is None or len(t) < 3:
        return None
    c, last = v[0], t[-1]
    if c is None or c == 1 or c != t[1]:
        return None
    if symbolic and (isinstance(c, int) or last == c or last == 1 or last is None):
        return None
    ones = ", ".join(["1", str(c)] + ["1"] * (len(t) - 2))
    return (f"to add it per channel, write `x + reshape(bias, [{ones}])`, or pass it to the "
            f"convolution: `conv2d(x, w, bias=bias)`")
