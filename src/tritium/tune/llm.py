"""The LLM strategy: ask an OpenAI-compatible chat endpoint for the next config.

    strategy = LLMStrategy(url="http://127.0.0.1:8000/v1", model="qwen2.5-coder")
    config = strategy.suggest(space, history, ctx)

Each suggestion is one ``POST <endpoint>/chat/completions`` carrying a system prompt and a
user message with the kernel source (``ctx.source``, truncated), the device description, the
goal, the search space (``space.describe()``) and the trial history (the best and the most
recent rows: config, status, median, reason). The answer's first JSON object that looks like
a config is validated against the space; an invalid or already-tried config is sent back in
the same conversation with the reason, at most ``max_retries`` times.

Endpoint URL (``url``, default ``$TRITIUM_LLM_URL``): a URL whose path ends in
``/chat/completions`` is used as is; one whose path ends in ``/v1`` (or any other path) gets
``/chat/completions`` appended; a bare host (``http://host:port`` or ``http://host:port/``)
gets ``/v1/chat/completions``. So ``http://host:8000``, ``http://host:8000/v1`` and
``http://host:8000/v1/chat/completions`` all reach the same place.

The model is ``model``; when left at its default, ``$TRITIUM_LLM_MODEL`` overrides it (a
local server such as vLLM or Ollama names its own models). The API key is read from the environment variable named by ``api_key_env`` (default
``TRITIUM_LLM_API_KEY``) and sent as ``Authorization: Bearer <key>``; it is never logged, and
it is scrubbed from every reason this module records.

When there is no endpoint, or it fails (connection error, timeout, HTTP error, a body that is
not JSON or is larger than ``MAX_RESPONSE_BYTES``), the endpoint is given up for the rest of
the run; that suggestion and every later one come from the fallback strategy (by default the
heuristic, ``tritium.tune.strategies.HeuristicStrategy``). When only the answers are bad
(retries exhausted), that one suggestion comes from the fallback and the next one asks the
endpoint again. The reason is kept in ``last_fallback_reason`` (and every reason, in order,
in ``fallback_reasons``) and logged once per run as a warning, never as a traceback.

Answers are data, never code: JSON is parsed with bounded integers (no more than 18 digits),
no NaN or infinities, strings are only compared with the legal values, and nothing but a
config that ``space.validate`` accepts ever leaves this module.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tritium.tune.space import Config, SearchSpace, Trial, config_key
from tritium.tune.strategies import HeuristicStrategy
from tritium.tune.strategy import Strategy, TuneContext

log = logging.getLogger("tritium.tune.llm")

DEFAULT_MODEL = "gpt-4o-mini"
MAX_SOURCE_CHARS = 12_000
MAX_HISTORY_ROWS = 40
MAX_RESPONSE_BYTES = 1 << 20
MAX_ANSWER_CHARS = 64_000
MAX_REASON_CHARS = 300
_MAX_DECODE_ATTEMPTS = 200

SYSTEM_PROMPT = """\
You are an expert performance engineer tuning one compute kernel. You are given the kernel's
source, the device, the goal, the search space (every tunable parameter with its legal values
and default) and the configs measured so far with their status and median time in
milliseconds (lower is better). Propose ONE new config that you expect to be faster than the
best so far and that has not been tried yet. Every value must be one of the listed legal
values. Answer with exactly one JSON object mapping every parameter name to its value, for
example {"BLOCK_M": 64, "num_warps": 4}, and nothing else."""


class _EndpointError(Exception):
    """The endpoint cannot be used (transport, HTTP or protocol failure)."""


class _BadAnswer(Exception):
    """The answer holds no usable config (the reason goes back to the model)."""


def endpoint_url(url: str) -> str:
    """The chat-completions URL for a base URL given with or without ``/v1``."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"the LLM endpoint URL {url!r} is not an http:// or https:// URL")
    path = parsed.path.rstrip("/")
    if not path:
        path = "/v1/chat/completions"
    elif not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, ""))


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 18:
        raise ValueError(f"integer with {len(text)} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a legal value")


_DECODER = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_no_constant)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.S)


def _loads(text: str) -> Any:
    return _DECODER.decode(text)


