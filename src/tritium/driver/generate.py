"""`tritium generate`: text from a language-model checkpoint of `tritium train`.

    r = generate("runs/bitnet/model.safetensors", "def main(", max_new_tokens=200,
                 temperature=0.8, top_k=40, seed=0, on_text=sys.stdout.write)
    r.text, r.prefill_tokens_per_s, r.decode_tokens_per_s

The checkpoint's frozen (packed) model runs at batch 1 with its recorded tokenizer. The
prompt is one forward (prefill); then one token per forward (decode), with a KV cache: a
:class:`tritium.runtime.decoding.DecodeSession` in which the model's `attention` calls
append to per-layer caches and `rope` continues positions (`use_cache=False` recomputes
the whole sequence every step instead: the same tokens, slower). Sampling: greedy
(`greedy=True` or `temperature=0`) or softmax(logits / temperature) restricted to the
`top_k` most likely tokens and to the smallest set whose probability reaches `top_p`,
drawn from a generator seeded by `seed` (the same seed, the same text). Only token ids the
tokenizer knows are ever chosen (a model vocabulary larger than the tokenizer's has
unused rows). Text streams to `on_text` as soon as it forms whole UTF-8 characters. A model
`tritium import hf` imported generates as transformers would (:func:`generation_settings`):
its prompt starts with the tokens its tokenizer puts before a text (Llama's BOS), and drawing
any of its end-of-sequence ids (generation_config.json's, else config.json's) ends the text.

The output head: by default (`head="int8"`, `--head int8`) a full-precision `lm_head` runs
with int8 weights (one scale per vocabulary row) and int8 activations per token
(:class:`tritium.runtime.layers.head.Int8Head`), as llama.cpp and bitnet.cpp run the output
tensor of their ternary formats: it is the largest matrix of a decode step (a 32000 x 768 fp32
head alone reads 98 MB per token, more than all the ternary layers of a 125M model), and int8
makes it 4x smaller, while the logits move by the int8 rounding error only (greedy picks can
differ only between near-ties). `head="fp32"` runs the head as trained.

Importing this module is cheap (torch is imported when a command runs).
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..vocab import LM_HEADS as HEADS
from .hf_tokenizer import GenerationSettings, HFImportError

#: the KV cache's element types (`--kv-cache`): float32, or float16 (half the memory and the
#: bytes attention reads per step; the fused decoder blocks write and read it natively)
KV_CACHES = ("f32", "f16")
DEFAULT_KV_CACHE = "f32"

__all__ = ["KV_CACHES", "GenerateError", "GenerationResult", "GenerationSettings", "end_of_text",
           "generate", "generate_tokens", "generation_settings", "sample_next"]


class GenerateError(Exception):
    def __init__(self, message: str, help: str | None = None, code: int = 1) -> None:  # noqa: A002
        self.message = message
        self.help = help
        self.code = code
        super().__init__(message)


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)     # the new tokens
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    decode_steps: int = 0
    cache_used: bool = False    # False: asked not to, or the model cannot decode with it
    stopped_at: int | None = None   # the stop token that ended the generation (not in tokens)

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_steps / self.decode_seconds if self.decode_seconds > 0 else 0.0


def _check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    import math
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)
            and temperature >= 0):
        raise GenerateError(f"temperature must be a finite number >= 0, got {temperature!r}",
                            code=2)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise GenerateError(f"top_k must be a whole number >= 0 (0: off), got {top_k!r}",
                            code=2)
    if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise GenerateError(f"top_p must be in (0, 1], got {top_p!r}", code=2)


def sample_next(logits, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                greedy: bool = False, generator=None) -> int:
    """The next token from `logits` [vocab]: argmax when `greedy` or `temperature == 0`;
    otherwise a draw from softmax(logits / temperature) after keeping the `top_k` largest
    (0: all) and then the smallest set of most likely tokens whose probability reaches
    `top_p` (the most likely token always stays)."""
    import torch

    logits = logits.detach().float().reshape(-1)
    nan = int(torch.isnan(logits).sum())
    if nan or not bool((logits > float("-inf")).any()):
        # argmax would pick the first NaN (or token 0 of all -inf), multinomial would raise
        raise GenerateError(f"the model's logits hold NaN ({nan} of {logits.numel()})" if nan
                            else "the model's logits are all -inf", help="no token can be "
                            "chosen: its weights or activations overflowed; try --head fp32, "
                            "or check the checkpoint with `tritium eval`")
    if greedy or temperature == 0:
        return int(torch.argmax(logits))
    inf = torch.isposinf(logits)
    if bool(inf.any()):     # the infinite logits share all of the probability
        logits = torch.zeros_like(logits).masked_fill(~inf, float("-inf"))
    # the largest logit becomes 0 before dividing: logits / 1e-40 overflow float32 to inf
    # (and inf - inf is NaN in the softmax), while a temperature below float32's smallest
    # normal number picks as that number does (the most likely token, ties shared)
    scaled = (logits - logits.max()) / max(float(temperature), torch.finfo(torch.float32).tiny)
    if top_k and top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p < 1.0:
        probs = torch.softmax(scaled, dim=-1)
        order = torch.argsort(probs, descending=True)
        cum = torch.cumsum(probs[order], dim=-1)
        # keep a token when the probability before it is still below top_p
        drop = (cum - probs[order]) >= top_p
        drop[0] = False
        scaled = scaled.clone()
        scaled[order[drop]] = float("-inf")
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _whole(x: Any, otherwise: Any = None) -> Any:
    """`x` as an int when it is a whole number (Python's, numpy's, a 0-d integer tensor; not
    a bool), else `otherwise`."""
    import operator
    if isinstance(x, bool):
        return otherwise
    try:
        return operator.index(x)
    except TypeError:
        return otherwise


def generate_tokens(model, prompt: list[int], max_new_tokens: int, *, vocab: int | None = None,
                    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    greedy: bool = False, seed: int | None = None, use_cache: bool = True,
                    on_token: Callable[[int], None] | None = None,
                    fused: bool = True, kv_cache: str = DEFAULT_KV_CACHE,
                    stop: Iterable[int] = ()) -> GenerationResult:
    """Generate up to `max_new_tokens` token ids after `prompt` with `model` (batch 1,
    eval mode, no gradients). `vocab` limits the choice to ids below it. Drawing one of the
    `stop` ids ends the generation (it is not among the tokens: `stopped_at`). `fused=False`
    keeps decoder blocks off their fused one-call decode (`runtime.layers.decoder`).
    `kv_cache`: the cache's element type, "f32" or "f16" (`KV_CACHES`)."""
    import torch

    from ..runtime.decoding import DecodeSession

    _check_sampling(temperature, top_k, top_p)
    if kv_cache not in KV_CACHES:
        raise GenerateError(f"kv_cache must be one of {', '.join(KV_CACHES)}, got "
                            f"{kv_cache!r}", code=2)
    if not prompt:
        raise GenerateError("the prompt is empty: it needs at least one token", code=2)
    if _whole(max_new_tokens) is None:
        raise GenerateError(f"max_new_tokens must be a whole number, got {max_new_tokens!r}",
                            code=2)
    max_new_tokens = _whole(max_new_tokens)
    if seed is not None and not 0 <= _whole(seed, -1) < 1 << 64:
        raise GenerateError(f"seed must be a whole number from 0 to 2**64 - 1, got {seed!r}",
                            code=2)
    bad = next((t for t in prompt if _whole(t, -1) < 0), None)
    if bad is not None:     # (a negative id failed inside the model; a float was truncated)
        raise GenerateError(f"prompt token {bad!r} is not a token id (a whole number >= 0)",
                            code=2)
    gen = torch.Generator().manual_seed(int(seed) if seed is not None else
                                        int(torch.seed() % (1 << 63)))
    model.eval()
    result = GenerationResult("", len(prompt))
    ids = torch.tensor([prompt], dtype=torch.long)

    def pick(logits: torch.Tensor) -> int:
        last = logits[0, -1]
        if vocab is not None:
            last = last[:vocab]
        return sample_next(last, temperature=temperature, top_k=top_k, top_p=top_p,
                           greedy=greedy, generator=gen)

    stop = frozenset(int(t) for t in stop)
    with torch.no_grad():
        session = DecodeSession(fused=fused, max_tokens=len(prompt) + max_new_tokens,
                                kv_dtype=torch.float16 if kv_cache == "f16" else None) \
            if use_cache else None
        if session is not None:
            session.__enter__()
        try:
            if max_new_tokens <= 0:
                return result
            t = time.perf_counter()
            # the prompt's forward projects only its last position through the head (the
            # logits a generation samples from), as llama.cpp's does
            with _forward_of(ids):
                logits = session.forward(model, ids, last_only=True) \
                    if session is not None else model(ids)
            token = pick(logits)
            result.prefill_seconds = time.perf_counter() - t
            if token in stop:
                result.stopped_at = token
                return result
            result.tokens.append(token)
            if on_token is not None:
                on_token(token)
            t = time.perf_counter()
            result.cache_used = session is not None
            while len(result.tokens) < max_new_tokens:
                ids = torch.cat([ids, torch.tensor([[token]], dtype=torch.long)], dim=1)
                if session is not None:
                    with _forward_of(ids):
                        logits = session.forward(model, ids[:, -1:])
                    checked = time.perf_counter()
                    with _forward_of(ids):
                        # positions from `arange` restart at 0 in a cached step: never
                        # served from the cache, whatever the logits look like
                        agrees = session.position_free is None and (
                            result.decode_steps > 0 or _agrees(model, ids, logits))
                    t += time.perf_counter() - checked       # the check is not decoding
                    if not agrees:
                        # the model mixes positions outside `attention` (a convolution
                        # over the sequence, say): the cache cannot stand in for them
                        session.__exit__(None, None, None)
                        session = None
                        result.cache_used = False
                        with _forward_of(ids):
                            logits = model(ids)
                else:
                    with _forward_of(ids):
                        logits = model(ids)
                token = pick(logits)
                result.decode_steps += 1
                if token in stop:
                    result.stopped_at = token
                    break
                result.tokens.append(token)
                if on_token is not None:
                    on_token(token)
            result.decode_seconds = time.perf_counter() - t
        finally:
            if session is not None:
                session.__exit__(None, None, None)
    return result


