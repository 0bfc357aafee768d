"""`tritium import hf DIR`: a local Hugging Face checkpoint of a ternary language model as a
Tritium program (`.tri`) and a frozen Tritium checkpoint.

Architectures read (``config.json`` + ``*.safetensors``, never pickle; the safetensors files
are read tensor by tensor, each ternary weight packed as soon as it is read, so the import
holds the packed model and one weight in float32 at a time):

* ``BitNetForCausalLM`` (``model_type: "bitnet"``): RMSNorm before attention and MLP, RoPE
  (Llama's rotate-half form), grouped-query attention, ``attn_sub_norm`` on the attention
  output before ``o_proj``, a gated MLP with ReLU² (``hidden_act: "relu2"``; ``"silu"``
  too) and ``ffn_sub_norm`` before ``down_proj``; every projection is a BitNet b1.58
  linear: per-token int8 absmax activations and absmean ternary weights.
* ``LlamaForCausalLM`` (``model_type: "llama"``) whose ``quantization_config`` is
  transformers' BitNet one (``quant_method: "bitnet"``): the same without the sub-norms,
  SiLU gating, optional biases.

The weights come in the forms transformers' BitNet integration reads (its
``integrations/bitnet.py``), chosen by ``quantization_config``:

* float weights (bf16/f16/f32; ``quantization_mode: "online"``, or no quantization config
  for ``model_type: "bitnet"``): ternarized here as transformers' ``WeightQuant`` does,
  in float32: ``s = 1 / max(mean|W|, 1e-5)``, ``trits = clamp(round(W * s), -1, 1)``,
  ``W_q = trits / s`` (so the Tritium scale is ``1 / s``, one per tensor);
* ``linear_class: "bitlinear"``, ``quantization_mode: "offline"``: ``weight`` is uint8
  ``[ceil(out/4), in]``, four trits a byte along the output dim, value ``code - 1``, code
  ``i`` of row ``r`` in bits ``2i..2i+1`` holding output row ``i * rows + r``; the layer
  computes ``y / weight_scale`` (``W = trits / weight_scale``);
* ``linear_class: "autobitlinear"``, ``"offline"``: ``weight`` holds the trits as floats,
  or packed as above; the layer computes ``y * weight_scale`` (``W = trits *
  weight_scale``, a bias scaled with it).

The output program is generated from the config in the declarative dialect (one `block`
for the decoder layer, repeated; `TernaryLinear { quantizer: "absmean", act_quant:
"int8" }` for the projections, `RMSNorm`, `Embedding`, `rope`, `attention`; grouped-query
attention repeats each k/v head with `stack`). The checkpoint is written by
:func:`tritium.runtime.save_checkpoint` with the program text, so `tritium` rebuilds the
model from the checkpoint alone (:func:`~tritium.driver.models.model_from_checkpoint`).

Both the config and the tensors are untrusted: sizes, dtypes, shapes and values are
checked before anything is allocated from them, and every problem is an
:class:`HFImportError` with a message naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..vocab import FORMATS
from .hf_program import program_source, reserved_names
from .hf_tokenizer import HFImportError, read_json_object

__all__ = ["HFImportError", "HFArch", "import_hf", "read_hf_config", "program_source"]

MAX_CONFIG_BYTES = 1 << 20
MAX_SHARDS = 4096
MAX_VOCAB = 1 << 22
MAX_HIDDEN = 1 << 16
MAX_LAYERS = 1024
MAX_HEADS = 1024
#: the metadata key holding the architecture's hyperparameters (what GGUF export reads)
ARCH_KEY = "tritium.hf_arch"
FLOAT_DTYPES = ("F32", "BF16", "F16")


@dataclass
class HFArch:
    """The hyperparameters of the imported architecture (validated)."""

    model_type: str                 # "bitnet" or "llama"
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    eps: float
    rope_theta: float
    act: str                        # "relu2" or "silu"
    sub_norms: bool
    attn_bias: bool = False
    mlp_bias: bool = False
    tie: bool = False
    weights: str = "online"         # "online", "bitlinear" or "autobitlinear" (offline forms)
    lm_head_ternary: bool = False
    max_positions: int = 2048
    bos: int | None = None
    eos: int | None = None
    name: str = "BitNetForCausalLM"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str) -> HFArch:
        """The record :data:`ARCH_KEY` holds, validated again (a checkpoint is untrusted)."""
        from ..cachedir import parse_json
        try:
            d = parse_json(text, max_depth=2)
        except ValueError as exc:
            raise HFImportError(f"{where}: `{ARCH_KEY}` is not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise HFImportError(f"{where}: `{ARCH_KEY}` is not a JSON object")
        if "max_positions" not in d:    # the context length GGUF export writes: not guessed
            raise HFImportError(f"{where}: `{ARCH_KEY}` has no `max_positions`")
        cfg = {
            "model_type": d.get("model_type"), "vocab_size": d.get("vocab"),
            "hidden_size": d.get("hidden"), "num_hidden_layers": d.get("layers"),
            "num_attention_heads": d.get("heads"), "num_key_value_heads": d.get("kv_heads"),
            "head_dim": d.get("head_dim"), "intermediate_size": d.get("ffn"),
            "rms_norm_eps": d.get("eps"), "rope_theta": d.get("rope_theta"),
            "hidden_act": d.get("act"), "attention_bias": d.get("attn_bias", False),
            "mlp_bias": d.get("mlp_bias", False), "tie_word_embeddings": d.get("tie", False),
            "max_position_embeddings": d["max_positions"],
            "bos_token_id": d.get("bos"), "eos_token_id": d.get("eos"),
            "architectures": [d.get("name")],
        }
        if d.get("model_type") == "llama" or d.get("weights") != "online":
            cfg["quantization_config"] = {
                "quant_method": "bitnet",
                "linear_class": "bitlinear" if d.get("weights") == "bitlinear"
                else "autobitlinear",
                "quantization_mode": "online" if d.get("weights") == "online" else "offline",
                "modules_to_not_convert": [] if d.get("lm_head_ternary") else ["lm_head"],
            }
        return _arch_from_config(cfg, where)


# ----------------------------------------------------------------------------- config

def _cfg_int(cfg: dict[str, Any], key: str, where: str, lo: int, hi: int,
             default: int | None = None) -> int:
    v = cfg.get(key, default)
    if v is None:
        raise HFImportError(f"{where}: `{key}` is missing", help="a config.json written by "
                            "transformers' save_pretrained has it")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise HFImportError(f"{where}: `{key}` must be a whole number from {lo} to {hi}, "
                            f"got {str(v)[:40]!r}")
    return v


def _cfg_float(cfg: dict[str, Any], key: str, where: str, default: float | None = None,
               lo: float = 0.0, hi: float = 1e12) -> float:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or not lo < v <= hi:
        raise HFImportError(f"{where}: `{key}` must be a number in ({lo:g}, {hi:g}], "
                            f"got {str(v)[:40]!r}")
    return float(v)


def _cfg_bool(cfg: dict[str, Any], key: str, where: str, default: bool) -> bool:
    v = cfg.get(key, default)
    if not isinstance(v, bool):
        raise HFImportError(f"{where}: `{key}` must be true or false, got {str(v)[:40]!r}")
    return v


def _token_id(cfg: dict[str, Any], key: str, vocab: int) -> int | None:
    v = cfg.get(key)
    if isinstance(v, list) and v:
        v = v[0]
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab:
        return v
    return None


def _rope_theta(cfg: dict[str, Any], where: str) -> float:
    params = cfg.get("rope_parameters")
    scaling = cfg.get("rope_scaling")
    if params is not None and not isinstance(params, dict):
        raise HFImportError(f"{where}: `rope_parameters` must be an object")
    if scaling is not None and not isinstance(scaling, dict):
        raise HFImportError(f"{where}: `rope_scaling` must be an object or null")
    kind = (params or {}).get("rope_type", (scaling or {}).get("rope_type",
                                                              (scaling or {}).get("type")))
    if kind not in (None, "default"):
        raise HFImportError(f"{where}: RoPE scaling {str(kind)[:40]!r} is not supported",
                            help="only plain RoPE (`rope_type: \"default\"`) is imported")
    src = params if params and "rope_theta" in params else cfg
    return _cfg_float(src, "rope_theta", where, 10000.0)


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def _arch_from_config(cfg: dict[str, Any], where: str) -> HFArch:
    mt = cfg.get("model_type")
    if mt not in ("bitnet", "llama"):
        raise HFImportError(f"{where}: model_type {str(mt)[:40]!r} is not supported",
                            help="`tritium import hf` reads BitNetForCausalLM (model_type "
                                 "\"bitnet\") and BitLinear-quantized Llama checkpoints")
    q = cfg.get("quantization_config")
    if q is not None and not isinstance(q, dict):
        raise HFImportError(f"{where}: `quantization_config` must be an object")
    if q is None and mt == "llama":
        raise HFImportError(f"{where}: this Llama checkpoint is not BitLinear-quantized (no "
                            "`quantization_config`), so its weights are not ternary",
                            help="import Llama checkpoints whose quantization_config has "
                                 "quant_method \"bitnet\"")
    weights = "online"
    lm_head_ternary = False
    if q is not None:
        if q.get("quant_method") != "bitnet":
            raise HFImportError(f"{where}: quant_method {str(q.get('quant_method'))[:40]!r} "
                                "is not supported", help="only transformers' BitNet "
                                                         "quantization (\"bitnet\") is read")
        if q.get("use_rms_norm", False):
            raise HFImportError(f"{where}: `use_rms_norm: true` (an RMSNorm inside every "
                                "BitLinear) is not supported")
        cls_ = q.get("linear_class", "bitlinear")
        mode = q.get("quantization_mode", "offline")
        if cls_ not in ("bitlinear", "autobitlinear") or mode not in ("online", "offline"):
            raise HFImportError(f"{where}: unknown BitNet linear_class/quantization_mode "
                                f"{str(cls_)[:30]!r}/{str(mode)[:30]!r}")
        if cls_ == "bitlinear" and mode == "online":
            raise HFImportError(f"{where}: linear_class \"bitlinear\" has no online mode")
        weights = "online" if mode == "online" else cls_
        skip = q.get("modules_to_not_convert")
        if skip is None:
            skip = ["lm_head"]          # transformers' default: the output embeddings
        if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
            raise HFImportError(f"{where}: `modules_to_not_convert` must be a list of names")
        lm_head_ternary = "lm_head" not in skip
        others = [s for s in skip if s not in ("lm_head", "model.embed_tokens",
                                               "embed_tokens")]
        if others:
            raise HFImportError(f"{where}: modules_to_not_convert {others[:3]} keeps "
                                "decoder projections in full precision; not supported")
    vocab = _cfg_int(cfg, "vocab_size", where, 1, MAX_VOCAB)
    hidden = _cfg_int(cfg, "hidden_size", where, 2, MAX_HIDDEN)
    layers = _cfg_int(cfg, "num_hidden_layers", where, 1, MAX_LAYERS)
    heads = _cfg_int(cfg, "num_attention_heads", where, 1, MAX_HEADS)
    kv = _cfg_int(cfg, "num_key_value_heads", where, 1, heads, default=heads)
    if heads % kv:
        raise HFImportError(f"{where}: num_attention_heads ({heads}) is not a multiple of "
                            f"num_key_value_heads ({kv})")
    head_dim = cfg.get("head_dim") or hidden // heads
    head_dim = _cfg_int({"head_dim": head_dim}, "head_dim", where, 2, MAX_HIDDEN)
    if head_dim % 2:
        raise HFImportError(f"{where}: head_dim {head_dim} is odd; RoPE needs it even")
    act = cfg.get("hidden_act", "relu2" if mt == "bitnet" else "silu")
    if act not in ("relu2", "silu"):
        raise HFImportError(f"{where}: hidden_act {str(act)[:40]!r} is not supported",
                            help="relu2 and silu are")
    sub_norms = mt == "bitnet"
    if sub_norms and heads * head_dim != hidden:
        raise HFImportError(f"{where}: BitNet's attn_sub_norm needs num_attention_heads * "
                            f"head_dim ({heads * head_dim}) = hidden_size ({hidden})")
    if cfg.get("pretraining_tp", 1) not in (1, None):
        raise HFImportError(f"{where}: pretraining_tp != 1 is not supported")
    name = cfg.get("architectures", [None])
    name = name[0] if isinstance(name, list) and name else None
    if not (isinstance(name, str) and _NAME.fullmatch(name)) or name in reserved_names():
        # a name the program already uses (`attention`, `RMSNorm`, a keyword) would change it
        name = "BitNetForCausalLM" if mt == "bitnet" else "LlamaForCausalLM"
    return HFArch(
        model_type=mt, vocab=vocab, hidden=hidden, layers=layers, heads=heads, kv_heads=kv,
        head_dim=head_dim, ffn=_cfg_int(cfg, "intermediate_size", where, 1, 1 << 20),
        eps=_cfg_float(cfg, "rms_norm_eps", where, 1e-5 if mt == "bitnet" else 1e-6,
                       hi=1.0),
        rope_theta=_rope_theta(cfg, where), act=act, sub_norms=sub_norms,
        attn_bias=_cfg_bool(cfg, "attention_bias", where, False),
        # transformers' BitNetMLP has no biases whatever the config says (LlamaMLP reads it)
        mlp_bias=_cfg_bool(cfg, "mlp_bias", where, False) and mt == "llama",
        tie=_cfg_bool(cfg, "tie_word_embeddings", where, False),
        weights=weights, lm_head_ternary=lm_head_ternary,
        max_positions=_cfg_int(cfg, "max_position_embeddings", where, 1, 1 << 24, 2048),
        bos=_token_id(cfg, "bos_token_id", vocab), eos=_token_id(cfg, "eos_token_id", vocab),
        name=name, extra={"special": {k: cfg.get(k) for k in ("bos_token_id", "eos_token_id",
                                                              "pad_token_id")}})


def read_hf_config(directory: str | Path) -> HFArch:
    """The validated architecture of the checkpoint directory's config.json."""
    path = Path(directory) / "config.json"
    cfg = read_json_object(path, MAX_CONFIG_BYTES)
    if cfg is None:
        raise HFImportError(f"{path} does not exist", help="pass the directory that "
                            "save_pretrained wrote (config.json and *.safetensors)")
    return _arch_from_config(cfg, str(path))