def _objects(text: str) -> list[dict]:
    """The JSON objects in ``text``: fenced blocks first, then objects embedded in prose."""
    found: list[dict] = []
    for block in _FENCE.findall(text):
        try:
            value = _loads(block.strip())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            found.append(value)
    attempts = 0
    pos = text.find("{")
    while pos != -1 and attempts < _MAX_DECODE_ATTEMPTS:
        attempts += 1
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            pos = text.find("{", pos + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        pos = text.find("{", end)
    return found


def _coerce(space: SearchSpace, obj: dict) -> dict:
    """Light, lossless normalization: integral floats and short digit strings become ints
    for integer parameters; nothing else changes (validation decides)."""
    out = dict(obj)
    for p in space.params:
        if p.name not in out or not isinstance(p.default, int) or isinstance(p.default, bool):
            continue
        v = out[p.name]
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
            out[p.name] = int(v)
        elif isinstance(v, str) and re.fullmatch(r"-?\d{1,15}", v.strip()):
            out[p.name] = int(v.strip())
    return out


def parse_config(space: SearchSpace, text: str) -> Config:
    """The config an answer proposes (validated), or raise _BadAnswer with the reason."""
    objects = _objects(text[:MAX_ANSWER_CHARS])
    if not objects:
        raise _BadAnswer("the answer contains no JSON object")
    names = set(space.names)
    chosen = None
    for obj in objects:
        for wrapper in ("config", "parameters", "params"):
            inner = obj.get(wrapper)
            if len(obj) == 1 and isinstance(inner, dict):
                obj = inner
        if names & set(obj):
            chosen = obj
            break
    if chosen is None:
        keys = ", ".join(repr(k)[:40] for k in list(objects[0])[:8])
        raise _BadAnswer(f"the JSON object names no parameter of this space (it has {keys or 'no keys'}); "
                         f"the parameters are {', '.join(space.names)}")
    unknown = sorted(str(k)[:40] for k in set(chosen) - names)
    if unknown:
        raise _BadAnswer(f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                         f"the parameters are {', '.join(space.names)}")
    config = space.complete(_coerce(space, chosen))
    why = space.validate(config)
    if why is not None:
        raise _BadAnswer(why)
    return config


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def history_rows(history: list[Trial], limit: int = MAX_HISTORY_ROWS) -> list[Trial]:
    """The rows the prompt shows: the best successful trials and the most recent ones (half
    the budget each), without repeats, in trial order."""
    if len(history) <= limit:
        return list(history)
    ok = sorted((t for t in history if t.ok), key=lambda t: t.median_ms)  # type: ignore[arg-type]
    best = ok[: limit // 2]
    chosen = {id(t) for t in best}
    recent: list[Trial] = []
    for t in reversed(history):
        if len(best) + len(recent) >= limit:
            break
        if id(t) not in chosen:
            recent.append(t)
            chosen.add(id(t))
    order = {id(t): i for i, t in enumerate(history)}
    return sorted(best + recent, key=lambda t: order[id(t)])


def build_prompt(space: SearchSpace, history: list[Trial], ctx: TuneContext) -> str:
    """The user message of the first request."""
    source = ctx.source or ""
    if len(source) > MAX_SOURCE_CHARS:
        source = (source[:MAX_SOURCE_CHARS]
                  + f"\n# [... {len(ctx.source) - MAX_SOURCE_CHARS} more characters not shown]")
    parts = [f"Kernel: {ctx.kernel}", f"Problem shape: {list(ctx.shape)}",
             f"Goal: {ctx.goal}",
             "Device: " + json.dumps(ctx.device, sort_keys=True, default=str)]
    if source:
        parts.append("Kernel source:\n```\n" + source.rstrip("\n") + "\n```")
    parts.append("Search space (every parameter, its legal values and its default):\n"
                 + json.dumps(space.describe(), default=str))
    if ctx.prior:
        lines = [f"- shape {list(shape)}: {config_key(cfg)} -> {_fmt_ms(ms)} ms"
                 for shape, cfg, ms in ctx.prior[:10]]
        parts.append("Best configs archived for other shapes of this kernel on this device:\n"
                     + "\n".join(lines))
    rows = history_rows(history)
    if rows:
        lines = ["trial | config | status | median ms | reason"]
        for t in rows:
            reason = _clip(t.reason, 160) if t.reason else ""
            lines.append(f"{t.number} | {config_key(t.config)} | {t.status} | "
                         f"{_fmt_ms(t.median_ms)} | {reason}")
        shown = "" if len(rows) == len(history) else f" ({len(rows)} of {len(history)} shown)"
        parts.append(f"Trials so far{shown}:\n" + "\n".join(lines))
    else:
        parts.append("No trials yet.")
    parts.append("Answer with one JSON object: the next config to try.")
    return "\n\n".join(parts)


def _default_fallback() -> Strategy:
    return HeuristicStrategy()


class LLMStrategy:
    """Configs proposed by a chat model behind an OpenAI-compatible endpoint (see the module
    docstring for the protocol, the fallback and the safety rules)."""

    name = "llm"

    def __init__(self, url: str | None = None, model: str = DEFAULT_MODEL,
                 api_key_env: str = "TRITIUM_LLM_API_KEY", timeout: float = 30.0,
                 max_retries: int = 2, fallback: Strategy | None = None) -> None:
        raw = url if url is not None else os.environ.get("TRITIUM_LLM_URL", "")
        self.url = endpoint_url(raw) if raw.strip() else None
        # the default model name yields to $TRITIUM_LLM_MODEL (local servers name their own)
        self.model = (os.environ.get("TRITIUM_LLM_MODEL", "").strip() or model
                      if model == DEFAULT_MODEL else model)
        self.api_key_env = api_key_env
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self._fallback = fallback
        self.last_fallback_reason: str | None = None
        self.fallback_reasons: list[str] = []
        self.disabled_reason: str | None = None if self.url else (
            "no LLM endpoint configured (pass --llm-url or set TRITIUM_LLM_URL)")
        self.requests = 0
        self.accepted = 0
        self._warned = False

    # ------------------------------------------------------------------ public

    @property
    def fallback(self) -> Strategy:
        if self._fallback is None:
            self._fallback = _default_fallback()
        return self._fallback

    def suggest(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config | None:
        if self.disabled_reason is not None:
            return self._fall_back(self.disabled_reason, space, history, ctx)
        try:
            config = self._ask(space, history, ctx)
        except _EndpointError as exc:
            self.disabled_reason = self._scrub(str(exc))
            return self._fall_back(self.disabled_reason, space, history, ctx)
        except _BadAnswer as exc:
            return self._fall_back(self._scrub(str(exc)), space, history, ctx)
        self.accepted += 1
        return config

    # ------------------------------------------------------------------ internals

    def _fall_back(self, reason: str, space: SearchSpace, history: list[Trial],
                   ctx: TuneContext) -> Config | None:
        self.last_fallback_reason = reason
        self.fallback_reasons.append(reason)
        if not self._warned:
            self._warned = True
            log.warning("LLM strategy falling back to %s: %s",
                        getattr(self.fallback, "name", type(self.fallback).__name__), reason)
        return self.fallback.suggest(space, history, ctx)

    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "").strip()

    def _scrub(self, text: str) -> str:
        key = self._key()
        if key:
            text = text.replace(key, "***")
        return text

    def _ask(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config:
        tried = {config_key(t.config) for t in history}
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": build_prompt(space, history, ctx)}]
        reason = ""
        for _attempt in range(self.max_retries + 1):
            answer = self._chat(messages)
            try:
                config = parse_config(space, answer)
                if config_key(config) in tried:
                    raise _BadAnswer(f"{config_key(config)} was already tried; propose a config "
                                     "that is not in the trial list")
                return config
            except _BadAnswer as exc:
                reason = str(exc)
            messages.append({"role": "assistant", "content": answer[:4000]})
            messages.append({"role": "user", "content":
                             f"That answer was rejected: {reason}. Answer again with one JSON "
                             "object holding a legal, untried config."})
        raise _BadAnswer(f"no usable config after {self.max_retries + 1} answer(s); "
                         f"last problem: {_clip(reason, MAX_REASON_CHARS)}")

    def _chat(self, messages: list[dict[str, str]]) -> str:
        """One chat-completions request; the answer's text."""
        assert self.url is not None
        body = json.dumps({"model": self.model, "messages": messages}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self.requests += 1
        deadline = time.monotonic() + self.timeout
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = self._read_capped(resp, deadline)
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            snippet = ""
            try:
                snippet = _clip(exc.read(400).decode("utf-8", "replace"), 120)
            except Exception:  # noqa: BLE001 - the body of an error is only decoration
                pass
            raise _EndpointError(f"the LLM endpoint {self.url} answered HTTP {exc.code} "
                                 f"{exc.reason}" + (f": {snippet}" if snippet else "")) from None
        except TimeoutError:
            raise _EndpointError(f"the LLM endpoint {self.url} did not answer within "
                                 f"{self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            why = exc.reason
            if isinstance(why, TimeoutError):
                raise _EndpointError(f"the LLM endpoint {self.url} did not answer within "
                                     f"{self.timeout:g} s") from None
            raise _EndpointError(f"cannot reach the LLM endpoint {self.url}: {why}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise _EndpointError(f"the request to the LLM endpoint {self.url} failed: "
                                 f"{type(exc).__name__}: {exc}") from None
        try:
            data = _loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            kind = ctype.split(";")[0].strip() or "unknown content type"
            raise _EndpointError(f"the LLM endpoint's answer is not JSON ({kind}, "
                                 f"{len(raw)} bytes)") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _EndpointError("the LLM endpoint's answer has no choices[0].message.content "
                                 "(not an OpenAI-compatible chat completion)") from None
        if not isinstance(content, str):
            raise _EndpointError("the LLM endpoint's message content is not text")
        return content

    def _read_capped(self, resp: Any, deadline: float) -> bytes:
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > MAX_RESPONSE_BYTES:
            raise _EndpointError(f"the LLM endpoint's answer is too large ({int(length)} bytes; "
                                 f"the limit is {MAX_RESPONSE_BYTES})")
        chunks: list[bytes] = []
        total = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            chunk = resp.read(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_RESPONSE_BYTES:
                raise _EndpointError(f"the LLM endpoint's answer is too large (more than "
                                     f"{MAX_RESPONSE_BYTES} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)