@contextmanager
def _forward_of(ids):
    """The model's forward over the sequence `ids` [1, n]: an error it raises (a table of
    positions shorter than n, a forward declared for another input length) is a
    GenerateError naming the sequence length, not a traceback from inside the model."""
    try:
        yield
    except (IndexError, RuntimeError, ValueError) as exc:
        n = int(ids.shape[-1])
        raise GenerateError(
            f"the model cannot run a sequence of {n} tokens: {type(exc).__name__}: "
            f"{str(exc).strip()[:300]}",
            help="a model whose forward declares a fixed input length, or that looks up "
                 "positions in a table, runs only the sequence lengths it was built for: "
                 "shorten the prompt or --max-new-tokens") from exc


#: How far the first cached step's logits may be from full recomputation's, as a fraction of
#: the largest logit. A model with int8 activations legitimately differs there: the same
#: values summed in another order (one token against the whole sequence) can move an input
#: across an int8 rounding step, and each step moves every output of the projection it feeds;
#: through a deep stack of blocks those moves compound. Measured on random BitNet models
#: (benchmarks/llm.py's shapes, its 128-token prompt): 125m about 1% of the largest logit,
#: the 0.7B shape 3.7% at 4 layers and 7.2-8.5% at its full 24 (the PyTorch fp32 twin, the
#: same int8 arithmetic in PyTorch, 7.7%: the model's own sensitivity, not the cache). A cache
#: that is wrong moves them by their whole range: on the 24-layer model, a step that lost half
#: its context is 88% of the largest logit away, the last token alone 130%; a model that
#: mixes positions outside `attention` does the same. The bound sits between the two.
CACHE_TOLERANCE = 0.25