# ----------------------------------------------------------------------------- tensors

def _shards(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if p.name.endswith(".safetensors"))
    if not files:
        has_bin = any(p.suffix in (".bin", ".pt", ".pth") for p in directory.iterdir())
        raise HFImportError(f"{directory} holds no *.safetensors file",
                            help="pickled weights (.bin/.pt) are never read: save with "
                                 "safe_serialization (the default of save_pretrained)"
                            if has_bin else None)
    if len(files) > MAX_SHARDS:
        raise HFImportError(f"{directory} holds more than {MAX_SHARDS} safetensors files")
    for p in files:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise HFImportError(f"{p} is not a regular file")
    return files


class _Shards:
    """The directory's safetensors files, their framing validated from each header (by the
    runtime's checkpoint reader): every tensor's file, dtype and shape known up front, each
    tensor's data read only when :meth:`get` asks for it, straight into its own tensor (never
    mapped nor held whole: the import holds one weight in its stored precision at a time). A
    malformed file or a name in two files is an error."""

    def __init__(self, directory: Path) -> None:
        from ..runtime.checkpoint_format import CheckpointError
        from ..runtime.checkpoint_read import _Stored

        self.files: dict[str, Any] = {}
        self.dtypes: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._open: list[Any] = []
        try:
            for p in _shards(directory):
                try:
                    f = _Stored(p, plain=True)
                except CheckpointError as exc:
                    raise HFImportError(f"{p} is not a valid safetensors file: "
                                        f"{exc.problem[:200]}") from None
                self._open.append(f)
                for name, entry in f.header.items():
                    if name in self.files:
                        raise HFImportError(f"{p}: tensor `{name[:100]}` is also in "
                                            "another file")
                    self.dtypes[name] = entry["dtype"]
                    self.shapes[name] = tuple(entry["shape"])
                    self.files[name] = f
        except BaseException:
            self.close()
            raise

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def __iter__(self):
        return iter(self.files)

    def get(self, name: str) -> Any:
        """The tensor's data, read now (a fresh tensor of its stored dtype)."""
        from ..runtime.checkpoint_format import CheckpointError
        f = self.files[name]
        try:
            return f.read(name)
        except CheckpointError as exc:
            raise HFImportError(f"{f.path}: tensor `{name[:100]}` cannot be read: "
                                f"{exc.problem[:200]}") from None

    def close(self) -> None:
        for f in self._open:
            f.close()
        self._open.clear()

    def __enter__(self) -> _Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- conversion

