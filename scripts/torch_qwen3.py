#!/usr/bin/env python3
"""Independent PyTorch + transformers run of the official Qwen3-Reranker / Qwen3-Embedding recipes on a
Qwen3 GGUF, and a PyTorch baseline benchmark of the reranker recipe.

Contract
  Model.   A llama.cpp `qwen3` GGUF with F32, F16, BF16 or Q8_0 weights. It is read with the `gguf` package
           (GGUFReader; weights dequantised by gguf.quants to float32), a transformers.Qwen3Config is built
           from its metadata and its tensors become the state dict of transformers' own Qwen3 modules:
             - a 2-row `cls.output.weight` (a rank-converted reranker): Qwen3Model plus those rows; the
               151936-row LM head is never built. Row order from `qwen3.classifier.output_labels`
               (default [yes, no], as convert_hf_to_gguf writes it);
             - otherwise Qwen3ForCausalLM, its lm_head from `output.weight`, or tied to the embeddings
               (tie_word_embeddings) when the file has none; "yes" and "no" are the ids of the tokens
               spelled so in the file's vocabulary (tokenizer.convert_tokens_to_ids in the model card).
           Layout: GGUF ne[0] is the input dimension and is innermost, so a [in, out] tensor read row-major
           is torch's nn.Linear weight (out, in) as it is; no transposition. No RoPE permutation either:
           llama.cpp runs qwen3 with NeoX RoPE (pairs j, j + D/2), which is transformers' rotate_half.
  Input.   score / embed: a JSON file {"sequences": [[token ids], ...], "dimensions"?: d}. The ids are the
           complete model input (template and, for embeddings, the final <|endoftext|> included): this
           script tokenises nothing.
  Recipes. Sequences run in batches, left-padded with the file's padding id under an attention mask, as
           the official code does (tokenizer padding_side="left", model(**inputs) without position ids:
           a padded row's positions are shifted by its padding, which RoPE's relative form makes
           irrelevant). --batch-size 1 runs one sequence at a time, without padding.
             score: logits of "yes" and "no" at the last position; score = log_softmax([no, yes])[1].exp()
                    = P(yes). The two logits are cast to float32 first (the official code keeps the model
                    dtype, which in bfloat16 rounds a score to ~3 digits).
             embed: the last position's final normed hidden state, L2-normalised; with "dimensions" d
                    the first d values, L2-normalised (Matryoshka).
  Output.  --out FILE (default stdout), JSON:
             score: {"scores": [P(yes)], "logits": [yes - no], "model": {...}, "settings": {...}}
             embed: {"embeddings": [[float]], "model": {...}, "settings": {...}}
             bench: {"environment", "model", "settings", "shapes": [per shape: sequences, tokens (real and
                    padded), best_batch_size and the batch_sweep that chose it, seconds_median/all,
                    tokens_per_s, pairs_per_s, peak_memory_bytes (CUDA), gemm_flops, gemm_tflops_achieved,
                    gemm_ceiling (torch.matmul on the model's QKV, O, gate+up, down shapes at the batch's
                    token count), gemm_share_of_ceiling], "latency": {p50_ms, p99_ms, ...} of one request}.
  Bench.   PyTorch eager (no torch.compile), the dtype and attention asked for (bfloat16 + sdpa on a GPU),
           the score recipe above on padded batches. Inputs are synthetic: per shape REQUESTS x DOCS
           documents of random ordinary token ids (TOKENS long, or uniform in MIN..MAX), each wrapped in a
           prompt frame's prefix and suffix ids when --frame gives them (from qrank's formatPair), else
           the documents alone. Every sequence is evaluated whole: nothing is shared between the
           documents of a request (qrank evaluates a shared prefix once). Timing: CUDA events after a
           synchronize (wall clock on CPU), warm-up passes first, the median of --reps. gemm_flops counts
           the projection GEMMs on padded tokens, not attention nor the head, so gemm_tflops_achieved is a
           lower bound of the GEMM rate.
  Errors.  Bad input or an unsupported model: "torch_qwen3.py: error: ..." on stderr, exit status 2.
  Independent of qrank: the GGUF reading (the gguf package, not qrank's reader), the forward pass
  (transformers' Qwen3 modules), the recipes (written here from the model cards). From qrank come only
  the inputs: the token ids (Reranker.formatPair, Embedder.formatText) and, in the tests, the synthetic
  GGUFs of lib/synthetic/ (model.ts).

Needs python3 with torch, transformers (4.5x or 5.x) and numpy; `gguf` from pip, or else the copy in
deps/llama.cpp/gguf-py (pure Python: carry that folder to a machine without the package).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

try:
    import gguf
except ImportError:  # a machine without the pip package: llama.cpp's own copy, when deps/ is there
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "deps", "llama.cpp", "gguf-py"))
    import gguf

PROG = "torch_qwen3.py"


class InputError(Exception):
    """Bad input or an unsupported model: reported on one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------------