def _agrees(model, ids, cached_logits) -> bool:
    """Whether the first cached decode step gave the logits of full recomputation, within
    `CACHE_TOLERANCE` (checked once per generation, outside the session)."""
    import torch

    from ..runtime.decoding import _SESSION
    token = _SESSION.set(None)
    try:
        full = model(ids)[:, -1:]
    finally:
        _SESSION.reset(token)
    scale = max(1.0, float(full.abs().max()))
    return bool(torch.allclose(cached_logits[:, -1:].float(), full.float(), rtol=0,
                               atol=CACHE_TOLERANCE * scale))


def load_language_model(checkpoint: str) -> tuple[Any, Any, Any]:
    """`(model, tokenizer, info)` of a language-model checkpoint (frozen, eval mode)."""
    from ..data.tokenizer import TokenizerError
    from ..runtime import read_checkpoint_metadata
    from .evaluate import load_for_eval
    from .train.lm import TOKENIZER_KEY, model_tokenizer, tokenizer_of

    meta = read_checkpoint_metadata(checkpoint)
    if TOKENIZER_KEY not in meta.extra:
        raise GenerateError(f"{checkpoint} is not a language model: it records no tokenizer",
                            help="generate from the model.safetensors of `tritium train "
                                 "MODEL.tri --data text[:PATH]`")
    try:
        tokenizer_of(meta.extra, str(checkpoint))   # a damaged record, before the model loads
        model, info = load_for_eval(checkpoint)
        tok = model_tokenizer(meta.extra, info, str(checkpoint))
    except TokenizerError as exc:
        raise GenerateError(exc.message, exc.help) from None
    return model, tok, info