_TERNARY = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _hf_names(arch: HFArch, i: int) -> dict[str, tuple[str, str]]:
    """Our module name in block i -> (HF prefix, kind) with kind "t" (ternary) or "n"."""
    p = f"model.layers.{i}."
    names = {
        "input_layernorm": (p + "input_layernorm", "n"),
        "post_attention_layernorm": (p + "post_attention_layernorm", "n"),
        **{k: (p + "self_attn." + k, "t") for k in ("q_proj", "k_proj", "v_proj", "o_proj")},
        **{k: (p + "mlp." + k, "t") for k in ("gate_proj", "up_proj", "down_proj")},
    }
    if arch.sub_norms:
        names["attn_sub_norm"] = (p + "self_attn.attn_sub_norm", "n")
        names["ffn_sub_norm"] = (p + "mlp.ffn_sub_norm", "n")
    return names


def _linear_shape(arch: HFArch, name: str) -> tuple[int, int]:
    h, q, kv, f = arch.hidden, arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim, \
        arch.ffn
    return {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
            "gate_proj": (f, h), "up_proj": (f, h), "down_proj": (h, f),
            "lm_head": (arch.vocab, h)}[name]


def _norm_size(arch: HFArch, name: str) -> int:
    return {"attn_sub_norm": arch.heads * arch.head_dim, "ffn_sub_norm": arch.ffn}.get(
        name, arch.hidden)


