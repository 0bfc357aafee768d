"""transformers' side of tests/unit/driver/test_hf_import.py, run in a subprocess of its own
(transformers' BitNet layers are @torch.compile'd: importing them loads torch._dynamo and
Triton's compiler, which must not happen in a pytest worker that later runs Triton's
interpreter).

    python hf_reference.py SPEC.json

SPEC: {"arch": "bitnet"|"llama", "config": {...}, "seed": int, "dir": path, "dtype":
"float32"|"bfloat16", "shard": "400KB"|null, "bias_std": float, "offline": null|
"bitlinear"|"autobitlinear", "inputs": [[ids]], "prompt": [ids], "new_tokens": int}.
Writes the Hugging Face checkpoint to `dir` (the offline form packed as transformers'
BitNet integration stores it) and `dir/../reference.safetensors`: the logits of transformers'
model with its BitNet linear layers on `inputs`, and its greedy continuation of `prompt`.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TORCHDYNAMO_DISABLE"] = "1"

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    import transformers
    from transformers.integrations.bitnet import pack_weights, replace_with_bitnet_linear
    from transformers.utils.quantization_config import BitNetQuantConfig

    qc = {"quant_method": "bitnet", "linear_class": "autobitlinear",
          "quantization_mode": "online"}
    if spec["arch"] == "bitnet":
        cfg_cls, model_cls = transformers.BitNetConfig, transformers.BitNetForCausalLM
    else:
        cfg_cls, model_cls = transformers.LlamaConfig, transformers.LlamaForCausalLM
    cfg = cfg_cls(**spec["config"], quantization_config=qc)
    torch.manual_seed(spec["seed"])
    m = model_cls(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(spec.get("bias_std", 0.05) * torch.randn(p.shape, generator=g))
    if spec.get("dtype") == "bfloat16":
        m = m.to(torch.bfloat16)
    tied = bool(spec["config"].get("tie_word_embeddings", False))
    offline = spec.get("offline")
    if offline is None:
        kw = {"max_shard_size": spec["shard"]} if spec.get("shard") else {}
        m.save_pretrained(spec["dir"], **kw)
        state = m.state_dict()
        use = qc
    else:
        state = {}
        ref_state = {}      # what the layers hold once loaded (autobitlinear: unpacked)
        for k, v in m.state_dict().items():
            if k == "lm_head.weight" and tied:
                continue
            if not k.endswith("_proj.weight"):
                state[k] = ref_state[k] = v
                continue
            w = v.float()
            s = 1.0 / w.abs().mean().clamp(min=1e-5)
            trits = torch.clamp(torch.round(w * s), -1, 1)
            state[k] = pack_weights(trits.clone()).contiguous()
            ref_state[k] = state[k] if offline == "bitlinear" else trits
            scale = (1.0 / s).reshape(1)
            state[k[:-len("weight")] + "weight_scale"] = ref_state[
                k[:-len("weight")] + "weight_scale"] = \
                (1.0 / scale) if offline == "bitlinear" else scale
        os.makedirs(spec["dir"], exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()},
                  os.path.join(spec["dir"], "model.safetensors"))
        conf = cfg.to_dict()
        conf["quantization_config"] = {"quant_method": "bitnet", "linear_class": offline,
                                       "quantization_mode": "offline"}
        with open(os.path.join(spec["dir"], "config.json"), "w") as f:
            json.dump(conf, f)
        use = conf["quantization_config"]
        state = ref_state
    ref = model_cls(cfg).eval()
    if spec.get("dtype") == "bfloat16":
        ref = ref.to(torch.bfloat16)
    replace_with_bitnet_linear(ref, modules_to_not_convert=["lm_head"],
                               quantization_config=BitNetQuantConfig(
                                   **{k: v for k, v in use.items() if k != "quant_method"}))
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and all(x.endswith("lm_head.weight") for x in missing), \
        (missing, unexpected)
    if missing:
        ref.lm_head.weight = ref.model.embed_tokens.weight
    out = {}
    with torch.no_grad():
        out["logits"] = ref(torch.tensor(spec["inputs"])).logits.float()
        ids = list(spec["prompt"])
        for _ in range(spec["new_tokens"]):
            ids.append(int(ref(torch.tensor([ids])).logits[0, -1].argmax()))
    out["greedy"] = torch.tensor(ids[len(spec["prompt"]):])
    save_file(out, os.path.join(os.path.dirname(spec["dir"]), "reference.safetensors"))


if __name__ == "__main__":
    main()