def generation_settings(checkpoint: str) -> GenerationSettings:
    """The generation settings of the checkpoint's model: an imported model's (`tritium
    import hf` records them: its generation_config.json's or config.json's end-of-sequence
    ids, the tokens its tokenizer puts around a prompt); a checkpoint imported before they
    were recorded stops at its config.json's first ``eos_token_id``; a model `tritium train`
    made has none."""
    from ..runtime import read_checkpoint_metadata
    from .hf_import import ARCH_KEY, HFArch
    from .hf_tokenizer import read_generation_record
    from .models import GENERATION_KEY
    extra = read_checkpoint_metadata(checkpoint).extra
    try:
        if GENERATION_KEY in extra:
            return read_generation_record(extra[GENERATION_KEY], str(checkpoint))
        if ARCH_KEY not in extra:
            return GenerationSettings()
        arch = HFArch.from_json(extra[ARCH_KEY], str(checkpoint))
    except HFImportError as exc:
        raise GenerateError(exc.message, exc.help) from None
    return GenerationSettings(eos=() if arch.eos is None else (arch.eos,), bos=arch.bos)


def end_of_text(checkpoint: str) -> int | None:
    """The (first) token that ends a text for the model of the checkpoint
    (:func:`generation_settings`), else None."""
    eos = generation_settings(checkpoint).eos
    return eos[0] if eos else None


def generate(checkpoint: str, prompt: str, max_new_tokens: int = 128, *,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             greedy: bool = False, seed: int | None = None, use_cache: bool = True,
             head: str = "int8", kv_cache: str = DEFAULT_KV_CACHE,
             on_text: Callable[[str], Any] | None = None,
             stop_at_eos: bool = True) -> GenerationResult:
    """Generate text after `prompt` from a `tritium train` language-model checkpoint; see
    the module's documentation. `on_text` receives the new text piece by piece. `head`:
    "int8" (default) runs a full-precision output head with int8 weights and activations,
    "fp32" as trained (see the module's documentation). `stop_at_eos`: the text ends where
    the model draws one of its end-of-sequence tokens (:func:`generation_settings`: every
    id of a list), as transformers' and llama.cpp's generation do. An imported model's
    prompt gets the tokens its tokenizer puts around a text (Llama's BOS before it), as
    transformers' tokenizer does; they count in `prompt_tokens`."""
    if not isinstance(prompt, str):
        raise GenerateError(f"the prompt must be text, got {type(prompt).__name__}", code=2)
    if head not in HEADS:
        raise GenerateError(f"head must be one of {', '.join(HEADS)}, got {head!r}", code=2)
    model, tok, _ = load_language_model(checkpoint)
    settings = generation_settings(checkpoint)
    around = settings.prefix + settings.suffix
    if any(i >= tok.vocab_size for i in around):
        raise GenerateError(f"{checkpoint}: the tokens {list(around)[:8]} its record puts "
                            f"around a prompt are not all below the tokenizer's "
                            f"{tok.vocab_size}", help="import the model again")
    from ..runtime.layers.head import quantize_head
    quantize_head(model, head)
    ids = [*settings.prefix, *tok.encode(prompt), *settings.suffix]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []

    def on_token(t: int) -> None:
        piece = decoder.decode(tok.decode_bytes([t]))
        if piece:
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)

    result = generate_tokens(model, ids, max_new_tokens, vocab=tok.vocab_size,
                             temperature=temperature, top_k=top_k, top_p=top_p,
                             greedy=greedy, seed=seed, use_cache=use_cache,
                             on_token=on_token, kv_cache=kv_cache,
                             stop=settings.eos if stop_at_eos else ())
    tail = decoder.decode(b"", final=True)
    if tail:
        pieces.append(tail)
        if on_text is not None:
            on_text(tail)
    result.text = "".join(pieces)
    return result