def unpack_hf_trits(packed: Any, out_features: int) -> Any:
    """transformers' BitNet packing undone: uint8 ``[rows, in]`` -> int8 trits
    ``[out_features, in]`` (output row ``i * rows + r`` is bits ``2i..2i+1`` of row ``r``,
    minus 1). A code 3 (no trit) is an error."""
    import torch
    rows = packed.shape[0]
    parts = [((packed >> (2 * i)) & 3) for i in range(4)]
    codes = torch.cat(parts, dim=0)[:out_features]
    if bool((codes == 3).any()):
        raise ValueError("a packed weight holds the code 3, which is no trit")
    if rows * 4 < out_features:
        raise ValueError("too few packed rows")
    return codes.to(torch.int8) - 1


def absmean_hf(w: Any) -> tuple[Any, Any]:
    """transformers' BitNet ``WeightQuant`` in float32: trits and the scale ``1/s``."""
    import torch
    return _absmean_owned(w.to(torch.float32, copy=True))


def _absmean_owned(w: Any) -> tuple[Any, Any]:
    """:func:`absmean_hf` of a float32 tensor the caller hands over (it is overwritten: the
    same operations in place, so one float32 copy of the weight at a time)."""
    import torch
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    trits = w.mul_(s).round_().clamp_(-1, 1).to(torch.int8)
    return trits, (1.0 / s).reshape(1)


