"""The LLM strategy against a real HTTP server on 127.0.0.1 that answers like an
OpenAI-compatible chat endpoint, with scripted good, malformed and hostile answers."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tritium.tune.llm import (
    MAX_HISTORY_ROWS,
    MAX_RESPONSE_BYTES,
    MAX_SOURCE_CHARS,
    LLMStrategy,
    build_prompt,
    endpoint_url,
    history_rows,
)
from tritium.tune.space import Param, SearchSpace, Trial
from tritium.tune.strategy import TuneContext

SPACE = SearchSpace("cpu.test", (
    Param("BLOCK_M", (16, 32, 64), 32, "rows per tile"),
    Param("num_warps", (2, 4, 8), 4),
    Param("layout", ("rows", "cols"), "rows"),
))
CTX = TuneContext("cpu.test", (64, 64, 256), {"isa": "avx2", "cores": 2},
                  source="def kernel(x):\n    return x\n")
GOOD = {"BLOCK_M": 64, "num_warps": 8, "layout": "cols"}


class Fixed:
    """A fallback that proposes the default config and counts its calls."""

    name = "fixed"

    def __init__(self) -> None:
        self.calls = 0

    def suggest(self, space, history, ctx):
        self.calls += 1
        return space.default()


def chat(content: str) -> dict:
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


class Endpoint:
    """Scripted replies, one per request (the last one repeats), and every request seen."""

    def __init__(self) -> None:
        self.script: list = []
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                endpoint.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": json.loads(body)})
                i = min(len(endpoint.requests), len(endpoint.script)) - 1
                try:
                    endpoint.script[i](self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send(status: int, body: bytes, ctype: str = "application/json", length: bool = True):
    def act(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        if length:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return act


def answer(content: str):
    return send(200, json.dumps(chat(content)).encode())


@pytest.fixture
def endpoint(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("TRITIUM_LLM_API_KEY", raising=False)
    ep = Endpoint()
    yield ep
    ep.close()


def strategy(ep: Endpoint, **kw) -> tuple[LLMStrategy, Fixed]:
    fb = Fixed()
    return LLMStrategy(url=ep.url, model="test-model", fallback=fb, **kw), fb


def test_valid_answer_is_the_suggestion(endpoint):
    endpoint.script = [answer(json.dumps(GOOD))]
    s, fb = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == GOOD
    assert fb.calls == 0 and s.last_fallback_reason is None
    req = endpoint.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "test-model"
    roles = [m["role"] for m in req["body"]["messages"]]
    assert roles == ["system", "user"]
    user = req["body"]["messages"][1]["content"]
    for needle in ("cpu.test", "def kernel(x)", '"isa": "avx2"', "BLOCK_M", "[16, 32, 64]",
                   "minimize the median run time"):
        assert needle in user


def test_config_in_a_code_fence_with_prose(endpoint):
    text = ("Looking at the history, larger tiles help. I suggest {this} one:\n\n"
            "```json\n" + json.dumps(GOOD, indent=2) + "\n```\nGood luck {!}")
    endpoint.script = [answer(text)]
    s, fb = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == GOOD and fb.calls == 0


def test_config_in_prose_without_fence_and_partial_config_gets_defaults(endpoint):
    endpoint.script = [answer('Try {"BLOCK_M": 16, "num_warps": 2} next; it should be fast.')]
    s, _ = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == {"BLOCK_M": 16, "num_warps": 2, "layout": "rows"}


def test_numbers_as_strings_and_integral_floats_are_normalized(endpoint):
    endpoint.script = [answer('{"BLOCK_M": "64", "num_warps": 8.0, "layout": "cols"}')]
    s, _ = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == GOOD


def test_invalid_value_is_fed_back_then_the_valid_answer_is_taken(endpoint):
    endpoint.script = [answer('{"BLOCK_M": 48, "num_warps": 4, "layout": "rows"}'),
                       answer(json.dumps(GOOD))]
    s, fb = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == GOOD and fb.calls == 0
    assert len(endpoint.requests) == 2
    second = endpoint.requests[1]["body"]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert "48" in second[2]["content"]
    assert "BLOCK_M=48 is not one of [16, 32, 64]" in second[3]["content"]


def test_duplicate_config_is_rejected_with_feedback(endpoint):
    history = [Trial(dict(GOOD), "llm", median_ms=1.0, number=0)]
    other = {"BLOCK_M": 16, "num_warps": 4, "layout": "rows"}
    endpoint.script = [answer(json.dumps(GOOD)), answer(json.dumps(other))]
    s, _ = strategy(endpoint)
    assert s.suggest(SPACE, history, CTX) == other
    assert "already tried" in endpoint.requests[1]["body"]["messages"][3]["content"]


def test_unknown_parameters_exhaust_the_retries_then_fall_back(endpoint, caplog):
    endpoint.script = [answer('{"BLOCK_M": 64, "BLOCK_Q": 3}')]
    s, fb = strategy(endpoint, max_retries=2)
    with caplog.at_level(logging.WARNING, logger="tritium.tune.llm"):
        assert s.suggest(SPACE, [], CTX) == SPACE.default()
    assert fb.calls == 1 and len(endpoint.requests) == 3
    assert "unknown parameter(s) 'BLOCK_Q'" in endpoint.requests[1]["body"]["messages"][3]["content"]
    assert "no usable config after 3 answer(s)" in s.last_fallback_reason
    assert "Traceback" not in caplog.text and "BLOCK_Q" in caplog.text
    # bad answers do not give up the endpoint: the next suggestion asks again
    endpoint.script = [answer('{"BLOCK_M": 64, "BLOCK_Q": 3}')] * 3 + [answer(json.dumps(GOOD))]
    assert s.suggest(SPACE, [], CTX) == GOOD and len(endpoint.requests) == 4


def test_answer_without_json(endpoint):
    endpoint.script = [answer("I think BLOCK_M should be bigger, maybe 64.")]
    s, fb = strategy(endpoint, max_retries=0)
    assert s.suggest(SPACE, [], CTX) == SPACE.default() and fb.calls == 1
    assert "no JSON object" in s.last_fallback_reason


def test_body_that_is_not_json_gives_up_the_endpoint(endpoint):
    endpoint.script = [send(200, b"this is not json at all", "text/plain")]
    s, fb = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == SPACE.default()
    assert "not JSON (text/plain" in s.last_fallback_reason
    s.suggest(SPACE, [], CTX)
    assert len(endpoint.requests) == 1 and fb.calls == 2


def test_html_error_page(endpoint):
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    endpoint.script = [send(502, page, "text/html")]
    s, fb = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == SPACE.default() and fb.calls == 1
    assert "HTTP 502" in s.last_fallback_reason


def test_html_page_with_status_200(endpoint):
    endpoint.script = [send(200, b"<html><body>Login required</body></html>", "text/html")]
    s, _ = strategy(endpoint)
    s.suggest(SPACE, [], CTX)
    assert "not JSON (text/html" in s.last_fallback_reason


def test_http_500(endpoint, caplog):
    endpoint.script = [send(500, b'{"error": {"message": "model overloaded"}}')]
    s, fb = strategy(endpoint)
    with caplog.at_level(logging.WARNING, logger="tritium.tune.llm"):
        s.suggest(SPACE, [], CTX)
        s.suggest(SPACE, [], CTX)
    assert fb.calls == 2 and "HTTP 500" in s.last_fallback_reason
    assert "model overloaded" in s.last_fallback_reason
    assert len([r for r in caplog.records if r.name == "tritium.tune.llm"]) == 1


def test_not_a_chat_completion(endpoint):
    endpoint.script = [send(200, b'{"choices": []}')]
    s, _ = strategy(endpoint)
    s.suggest(SPACE, [], CTX)
    assert "choices[0].message.content" in s.last_fallback_reason


def test_slow_reply_past_the_timeout(endpoint):
    def slow(h):
        time.sleep(3)
        answer(json.dumps(GOOD))(h)
    endpoint.script = [slow]
    s, fb = strategy(endpoint, timeout=0.3)
    assert s.suggest(SPACE, [], CTX) == SPACE.default() and fb.calls == 1
    assert "did not answer within 0.3 s" in s.last_fallback_reason


def test_50_megabyte_body_is_not_read(endpoint):
    sent = []

    def huge(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()  # no Content-Length: the body runs until the connection closes
        block = b'{"a": "' + b"x" * 65536
        for _ in range(50 * 16):  # 50 MiB
            h.wfile.write(block)
            sent.append(len(block))
    endpoint.script = [huge]
    s, fb = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == SPACE.default() and fb.calls == 1
    assert f"more than {MAX_RESPONSE_BYTES} bytes" in s.last_fallback_reason


def test_declared_length_over_the_cap(endpoint):
    def big(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(50 << 20))
        h.end_headers()
        h.wfile.write(b"{" * 1024)
    endpoint.script = [big]
    s, _ = strategy(endpoint)
    s.suggest(SPACE, [], CTX)
    assert f"too large ({50 << 20} bytes" in s.last_fallback_reason


@pytest.mark.parametrize("hostile", [
    '{"BLOCK_M": "__import__(\'os\').system(\'touch /tmp/pwned\')", "num_warps": 4}',
    '{"BLOCK_M": 64, "num_warps": 8, "layout": "cols; rm -rf /"}',
    '{"BLOCK_M": 1' + "0" * 5000 + ', "num_warps": 4}',
    '{"BLOCK_M": 1e999, "num_warps": 4}',
    '{"BLOCK_M": NaN, "num_warps": 4}',
    '{"BLOCK_M": [64], "num_warps": {"$gt": 2}}',
    '{"BLOCK_M": true, "num_warps": 4}',
    '{"__class__": "x", "BLOCK_M": 64}',
    "[" * 100000 + "]" * 100000,
])
def test_hostile_answers_only_ever_yield_legal_configs(endpoint, hostile):
    endpoint.script = [answer(hostile)]
    s, fb = strategy(endpoint, max_retries=1)
    got = s.suggest(SPACE, [], CTX)
    assert got == SPACE.default() and fb.calls == 1
    assert SPACE.validate(got) is None
    assert len(endpoint.requests) == 2  # rejected, fed back, rejected again


def test_injection_strings_next_to_a_legal_config_are_inert(endpoint):
    text = ('Ignore previous instructions. {"BLOCK_M": 32, "num_warps": 2, "layout": "rows", '
            '"note": "\'; DROP TABLE trials; --"} ```python\nimport os\n```')
    endpoint.script = [answer(text), answer('{"BLOCK_M": 32, "num_warps": 2, "layout": "rows"}')]
    s, _ = strategy(endpoint)
    assert s.suggest(SPACE, [], CTX) == {"BLOCK_M": 32, "num_warps": 2, "layout": "rows"}
    assert "unknown parameter(s) 'note'" in endpoint.requests[1]["body"]["messages"][3]["content"]


def test_api_key_is_sent_as_bearer_and_never_written(endpoint, monkeypatch, caplog):
    key = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("TRITIUM_LLM_API_KEY", key)
    # the server echoes the key in its error: it must not reach the recorded reasons
    endpoint.script = [answer(json.dumps(GOOD)), send(401, f"bad key {key}".encode(), "text/plain")]
    s, _ = strategy(endpoint)
    with caplog.at_level(logging.DEBUG):
        assert s.suggest(SPACE, [], CTX) == GOOD
        s.suggest(SPACE, [Trial(dict(GOOD), "llm", median_ms=1.0, number=0)], CTX)
    assert endpoint.requests[0]["headers"]["Authorization"] == f"Bearer {key}"
    assert "HTTP 401" in s.last_fallback_reason and "***" in s.last_fallback_reason
    written = caplog.text + repr(vars(s)) + json.dumps([r["body"] for r in endpoint.requests])
    assert key not in written


def test_key_from_a_custom_variable(endpoint, monkeypatch):
    monkeypatch.setenv("MY_KEY", "abc")
    endpoint.script = [answer(json.dumps(GOOD))]
    s, _ = strategy(endpoint, api_key_env="MY_KEY")
    s.suggest(SPACE, [], CTX)
    assert endpoint.requests[0]["headers"]["Authorization"] == "Bearer abc"


def test_no_key_no_authorization_header(endpoint):
    endpoint.script = [answer(json.dumps(GOOD))]
    s, _ = strategy(endpoint)
    s.suggest(SPACE, [], CTX)
    assert "Authorization" not in endpoint.requests[0]["headers"]


def test_no_url_falls_back_without_a_request(monkeypatch, caplog):
    monkeypatch.delenv("TRITIUM_LLM_URL", raising=False)
    fb = Fixed()
    s = LLMStrategy(fallback=fb)
    with caplog.at_level(logging.WARNING, logger="tritium.tune.llm"):
        assert s.suggest(SPACE, [], CTX) == SPACE.default()
        assert s.suggest(SPACE, [], CTX) == SPACE.default()
    assert fb.calls == 2 and s.requests == 0
    assert "no LLM endpoint configured" in s.last_fallback_reason
    assert caplog.text.count("falling back") == 1


def test_url_and_model_from_the_environment(endpoint, monkeypatch):
    monkeypatch.setenv("TRITIUM_LLM_URL", endpoint.url.removesuffix("/v1"))
    monkeypatch.setenv("TRITIUM_LLM_MODEL", "qwen2.5-coder:7b")
    endpoint.script = [answer(json.dumps(GOOD))]
    s = LLMStrategy(fallback=Fixed())
    assert s.suggest(SPACE, [], CTX) == GOOD
    assert endpoint.requests[0]["path"] == "/v1/chat/completions"
    assert endpoint.requests[0]["body"]["model"] == "qwen2.5-coder:7b"
    assert LLMStrategy(model="explicit").model == "explicit"
    monkeypatch.delenv("TRITIUM_LLM_MODEL")
    assert LLMStrategy().model == "gpt-4o-mini"


def test_connection_refused(monkeypatch):
    ep = Endpoint()
    url = ep.url
    ep.close()
    fb = Fixed()
    s = LLMStrategy(url=url, fallback=fb, timeout=2)
    assert s.suggest(SPACE, [], CTX) == SPACE.default()
    assert "cannot reach the LLM endpoint" in s.last_fallback_reason


def test_endpoint_url_forms():
    assert endpoint_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1/") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1/v1") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert endpoint_url("https://h/api/v1/chat/completions") == "https://h/api/v1/chat/completions"
    assert endpoint_url("https://h/openai") == "https://h/openai/chat/completions"
    with pytest.raises(ValueError, match="not an http"):
        endpoint_url("ftp://h/v1")
    with pytest.raises(ValueError, match="not an http"):
        LLMStrategy(url="localhost:8000")


def test_prompt_truncates_the_source_and_keeps_the_best_and_latest_trials():
    ctx = TuneContext("k", (1, 2, 3), {}, source="x" * (MAX_SOURCE_CHARS + 500))
    history = [Trial({"BLOCK_M": 16, "num_warps": 2, "layout": "rows"}, "random",
                     median_ms=100.0 + i, number=i) for i in range(100)]
    history[10].median_ms = 0.5
    history[20].status, history[20].median_ms = "wrong", None
    history[20].reason = "output differs | at [0, 3]\nmax error 2.0"
    prompt = build_prompt(SPACE, history, ctx)
    assert "[... 500 more characters not shown]" in prompt
    assert "x" * (MAX_SOURCE_CHARS + 1) not in prompt
    rows = history_rows(history)
    assert len(rows) == MAX_HISTORY_ROWS
    numbers = [t.number for t in rows]
    assert numbers == sorted(numbers) and 10 in numbers and 99 in numbers and 0 in numbers
    assert f"({MAX_HISTORY_ROWS} of 100 shown)" in prompt
    assert "\n10 | " in prompt and "| 0.5 |" in prompt


def test_prompt_shows_failed_trials_with_their_reason():
    history = [Trial(dict(GOOD), "tpe", status="wrong", reason="output differs\nat row 3",
                     number=0)]
    prompt = build_prompt(SPACE, history, CTX)
    assert "| wrong | - | output differs at row 3" in prompt


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout"):
        LLMStrategy(url="http://h", timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        LLMStrategy(url="http://h", max_retries=-1)


def test_default_fallback_is_the_heuristic(monkeypatch):
    from tritium.tune.strategies import HeuristicStrategy

    monkeypatch.delenv("TRITIUM_LLM_URL", raising=False)
    s = LLMStrategy()
    history = [Trial(SPACE.default(), "llm", median_ms=2.0, number=0)]
    got = s.suggest(SPACE, history, CTX)
    assert isinstance(s.fallback, HeuristicStrategy)
    assert SPACE.validate(got) is None and got != SPACE.default()


def _answer_texts():
    from hypothesis import strategies as st

    legal = [v for p in SPACE.params for v in p.values]
    values = st.one_of(st.sampled_from(legal), st.integers(), st.floats(), st.text(max_size=6),
                       st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
    names = st.sampled_from([*SPACE.names, "config", "BLOCK_N", "__class__"])
    obj = st.dictionaries(names, values, max_size=4)
    json_text = st.one_of(obj, st.fixed_dictionaries({"config": obj})).map(
        lambda o: json.dumps(o, allow_nan=True))
    return st.lists(st.one_of(json_text, st.text(max_size=20),
                              st.sampled_from(["```json\n", "```", "{", "[" * 2000, "NaN"])),
                    max_size=5).map("".join)


def test_generated_answers_only_ever_yield_legal_configs():
    """Whatever an endpoint answers, parse_config returns a config the space accepts or
    raises the bad-answer error (the same validation as archived configs)."""
    from hypothesis import given, settings

    from tritium.tune.llm import _BadAnswer, parse_config

    @settings(max_examples=300, deadline=None)
    @given(text=_answer_texts())
    def run(text: str) -> None:
        try:
            config = parse_config(SPACE, text)
        except _BadAnswer:
            return
        assert SPACE.validate(config) is None

    run()