# ----------------------------------------------------------------------------- the command

def cmd_generate(args: argparse.Namespace) -> int:
    from .console import EXIT_OK
    from .train_cli import _checkpoint

    _checkpoint(args.checkpoint)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    def out(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    r = generate(args.checkpoint, args.prompt, args.max_new_tokens,
                 temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                 greedy=args.greedy, seed=args.seed, use_cache=not args.no_cache,
                 head=args.head, kv_cache=args.kv_cache,
                 on_text=None if args.quiet else out, stop_at_eos=not args.ignore_eos)
    if not args.quiet:
        sys.stdout.write("\n")
        sys.stdout.flush()
    print(f"prefill: {r.prompt_tokens} tokens in {r.prefill_seconds * 1000:.1f} ms "
          f"({r.prefill_tokens_per_s:.1f} tokens/s); decode: {r.decode_steps} tokens in "
          f"{r.decode_seconds * 1000:.1f} ms ({r.decode_tokens_per_s:.1f} tokens/s)"
          + ("" if r.cache_used or r.decode_steps == 0 else " without KV cache"
             + ("" if args.no_cache else " (the model mixes positions outside attention)"))
          + ("" if r.stopped_at is None else f"; stopped at the end-of-text token "
             f"{r.stopped_at}"),
          file=sys.stderr)
    return EXIT_OK


def _guarded(args: argparse.Namespace) -> int:
    from .train_cli import _error, _guard

    def run(a: argparse.Namespace) -> int:
        try:
            return cmd_generate(a)
        except GenerateError as err:
            _error(err.message, err.help)
            return err.code
    return _guard(run)(args)


def register(sub: Any, formatter_class: Any) -> None:
    from ..argcheck import number, path_arg

    g = sub.add_parser("generate", help="generate text from a language-model checkpoint",
                       formatter_class=formatter_class,
                       description="Streams the new text to stdout (the prompt is not "
                                   "repeated), then prints prefill and decode tokens/s to "
                                   "stderr. Runs the frozen (packed) model at batch 1 with a "
                                   "KV cache.",
                       epilog="examples:\n"
                              "  tritium generate runs/bitnet/model.safetensors --prompt "
                              "'def main(' --greedy\n"
                              "  tritium generate runs/bitnet/model.safetensors --prompt "
                              "'import ' --temperature 0.8 --top-k 40 --top-p 0.95 --seed 1")
    g.add_argument("checkpoint", metavar="CKPT", type=path_arg("input-file"))
    g.add_argument("--prompt", required=True, help="the text to continue")
    g.add_argument("--max-new-tokens", type=number("max_new_tokens"), default=128)
    g.add_argument("--temperature", type=number("temperature"), default=1.0,
                   help="softmax temperature (0: greedy)")
    g.add_argument("--top-k", type=number("top_k"), default=0,
                   help="sample from the K most likely tokens (0: all)")
    g.add_argument("--top-p", type=number("top_p"), default=1.0,
                   help="sample from the most likely tokens holding probability P")
    g.add_argument("--seed", type=number("seed"), default=None,
                   help="seed of the sampler (the same seed, the same text)")
    g.add_argument("--greedy", action="store_true", help="always the most likely token")
    g.add_argument("--ignore-eos", action="store_true",
                   help="keep generating past the model's end-of-text tokens (an imported "
                        "model's eos_token_id, every id of a list), which otherwise end the "
                        "text")
    g.add_argument("--no-cache", action="store_true",
                   help="recompute the whole sequence every token (no KV cache)")
    g.add_argument("--head", choices=HEADS, default="int8",
                   help="the output head: int8 weights and activations (default; as "
                        "llama.cpp runs its output tensor) or fp32 as trained")
    g.add_argument("--kv-cache", choices=KV_CACHES, default=DEFAULT_KV_CACHE,
                   help="the KV cache's element type: f32 or f16 (half the memory)")
    g.add_argument("--threads", type=number("threads"), default=0,
                   help="torch threads (0: torch's default)")
    g.add_argument("-q", "--quiet", action="store_true", help="only the tokens/s line")
    g.set_defaults(func=_guarded)