#: the float dtypes kept as stored where a tensor may stay in 16 bits (the embeddings and a
#: tied output head: widening bf16/f16 to float32 is exact, so storing them widened only
#: doubles their memory)
HALF_DTYPES = ("BF16", "F16")


class _Reader:
    """Reads each tensor of the checkpoint when asked for it, checked against the config
    (name, dtype, shape before the data is read; finite values), and remembers which were
    used."""

    def __init__(self, directory: Path, shards: _Shards):
        self.dir = directory
        self.t = shards
        self.dtypes = shards.dtypes
        self.used: set[str] = set()

    def _check(self, name: str, shape: tuple[int, ...], kinds: tuple[str, ...]) -> str:
        if name not in self.t:
            raise HFImportError(f"{self.dir}: tensor `{name}` is missing",
                                help="is config.json the one these weights were saved with?")
        dt = self.dtypes[name]
        if dt not in kinds:
            raise HFImportError(f"{self.dir}: tensor `{name}` is {dt}, expected "
                                f"{' or '.join(kinds)}")
        if tuple(self.t.shapes[name]) != tuple(shape):
            raise HFImportError(f"{self.dir}: tensor `{name}` has shape "
                                f"{list(self.t.shapes[name])}, expected {list(shape)} from "
                                "config.json")
        self.used.add(name)
        return dt

    def take(self, name: str, shape: tuple[int, ...], kinds: tuple[str, ...] = FLOAT_DTYPES,
             keep_half: bool = False):
        """The tensor, float ones as float32 (`keep_half`: bf16 and f16 ones as stored)."""
        import torch
        dt = self._check(name, shape, kinds)
        t = self.t.get(name)
        if dt in FLOAT_DTYPES:
            if not (keep_half and dt in HALF_DTYPES):
                t = t.to(torch.float32)
            if not bool(torch.isfinite(t).all()):
                raise HFImportError(f"{self.dir}: tensor `{name}` holds NaN or infinity")
        return t

    def has(self, name: str) -> bool:
        return name in self.t

    def ternary(self, arch: HFArch, prefix: str, shape: tuple[int, int], bias: bool,
                fmt: str = "t2") -> tuple[Any, Any, Any]:
        """(trits [out, in] packed in `fmt` (uint8, the kernels' layout), scale float32 [1],
        bias float32 [out] or None): one weight read and packed at a time."""
        from ..runtime.packing import pack_ternary
        trits, scale, b = self._trits(arch, prefix, shape, bias)
        packed = pack_ternary(trits, fmt).data
        del trits
        return packed, scale, b

    def _trits(self, arch: HFArch, prefix: str, shape: tuple[int, int], bias: bool
               ) -> tuple[Any, Any, Any]:
        """(trits int8 [out, in], scale float32 [1], bias float32 [out] or None)."""
        import torch
        out_f, in_f = shape
        wname = prefix + ".weight"
        b = self.take(prefix + ".bias", (out_f,)) if bias else None
        if arch.weights == "online":
            w = self.take(wname, shape)       # a fresh float32 tensor: ternarized in place
            trits, scale = _absmean_owned(w)
            return trits, scale, b
        ws = self.take(prefix + ".weight_scale", (1,))
        if not float(ws[0]) > 0:
            raise HFImportError(f"{self.dir}: `{prefix}.weight_scale` must be positive, got "
                                f"{float(ws[0])}")
        rows = -(-out_f // 4)
        if self.has(wname) and self.dtypes.get(wname) == "U8":
            packed = self.take(wname, (rows, in_f), ("U8",))
            try:
                trits = unpack_hf_trits(packed, out_f)
            except ValueError as exc:
                raise HFImportError(f"{self.dir}: `{wname}`: {exc}") from None
        elif arch.weights == "autobitlinear":
            w = self.take(wname, shape)
            if not bool(((w == -1) | (w == 0) | (w == 1)).all()):
                raise HFImportError(f"{self.dir}: `{wname}` of an offline autobitlinear "
                                    "checkpoint must hold only -1, 0 and 1")
            trits = w.to(torch.int8)
        else:
            self.take(wname, (rows, in_f), ("U8",))      # raises the right error
            raise AssertionError("unreachable")
        if arch.weights == "bitlinear":
            scale = (1.0 / ws.to(torch.float64)).to(torch.float32)
        else:
            scale = ws.to(torch.float32).clone()
            if b is not None:
                b = b * scale
        if not (math.isfinite(float(scale[0])) and float(scale[0]) > 0):
            # 1 / 1e-45 overflows float32: the layer would compute inf/NaN
            raise HFImportError(f"{self.dir}: `{prefix}.weight_scale` {float(ws[0])!r} gives "
                                f"the layer scale {float(scale[0])!r}, not a finite positive "
                                "float32")
        if b is not None and not bool(torch.isfinite(b).all()):
            raise HFImportError(f"{self.dir}: `{prefix}.bias` times `{prefix}.weight_scale` "
                                "is not finite")
        return trits, scale.reshape(1), b


def convert_state(arch: HFArch, directory: Path, shards: _Shards, fmt: str = "t2"
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(float tensors by our state_dict name, ternary layers by module name -> (trits packed
    in `fmt`, scale, bias)), every tensor checked against the config. The tensors are read one
    at a time and each ternary weight is packed as soon as it is read; the embeddings and the
    output head keep a 16-bit stored dtype (:data:`HALF_DTYPES`), every other float tensor
    becomes float32."""
    r = _Reader(directory, shards)
    floats: dict[str, Any] = {}
    tern: dict[str, tuple[Any, Any, Any]] = {}
    floats["embed_tokens.weight"] = r.take("model.embed_tokens.weight", (arch.vocab,
                                                                         arch.hidden),
                                           keep_half=True)
    for i in range(arch.layers):
        for ours, (hf, kind) in _hf_names(arch, i).items():
            if kind == "n":
                floats[f"layers.{i}.{ours}.weight"] = r.take(hf + ".weight",
                                                             (_norm_size(arch, ours),))
            else:
                bias = arch.mlp_bias if ours in ("gate_proj", "up_proj", "down_proj") \
                    else arch.attn_bias
                tern[f"layers.{i}.{ours}"] = r.ternary(arch, hf, _linear_shape(arch, ours),
                                                        bias, fmt)
    floats["norm.weight"] = r.take("model.norm.weight", (arch.hidden,))
    if arch.lm_head_ternary:
        if not r.has("lm_head.weight") and arch.tie:
            raise HFImportError(f"{directory}: a ternary lm_head tied to the embeddings is "
                                "not supported")
        tern["lm_head"] = r.ternary(arch, "lm_head", _linear_shape(arch, "lm_head"), False,
                                    fmt)
    elif r.has("lm_head.weight"):
        floats["lm_head.weight"] = r.take("lm_head.weight", (arch.vocab, arch.hidden),
                                          keep_half=True)
    elif arch.tie:
        floats["lm_head.weight"] = floats["embed_tokens.weight"]
    else:
        r.take("lm_head.weight", (arch.vocab, arch.hidden))      # raises: missing
    left = sorted(n for n in shards if n not in r.used
                  and not n.endswith("rotary_emb.inv_freq"))
    if left:
        raise HFImportError(f"{directory}: {len(left)} tensor(s) the architecture does not "
                            f"have, e.g. `{left[0][:100]}`",
                            help="is config.json the one these weights were saved with?")
    return floats, tern


# ----------------------------------------------------------------------------- import

def _check_dir(directory: str | os.PathLike[str]) -> Path:
    from ..argcheck import _name_problem, show_path
    text = os.fspath(directory)
    problem = _name_problem(text, output=False)
    if problem:
        raise HFImportError(f"{show_path(text)} {problem}", usage=True)
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise HFImportError(f"{show_path(text)} does not exist", usage=True) from None
    except OSError as exc:
        raise HFImportError(f"{show_path(text)}: {exc.strerror or exc}", usage=True) from None
    if not stat.S_ISDIR(st.st_mode):
        raise HFImportError(f"{show_path(text)} is not a directory",
                            help="pass the directory that save_pretrained wrote", usage=True)
    return Path(text)


def build_frozen(arch: HFArch, source: str, program_file: str, floats: dict[str, Any],
                 tern: dict[str, Any], fmt: str = "t2"):
    """The compiled program's model with the imported weights (`tern`: packed in `fmt`),
    frozen. The model takes the tensors themselves (no copy); 16-bit embeddings and output
    head stay 16-bit (:mod:`tritium.runtime.layers.half`), a tied head sharing the
    embeddings' table."""
    import torch

    from ..runtime import TernaryLinear
    from ..runtime.layers.half import keep_half
    from .compile import compile_program
    from .models import _instantiate

    compiled = compile_program(source=source, with_ir=False, file=program_file)
    with torch.device("meta"):       # nothing allocated or initialized yet
        model, _ = _instantiate(compiled, arch.name, {})
    for name, mod in model.named_modules():
        if isinstance(mod, TernaryLinear):
            if name not in tern:
                raise AssertionError(f"the program has a ternary layer {name} the "
                                     "checkpoint lacks")
            # one layer's float weight at a time (uninitialized), dropped by freezing
            mod.to_empty(device="cpu").freeze_skeleton(fmt)
    state: dict[str, torch.Tensor] = dict(floats)
    for name, (packed, scale, bias) in tern.items():
        state[f"{name}.weight_packed"] = packed
        state[f"{name}.weight_scale"] = scale.to(torch.float32)
        if bias is not None:
            state[f"{name}.bias"] = bias.to(torch.float32)
    keep_half(model, state)
    model = model.to_empty(device="cpu")     # (uninitialized: every tensor is assigned next)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def import_hf(directory: str | Path, out: str | Path | None = None,
              program: str | Path | None = None, fmt: str = "t2") -> dict[str, Any]:
    """Import the Hugging Face checkpoint directory; write the checkpoint (default
    ``runs/<dir name>/model.safetensors``), its ternary weights packed in `fmt` (``"t2"`` or
    ``"t1.6"``), and the program (default ``model.tri`` beside it). Returns what was
    written."""
    from ..argcheck import ArgError, check_output_file
    from ..cachedir import atomic_write_text
    from ..runtime import save_checkpoint
    from .models import RunInfo

    if fmt not in FORMATS:
        raise HFImportError(f"unknown packed format {fmt!r}: use one of "
                            f"{', '.join(FORMATS)}", usage=True)
    d = _check_dir(directory)
    ckpt = Path(out) if out is not None else Path("runs") / (d.resolve().name or "hf") / \
        "model.safetensors"
    try:        # the words as given (a trailing slash says "directory")
        check_output_file(os.fspath(out) if out is not None else ckpt, "--out")
        prog = Path(program) if program is not None else ckpt.with_suffix(".tri")
        check_output_file(os.fspath(program) if program is not None else prog, "--program")
    except ArgError as exc:
        raise HFImportError(exc.message, usage=True) from None
    if ckpt.name.endswith(".safetensors") and ckpt.resolve().parent == d.resolve():
        # the weights are every *.safetensors of the directory: the checkpoint would replace
        # the file it is read from, or be read as one more shard by the next import
        from ..argcheck import show_path
        raise HFImportError(f"--out {show_path(os.fspath(ckpt))} is in the directory being "
                            "imported, among its weights",
                            help="write the checkpoint elsewhere (default runs/<DIR "
                                 "name>/model.safetensors)", usage=True)
    arch = read_hf_config(d)
    with _Shards(d) as shards:
        floats, tern = convert_state(arch, d, shards, fmt)
        hf_head = "lm_head.weight" in shards
    source = program_source(arch, d.resolve().name)
    n_tern = sum(math.prod(_linear_shape(arch, n.rpartition(".")[2])) for n in tern)
    n_float = sum(int(t.numel()) for k, t in floats.items()
                  if not (k == "lm_head.weight" and arch.tie and not hf_head))
    model = build_frozen(arch, source, str(prog), floats, tern, fmt)
    del floats, tern
    info = RunInfo(source=source, file=str(prog), entry=arch.name, dataset="text",
                   input_shape=None, num_classes=arch.vocab, variant="ternary", format=fmt)
    more = {"tritium.task": "lm", ARCH_KEY: arch.to_json(),
            "tritium.imported_from": "huggingface"}
    from .hf_tokenizer import generation_record, read_hf_tokenizer
    from .models import GENERATION_KEY
    tok_json, tok_note, template = read_hf_tokenizer(d, arch.vocab)
    if tok_json is not None:
        more["tritium.tokenizer"] = tok_json
    more[GENERATION_KEY], gen_note = generation_record(d, arch, template)
    extra = info.to_extra(**more)
    prog.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(prog, source)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, model, source_hash=info.source_hash, extra=extra,
                    float16_scales=False)
    return {"checkpoint": str(ckpt), "program": str(prog), "arch": arch,
            "ternary_params": n_tern, "float_params": n_float,
            "bytes": ckpt.stat().st_size, "model": model, "tokenizer": tok_note,
            "generation": gen_note}