# GGUF -> transformers
# ----------------------------------------------------------------------------------------------------------

WEIGHT_TYPES = {gguf.GGMLQuantizationType[n] for n in ("F32", "F16", "BF16", "Q8_0")}

# blk.N.<gguf name>.weight -> layers.N.<transformers name>.weight
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_NAMES = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight"}
CLS_HEAD = "cls.output.weight"
LM_HEAD = "output.weight"


def read_gguf(path: str):
    """(metadata without the tokenizer arrays, {tensor name: ReaderTensor}, reader)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        reader = gguf.GGUFReader(path, "r")
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable GGUF file ({err})") from None
    meta = {name: field.contents() for name, field in reader.fields.items()
            if not name.startswith(("GGUF.", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                                    "tokenizer.ggml.token_type"))}
    return meta, {t.name: t for t in reader.tensors}, reader


def dequantize(t) -> torch.Tensor:
    """A GGUF tensor as float32, shape = reversed ne (a [in, out] weight becomes (out, in))."""
    qtype = gguf.GGMLQuantizationType(int(t.tensor_type))
    if qtype not in WEIGHT_TYPES:
        raise InputError(f"tensor {t.name}: type {qtype.name} is not supported (F32, F16, BF16, Q8_0)")
    values = gguf.quants.dequantize(t.data, qtype)
    shape = tuple(int(n) for n in reversed(t.shape.tolist()))
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))


def qwen3_hparams(meta: dict, path: str) -> dict:
    """The architecture numbers of a qwen3 GGUF; rejects what transformers' Qwen3 would compute differently."""
    if meta.get("general.architecture") != "qwen3":
        raise InputError(f"{path}: general.architecture is {meta.get('general.architecture')!r}, not 'qwen3'")

    def need(key):
        if f"qwen3.{key}" not in meta:
            raise InputError(f"{path}: metadata qwen3.{key} is missing")
        return meta[f"qwen3.{key}"]

    hp = dict(
        layers=int(need("block_count")), hidden=int(need("embedding_length")), ffn=int(need("feed_forward_length")),
        heads=int(need("attention.head_count")), kv_heads=int(need("attention.head_count_kv")),
        context=int(need("context_length")),
        rope_theta=float(meta.get("qwen3.rope.freq_base", 1e6)),
        rms_eps=float(meta.get("qwen3.attention.layer_norm_rms_epsilon", 1e-6)),
    )
    hp["head_dim"] = int(meta.get("qwen3.attention.key_length", hp["hidden"] // hp["heads"]))
    if int(meta.get("qwen3.attention.value_length", hp["head_dim"])) != hp["head_dim"]:
        raise InputError(f"{path}: attention.value_length != key_length is not Qwen3")
    if hp["heads"] % hp["kv_heads"]:
        raise InputError(f"{path}: head_count {hp['heads']} is not a multiple of head_count_kv {hp['kv_heads']}")
    if int(meta.get("qwen3.rope.dimension_count", hp["head_dim"])) != hp["head_dim"]:
        raise InputError(f"{path}: partial RoPE (rope.dimension_count) is not supported")
    if meta.get("qwen3.rope.scaling.type", "none") != "none" or float(meta.get("qwen3.rope.scaling.factor", 1) or 1) != 1:
        raise InputError(f"{path}: RoPE scaling is not supported")
    return hp


def state_dict(tensors: dict, hp: dict, prefix: str) -> dict:
    """The decoder's weights under transformers' names (prefix "model." for Qwen3ForCausalLM)."""
    wanted = dict(GLOBAL_NAMES)
    for i in range(hp["layers"]):
        wanted.update({f"blk.{i}.{g}.weight": f"layers.{i}.{h}.weight" for g, h in LAYER_NAMES.items()})
    unknown = sorted(set(tensors) - set(wanted) - {CLS_HEAD, LM_HEAD})
    if unknown:
        raise InputError(f"tensors not part of Qwen3 (biases?): {', '.join(unknown[:5])}")
    missing = sorted(set(wanted) - set(tensors))
    if missing:
        raise InputError(f"tensors missing: {', '.join(missing[:5])}")
    return {prefix + hf: dequantize(tensors[g]) for g, hf in wanted.items()}


@dataclass
class Reference:
    """A loaded model: transformers' modules plus how the rerank recipe reads its yes/no logits."""
    body: Qwen3Model
    lm: Qwen3ForCausalLM | None   # the causal LM holding `body`, when the yes/no rows come from its LM head
    cls_rows: torch.Tensor | None  # (2, hidden) [yes, no] rows of cls.output, else None
    yes_no_ids: tuple[int, int] | None  # LM head rows of "yes" and "no", else None
    pad_id: int
    hp: dict
    info: dict

    @property
    def device(self) -> torch.device:
        return self.body.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.body.embed_tokens.weight.dtype


def token_id(reader, text: str, path: str) -> int:
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is None:
        raise InputError(f"{path}: no tokenizer.ggml.tokens to find the token {text!r} in")
    tokens = field.contents()
    if text not in tokens:
        raise InputError(f"{path}: the vocabulary has no token {text!r}")
    return tokens.index(text)


def cls_rows_yes_no(meta: dict, head: torch.Tensor, path: str) -> torch.Tensor:
    labels = list(meta.get("qwen3.classifier.output_labels") or ["yes", "no"])
    if head.shape[0] != 2 or sorted(labels) != ["no", "yes"]:
        raise InputError(f"{path}: {CLS_HEAD} has {head.shape[0]} rows labelled {labels}; expected 2, yes and no")
    return head[[labels.index("yes"), labels.index("no")]]


def qwen3_config(hp: dict, tied: bool, attn: str) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=hp["vocab"], hidden_size=hp["hidden"], intermediate_size=hp["ffn"],
        num_hidden_layers=hp["layers"], num_attention_heads=hp["heads"], num_key_value_heads=hp["kv_heads"],
        head_dim=hp["head_dim"], max_position_embeddings=hp["context"], rms_norm_eps=hp["rms_eps"],
        rope_theta=hp["rope_theta"],  # transformers 5 moves it into rope_parameters itself
        tie_word_embeddings=tied, attention_bias=False, use_sliding_window=False, attn_implementation=attn,
    )


def load_with_cls_head(meta: dict, tensors: dict, hp: dict, attn: str, path: str):
    """Qwen3Model and the [yes, no] rows of cls.output: no vocabulary-sized head at all."""
    body = Qwen3Model(qwen3_config(hp, False, attn))
    body.load_state_dict(state_dict(tensors, hp, ""), strict=True)
    return body, cls_rows_yes_no(meta, dequantize(tensors[CLS_HEAD]), path), f"{CLS_HEAD} rows [yes, no]"


def load_causal(tensors: dict, reader, hp: dict, attn: str, path: str):
    """Qwen3ForCausalLM with output.weight as lm_head, or tied to token_embd when the file has none."""
    tied = LM_HEAD not in tensors
    lm = Qwen3ForCausalLM(qwen3_config(hp, tied, attn))
    weights = state_dict(tensors, hp, "model.")
    if not tied:
        weights["lm_head.weight"] = dequantize(tensors[LM_HEAD])
    result = lm.load_state_dict(weights, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - ({"lm_head.weight"} if tied else set()):
        raise InputError(f"{path}: state dict mismatch {result}")
    if tied and lm.lm_head.weight.data_ptr() != lm.model.embed_tokens.weight.data_ptr():
        raise InputError("transformers did not tie lm_head to embed_tokens")
    yes_no = (token_id(reader, "yes", path), token_id(reader, "no", path))
    return lm, yes_no, f"{'token_embd.weight (tied)' if tied else LM_HEAD} rows {list(yes_no)} (yes, no)"


def load_model(path: str, device: str = "cpu", dtype: str = "float32", attn: str = "sdpa") -> Reference:
    meta, tensors, reader = read_gguf(path)
    hp = qwen3_hparams(meta, path)
    if "token_embd.weight" not in tensors:
        raise InputError(f"{path}: token_embd.weight is missing")
    hp["vocab"] = int(tensors["token_embd.weight"].shape[1])
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    lm, cls_rows, yes_no = None, None, None
    if CLS_HEAD in tensors:
        body, cls_rows, head = load_with_cls_head(meta, tensors, hp, attn, path)
        cls_rows = cls_rows.to(device=device, dtype=torch_dtype)
    else:
        lm, yes_no, head = load_causal(tensors, reader, hp, attn, path)
        body = lm.model
    check_rope(body, hp)
    module = (lm or body).to(device=device, dtype=torch_dtype).eval()
    if body.config._attn_implementation != attn:
        raise InputError(f"transformers runs attention {body.config._attn_implementation!r}, not {attn!r}")
    pad_id = int(meta.get("tokenizer.ggml.padding_token_id", meta.get("tokenizer.ggml.eos_token_id", 0)))
    info = dict(path=os.path.abspath(path), name=meta.get("general.name"), head=head,
                pooling_type=meta.get("qwen3.pooling_type"),
                weight_types=sorted({gguf.GGMLQuantizationType(int(t.tensor_type)).name for t in tensors.values()}),
                hparams=dict(hp), parameters=sum(p.numel() for p in module.parameters()))
    return Reference(body, lm, cls_rows, yes_no, pad_id, hp, info)


def check_rope(body: Qwen3Model, hp: dict) -> None:
    """The rotary frequencies transformers built are theta^(-2i/D): the config carried theta through."""
    d = hp["head_dim"]
    want = 1.0 / (hp["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    got = body.rotary_emb.inv_freq.double().cpu()
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-5) or body.rotary_emb.attention_scaling != 1:
        raise InputError(f"transformers' RoPE does not use theta {hp['rope_theta']}")


# ----------------------------------------------------------------------------------------------------------
# The official recipes
# ----------------------------------------------------------------------------------------------------------

def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask, padded on the left as tokenizer.pad(padding_side="left") does."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def yes_no_logits(model: Reference, seqs: list[list[int]]) -> torch.Tensor:
    """(batch, 2) float32 logits of "yes" and "no" at the last position."""
    ids, mask = left_pad(seqs, model.pad_id, model.device)
    if model.cls_rows is not None:
        last = model.body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, -1]
        return (last @ model.cls_rows.T).float()
    logits = model.lm(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1).logits[:, -1]
    return logits[:, list(model.yes_no_ids)].float()


def rerank_scores(logits: torch.Tensor) -> torch.Tensor:
    """The model card's P(yes): stack([no, yes]) -> log_softmax -> [:, 1].exp()."""
    return torch.log_softmax(torch.stack([logits[:, 1], logits[:, 0]], dim=1), dim=1)[:, 1].exp()


def embeddings(model: Reference, seqs: list[list[int]], dimensions: int | None) -> torch.Tensor:
    """Last-token pooling (the rows are left-padded: the last column is every sequence's last token)."""
    ids, mask = left_pad(seqs, model.pad_id, model.device)
    last = model.body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, -1].float()
    return F.normalize(last[:, :dimensions] if dimensions else last, p=2, dim=1)


def batches(seqs: list, size: int):
    for start in range(0, len(seqs), size):
        yield seqs[start:start + size]


@torch.inference_mode()
def run_score(model: Reference, seqs: list[list[int]], batch_size: int) -> tuple[list[float], list[float]]:
    logits = torch.cat([yes_no_logits(model, b) for b in batches(seqs, batch_size)])
    return rerank_scores(logits).tolist(), (logits[:, 0] - logits[:, 1]).tolist()


@torch.inference_mode()
def run_embed(model: Reference, seqs: list[list[int]], batch_size: int, dimensions: int | None) -> list[list[float]]:
    return torch.cat([embeddings(model, b, dimensions) for b in batches(seqs, batch_size)]).tolist()


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------

def is_id_list(x, vocab: int) -> bool:
    return isinstance(x, list) and len(x) > 0 and all(type(t) is int and 0 <= t < vocab for t in x)


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read JSON ({err})") from None


def read_sequences(path: str) -> tuple[list[list[int]], int | None]:
    """The input's shape, checked before the (slow) model load; check_sequences does the rest."""
    doc = read_json(path)
    seqs = doc.get("sequences") if isinstance(doc, dict) else None
    if not isinstance(seqs, list) or not seqs:
        raise InputError(f'{path}: expected {{"sequences": [[token ids], ...]}} with at least one sequence')
    for i, s in enumerate(seqs):
        if not is_id_list(s, sys.maxsize):
            raise InputError(f"{path}: sequences[{i}] is not a non-empty list of non-negative integer token ids")
    dims = doc.get("dimensions")
    if dims is not None and not (type(dims) is int and dims >= 1):
        raise InputError(f"{path}: dimensions must be a positive integer, got {dims!r}")
    return seqs, dims


def check_sequences(seqs: list[list[int]], dims: int | None, hp: dict) -> None:
    for i, s in enumerate(seqs):
        if max(s) >= hp["vocab"]:
            raise InputError(f"sequences[{i}] has token id {max(s)}, outside the vocabulary [0, {hp['vocab']})")
        if len(s) > hp["context"]:
            raise InputError(f"sequences[{i}] has {len(s)} tokens, more than the context length {hp['context']}")
    if dims is not None and dims > hp["hidden"]:
        raise InputError(f"dimensions {dims} exceeds the embedding length {hp['hidden']}")


def write_json(doc: dict, out: str | None) -> None:
    text = json.dumps(doc, allow_nan=False)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        print(text)


def settings(args) -> dict:
    return dict(device=args.device, dtype=args.dtype, attn=args.attn, batch_size=args.batch_size,
                padding="left" if args.batch_size > 1 else "none")


def cmd_score(args) -> None:
    seqs, dims = read_sequences(args.input)
    model = load_model(args.model, args.device, args.dtype, args.attn)
    check_sequences(seqs, dims, model.hp)
    scores, logits = run_score(model, seqs, args.batch_size)
    write_json(dict(scores=scores, logits=logits, model=model.info, settings=settings(args)), args.out)


def cmd_embed(args) -> None:
    seqs, dims = read_sequences(args.input)
    model = load_model(args.model, args.device, args.dtype, args.attn)
    check_sequences(seqs, dims, model.hp)
    vectors = run_embed(model, seqs, args.batch_size, dims)
    write_json(dict(embeddings=vectors, dimensions=dims, model=model.info, settings=settings(args)), args.out)


# ----------------------------------------------------------------------------------------------------------
# bench: the reranker recipe in PyTorch (eager, no compile) on synthetic token ids
# ----------------------------------------------------------------------------------------------------------

DEFAULT_SHAPES = ["docs100_len256=1x100x256", "docs1000_len128=1x1000x128", "queries32_docs100_len256=32x100x256",
                  "titles1000_len40=1x1000x30-50"]
DEFAULT_BATCH_SIZES = "8,16,32,64,128,256"
SHAPE_RE = re.compile(r"^([A-Za-z0-9_.-]+)=(\d+)x(\d+)x(\d+)(?:-(\d+))?$")


@dataclass
class Shape:
    name: str
    requests: int
    docs: int
    min_tokens: int
    max_tokens: int


def parse_shape(text: str) -> Shape:
    m = SHAPE_RE.match(text)
    if not m:
        raise InputError(f"shape {text!r}: expected NAME=REQUESTSxDOCSxTOKENS or NAME=REQUESTSxDOCSxMIN-MAX")
    name, requests, docs, lo = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    hi = int(m.group(5) or lo)
    if min(requests, docs, lo) < 1 or hi < lo:
        raise InputError(f"shape {text!r}: counts must be >= 1 and MIN <= MAX")
    return Shape(name, requests, docs, lo, hi)


def read_frame(path: str | None) -> dict | None:
    """{"prefixes": [[ids], ...], "suffix": [ids]}: request r's documents sit between prefixes[r % n] and suffix."""
    if path is None:
        return None
    frame = read_json(path)
    prefixes = frame.get("prefixes") if isinstance(frame, dict) else None
    if not (isinstance(prefixes, list) and prefixes and all(is_id_list(p, sys.maxsize) for p in prefixes)
            and is_id_list(frame.get("suffix"), sys.maxsize)):
        raise InputError(f'{path}: expected {{"prefixes": [[token ids], ...], "suffix": [token ids]}}')
    return frame


def make_sequences(shape: Shape, frame: dict | None, id_limit: int, rng: np.random.Generator) -> list[list[int]]:
    """Documents of random ids in [0, id_limit) (below the padding id: Qwen3's special tokens start there), each
    MIN..MAX tokens long, wrapped in the frame's prefix and suffix when there is one."""
    seqs = []
    for r in range(shape.requests):
        prefix = frame["prefixes"][r % len(frame["prefixes"])] if frame else []
        suffix = frame["suffix"] if frame else []
        for _ in range(shape.docs):
            n = int(rng.integers(shape.min_tokens, shape.max_tokens + 1))
            seqs.append(prefix + rng.integers(0, id_limit, n).tolist() + suffix)
    return seqs


def timed(fn, device: torch.device) -> float:
    """Seconds fn() takes, by CUDA events on a GPU (after a synchronize), else by the wall clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def is_oom(err: Exception) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def score_all(model: Reference, seqs: list[list[int]], batch_size: int) -> None:
    """One request as a server would run it: pad, upload, forward, scores back on the host."""
    for b in batches(seqs, batch_size):
        rerank_scores(yes_no_logits(model, b)).tolist()


def gemm_shapes(hp: dict) -> dict:
    """(n, k) of each projection GEMM of one layer (x[T, k] @ W[k, n]); QKV and gate+up as the fused GEMMs
    an engine runs."""
    e, d = hp["hidden"], hp["head_dim"]
    return dict(qkv=((hp["heads"] + 2 * hp["kv_heads"]) * d, e), o=(e, hp["heads"] * d),
                gate_up=(2 * hp["ffn"], e), down=(e, hp["ffn"]))


def gemm_flops(hp: dict, tokens: int) -> int:
    """Multiply-add FLOPs of all projection GEMMs of the decoder (not attention, not the head) on `tokens`."""
    return 2 * tokens * hp["layers"] * sum(n * k for n, k in gemm_shapes(hp).values())


@torch.inference_mode()
def gemm_ceiling(hp: dict, tokens: int, dtype: torch.dtype, device: torch.device, reps: int = 10) -> dict:
    """torch.matmul on the model's own GEMM shapes at `tokens` rows (median of reps after 2 warm-ups):
    what the device does at best."""
    out, total_flops, total_s = [], 0, 0.0
    for name, (n, k) in gemm_shapes(hp).items():
        x = torch.randn(tokens, k, dtype=dtype, device=device)
        w = torch.randn(n, k, dtype=dtype, device=device) / k ** 0.5
        for _ in range(2):
            torch.matmul(x, w.T)
        secs = statistics.median(timed(lambda: torch.matmul(x, w.T), device) for _ in range(reps))
        flops = 2 * tokens * n * k
        out.append(dict(name=name, m=tokens, n=n, k=k, seconds=secs, tflops=flops / secs / 1e12))
        total_flops, total_s = total_flops + flops, total_s + secs
        del x, w
    return dict(tokens=tokens, dtype=str(dtype).removeprefix("torch."), gemms=out,
                combined_tflops=total_flops / total_s / 1e12)


def sweep_batch_size(model: Reference, seqs: list[list[int]], candidates: list[int], reps: int) -> tuple[int, list[dict]]:
    """Times the same sample of sequences (median of reps) at each batch size; the fastest wins. Larger
    sizes are not tried after one runs out of memory."""
    sample = seqs[:max(candidates)]
    tried = []
    for b in candidates:
        try:
            score_all(model, sample[:b], b)  # warm-up at this size
            secs = statistics.median(timed(lambda: score_all(model, sample, b), model.device) for _ in range(reps))
            tried.append(dict(batch_size=b, seconds=secs, pairs_per_s=len(sample) / secs))
        except RuntimeError as err:
            if not is_oom(err):
                raise
            torch.cuda.empty_cache()
            tried.append(dict(batch_size=b, error="out of memory"))
            break
    ok = [t for t in tried if "seconds" in t]
    if not ok:
        raise InputError(f"out of memory at batch size {candidates[0]}")
    return max(ok, key=lambda t: t["pairs_per_s"])["batch_size"], tried


def bench_shape(model: Reference, shape: Shape, seqs: list[list[int]], args) -> dict:
    hp, device = model.hp, model.device
    candidates = [b for b in args.batch_sizes if b <= len(seqs)] or [len(seqs)]
    best, tried = sweep_batch_size(model, seqs, candidates, args.reps)
    padded = sum(len(b) * max(map(len, b)) for b in batches(seqs, best))
    for _ in range(args.warmup):
        score_all(model, seqs, best)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [timed(lambda: score_all(model, seqs, best), device) for _ in range(args.reps)]
    secs = statistics.median(times)
    tokens = sum(map(len, seqs))
    batch_tokens = best * max(map(len, seqs))
    ceiling = gemm_ceiling(hp, batch_tokens, model.dtype, device)
    achieved = gemm_flops(hp, padded) / secs / 1e12
    return dict(
        name=shape.name, requests=shape.requests, docs_per_request=shape.docs,
        doc_tokens=[shape.min_tokens, shape.max_tokens], sequences=len(seqs),
        seq_len=dict(min=min(map(len, seqs)), max=max(map(len, seqs)), mean=tokens / len(seqs)),
        tokens=tokens, padded_tokens=padded, best_batch_size=best, batch_sweep=tried,
        seconds_median=secs, seconds_all=times, tokens_per_s=tokens / secs, pairs_per_s=len(seqs) / secs,
        peak_memory_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        gemm_flops=gemm_flops(hp, padded), gemm_tflops_achieved=achieved, gemm_ceiling=ceiling,
        gemm_share_of_ceiling=achieved / ceiling["combined_tflops"],
    )


def bench_latency(model: Reference, seqs: list[list[int]], batch_size: int, args) -> dict:
    """p50/p99 of one request (the first shape's first request) at that shape's best batch size."""
    for _ in range(args.warmup):
        score_all(model, seqs, batch_size)
    ms = [1000 * timed(lambda: score_all(model, seqs, batch_size), model.device) for _ in range(args.latency_reps)]
    return dict(docs=len(seqs), batch_size=batch_size, reps=len(ms), p50_ms=float(np.percentile(ms, 50)),
                p99_ms=float(np.percentile(ms, 99)), mean_ms=statistics.fmean(ms), min_ms=min(ms))


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return dict(
        python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
        gguf=gguf_version(), numpy=np.__version__, platform=platform.platform(), device=str(device),
        device_name=torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        cuda=torch.version.cuda if cuda else None, cudnn=torch.backends.cudnn.version() if cuda else None,
        cpu_threads=torch.get_num_threads(), float32_matmul_precision=torch.get_float32_matmul_precision(),
    )


def gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # the deps/llama.cpp/gguf-py copy carries no distribution metadata
        return "gguf-py from deps/llama.cpp"


def cmd_bench(args) -> None:
    shapes = [parse_shape(s) for s in (args.shape or DEFAULT_SHAPES)]
    frame = read_frame(args.frame)
    model = load_model(args.model, args.device, args.dtype, args.attn)
    if model.cls_rows is None and model.yes_no_ids is None:
        raise InputError("bench runs the reranker recipe: pass a reranker or causal Qwen3 GGUF")
    rng = np.random.default_rng(args.seed)
    id_limit = min(model.hp["vocab"], model.pad_id) or model.hp["vocab"]
    results, latency = [], None
    for shape in shapes:
        seqs = make_sequences(shape, frame, id_limit, rng)
        check_sequences(seqs, None, model.hp)
        results.append(bench_shape(model, shape, seqs, args))
        if latency is None:
            latency = dict(shape=shape.name, **bench_latency(model, seqs[:shape.docs], results[-1]["best_batch_size"], args))
    write_json(dict(
        tool=f"scripts/{PROG} bench", environment=environment(model.device), model=model.info,
        settings=dict(device=args.device, dtype=args.dtype, attn=args.attn, compile=False, warmup=args.warmup,
                      reps=args.reps, batch_sizes=args.batch_sizes, seed=args.seed,
                      inputs=("random document ids wrapped in the frame's prefix and suffix ids" if frame else
                              "random ids only, no prompt frame") + f", ids in [0, {id_limit})"),
        shapes=results, latency=latency,
    ), args.out)


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------

def positive_ints(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


positive_int = int_at_least(1)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="Qwen3 GGUF file")
    common.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    common.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    common.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="transformers' attention implementation")
    common.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's own)")
    common.add_argument("--out", help="output JSON file (default: stdout)")
    for name, fn, what in (("score", cmd_score, "reranker scores P(yes) and yes - no logits"),
                           ("embed", cmd_embed, "L2-normalised last-token embeddings")):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("--input", required=True, help='JSON {"sequences": [[ids], ...], "dimensions"?: d}')
        p.add_argument("--batch-size", type=positive_int, default=16, help="sequences per padded batch; 1 = one at a time")
        p.set_defaults(fn=fn)
    b = sub.add_parser("bench", parents=[common], help="PyTorch baseline of the reranker recipe (one JSON document)")
    b.add_argument("--shape", action="append", metavar="NAME=RxDxT",
                   help="REQUESTS x DOCS x document TOKENS (or MIN-MAX: uniform lengths), repeatable; "
                        f"default: {' '.join(DEFAULT_SHAPES)}")
    b.add_argument("--frame", help='JSON {"prefixes": [[ids], ...], "suffix": [ids]} around the random documents '
                                   "(default: none, the documents alone)")
    b.add_argument("--batch-sizes", type=positive_ints, default=positive_ints(DEFAULT_BATCH_SIZES),
                   help=f"candidates; the fastest is used and reported (default {DEFAULT_BATCH_SIZES})")
    b.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed passes before timing (default 1)")
    b.add_argument("--reps", type=positive_int, default=3, help="timed passes; the median is reported (default 3)")
    b.add_argument("--latency-reps", type=positive_int, default=50, help="timed single requests (default 50)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(fn=cmd_bench)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"{PROG}: error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")  # no TF32: float32 means float32
    try:
        args.fn(args)
    except InputError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