# ----------------------------------------------------------------------------- CLI

def _error(message: str, help: str | None = None) -> None:  # noqa: A002
    from rich.console import Console
    from rich.markup import escape
    err = Console(stderr=True, highlight=False)
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if help:
        err.print(f"  [bold]help:[/] {escape(help)}", soft_wrap=True)


def cmd_import(args: Any) -> int:
    from .compile import CompileError
    from .console import EXIT_FAIL, EXIT_OK, EXIT_USAGE
    try:
        r = import_hf(args.directory, args.out, args.program, args.format)
    except HFImportError as exc:
        _error(exc.message, exc.help)
        return EXIT_USAGE if exc.usage else EXIT_FAIL
    except CompileError as exc:   # the program written for the architecture: our fault
        _error("the .tri program written for this architecture does not compile: "
               + "; ".join(f"{d.code} {d.message}" for d in exc.diagnostics),
               "this is a Tritium bug: please report it with the checkpoint's config.json")
        return EXIT_FAIL
    a: HFArch = r["arch"]
    print(f"imported {a.name}: {a.layers} layers, hidden {a.hidden}, {a.heads} heads "
          f"({a.kv_heads} k/v), MLP {a.ffn}, vocabulary {a.vocab}; "
          f"{r['ternary_params']:,} ternary and {r['float_params']:,} float parameters "
          f"(weights: {a.weights})")
    print(f"tokenizer: {r['tokenizer']}; generation: {r['generation']}")
    print(f"wrote {r['checkpoint']} ({r['bytes']:,} bytes; ternary weights packed "
          f"{args.format}) and {r['program']}")
    return EXIT_OK


def register(sub: Any, formatter_class: Any) -> None:
    """Add `tritium import` to the subcommands."""
    from ..argcheck import path_arg
    p = sub.add_parser(
        "import", help="import a Hugging Face ternary LM checkpoint (BitNet, BitLinear Llama)",
        formatter_class=formatter_class,
        description="Read a local Hugging Face checkpoint directory (config.json and "
                    "*.safetensors; never pickle) of BitNetForCausalLM or a BitLinear-"
                    "quantized Llama, write the .tri program of its architecture and a "
                    "frozen Tritium checkpoint. Nothing is downloaded.",
        epilog="examples:\n  tritium import hf ./bitnet-b1.58-2B-4T --out runs/bitnet/model."
               "safetensors\n  tritium import hf ./tiny --program tiny.tri\n"
               "  tritium import hf ./bitnet-b1.58-2B-4T --format t1.6   # 1.6 bits a weight")
    p.add_argument("source", choices=("hf",), help="the checkpoint's kind: hf (Hugging Face)")
    p.add_argument("directory", metavar="DIR", type=path_arg("input-dir"))
    p.add_argument("--out", default=None, metavar="CKPT", type=path_arg("output-file"),
                   help="the checkpoint to write (default runs/<DIR name>/model.safetensors)")
    p.add_argument("--program", default=None, metavar="OUT.tri", type=path_arg("output-file"),
                   help="the .tri program to write (default: beside the checkpoint)")
    p.add_argument("--format", choices=FORMATS, default="t2",
                   help="packing of the ternary weights in memory (default t2: 2 bits a "
                        "weight; t1.6: 1.6 bits, and for a model larger than the CPU's caches about "
                        "as fast as t2 or faster: docs/training.md)")
    p.set_defaults(func=cmd_import)
