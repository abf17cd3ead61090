#!/usr/bin/env python3
"""Inputs, comparisons and the report of scripts/gpu-check.sh (the one GPU call). numpy only; the chart
uses matplotlib where it is installed, else an SVG written here.

Each `check-*` command prints one line, "PASS name: ..." or "FAIL name: ...", writes its numbers to
--result (JSON) and exits 1 on FAIL. Engine outputs are the JSON that `qrank_bench --inputs` writes
(scores, logits or embeddings, and the token ids it ran); references are scripts/torch_qwen3.py's
(scores, logits yes - no, or embeddings) or the committed golden values (test/fixtures/golden.json,
numpy float64).

Tolerance, from the arithmetic (bf16 operands, fp32 accumulation)
-----------------------------------------------------------------
bf16 keeps 8 significant bits: rounding a value changes it by a relative error e with |e| <= u = 2^-8,
spread about uniformly, so with standard deviation u / sqrt(3). A product accumulated in fp32 adds
~k 2^-24 relative for k terms: negligible next to u. Per layer, about R = 10 roundings lie on the way
of every value that reaches the residual stream: the weights of the four GEMMs (converted once from
F16/F32), the normed inputs of the QKV and gate+up GEMMs, v, the attention output, the SwiGLU
product, the O and down outputs added to the fp32 residual; each moves its sublayer's contribution by
u/sqrt(3) relative. Two more, q and k, are amplified by the softmax: an attention logit s = q.k/sqrt(D)
moves by about sigma_s u/sqrt(3) per rounded operand, where sigma_s = g_q g_k is the spread of the
logits that q/k norm gains g make (rms of attn_q_norm.weight and attn_k_norm.weight, read from the
model: 2.5 x 2.5 in the synthetic models), and the attention output moves by that much relative.
Independent errors add over L layers, so the final hidden state carries a relative error of about
    e = u / sqrt(3) * sqrt(L * (R + 2 sigma_s^2))      (synthetic tiny: 3.0e-2; 0.6b: 0.11; 4b: 0.13)
A yes - no logit is a dot product of that state with a fixed row difference: over random inputs the
logit and its error have the same scale (|w| |h| / sqrt(H)), so, with `ref` the reference logits:
    rms(logit - ref) / rms(ref)   <= 2 e          (2: the model counts roundings, it is not a fit)
    max |logit - ref| / rms(ref)  <= 9 e          (4.5 sigma of that, over a few thousand pairs)
    embeddings: max ||v - ref|| / ||ref|| <= 2 e per vector (a sum over H dimensions: its error is
    the rms one), also after truncation to `dimensions` and renormalisation.
The count cannot see how much a sharp softmax or the residual's growth amplify on a given model;
PyTorch in bf16 (the same operand precision, and a bf16 residual stream, so more roundings than
the engine) measures that on the same ids. So the bound used is the larger of the two: the count
above, and 1.5 times PyTorch bf16's own error against the float32 reference (where it ran).
Same engine, two ways of batching (prefix reused or not, packed or one pair at a time): only the
order of fp32 sums and the bf16 roundings that flip with it change, so their difference must stay
under half of the count: rms(delta) / rms(logit) <= e, max <= 4.5 e.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import sys

import numpy as np

U_BF16 = 2.0 ** -8
ROUNDINGS_PER_LAYER = 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "test", "fixtures")


def bf16_error(model_path: str) -> dict:
    """e for a model (see the module docstring), from its layer count and q/k norm gains; kept beside
    the model (reading a GGUF's 151936-token vocabulary takes seconds)."""
    cache = model_path + ".bf16-error.json"
    if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(model_path):
        return read(cache)
    import gguf  # the pip package, or llama.cpp's gguf-py on PYTHONPATH (gpu-check.sh sets it)

    reader = gguf.GGUFReader(model_path)
    rms = lambda t: float(np.sqrt(np.mean(np.asarray(t.data, dtype=np.float64) ** 2)))  # noqa: E731
    q = [rms(t) for t in reader.tensors if t.name.endswith("attn_q_norm.weight")]
    k = [rms(t) for t in reader.tensors if t.name.endswith("attn_k_norm.weight")]
    layers = len(q)
    sigma = float(np.mean([a * b for a, b in zip(q, k)])) if q and k else 1.0
    e = U_BF16 / math.sqrt(3) * math.sqrt(layers * (ROUNDINGS_PER_LAYER + 2 * sigma ** 2))
    facts = dict(e=e, layers=layers, sigma_s=sigma)
    try:
        write(cache, facts)
    except OSError:
        pass
    return facts


def read(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write(path: str, doc) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def verdict(name: str, ok: bool, detail: str, result_path: str | None, numbers: dict) -> int:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    if result_path:
        write(result_path, dict(name=name, ok=ok, detail=detail, **numbers))
    return 0 if ok else 1


# --- inputs ----------------------------------------------------------------------------------------

SHOP_WORDS = (
    "wireless bluetooth headphones noise cancelling battery hours charging case auriculares inalámbricos "
    "cancelación ruido batería estuche carga rápida negro 无线 蓝牙 降噪 耳机 续航 充电盒 快充 黑色 stainless steel "
    "kitchen knife set juego cuchillos acero inoxidable 厨房 刀具 套装 running shoes zapatillas 跑步鞋 size talla 尺码 "
    "price precio 价格 waterproof impermeable 防水 cotton algodón 纯棉 shirt camisa 衬衫 with con 和 for para 适用于"
).split()


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(SHOP_WORDS) for _ in range(rng.randint(lo, hi)))


def cmd_pairs(a) -> int:
    """Random (query, document) pairs: --queries queries with n / queries documents each."""
    rng = random.Random(a.seed)
    queries = [sentence(rng, 2, 6) for _ in range(a.queries)]
    pairs = [dict(query=queries[i % a.queries], document=sentence(rng, a.min_words, a.max_words)) for i in range(a.n)]
    write(a.out, dict(seed=a.seed, pairs=pairs))
    return 0


def cmd_texts(a) -> int:
    """Random texts for an embedder, half queries and half documents, each once whole and once cut to
    --dimensions (the same token ids: the reference of the cut ones is the whole one, cut)."""
    rng = random.Random(a.seed)
    base = [dict(text=sentence(rng, 2, 40), kind="query" if i % 2 == 0 else "document") for i in range(a.n)]
    texts = base + [dict(t, dimensions=a.dimensions) for t in base]
    write(a.out, dict(seed=a.seed, texts=texts))
    return 0


def golden_cases(role: str) -> list[dict]:
    inputs = read(os.path.join(FIXTURES, "golden-inputs.json"))["cases"]
    kind = "embed" if role == "embedder" else "rerank"
    return [c for c in inputs if c["kind"] == kind and c["model"] == role]


def cmd_golden_inputs(a) -> int:
    cases = golden_cases(a.role)
    if a.role == "embedder":
        texts = []
        for c in cases:
            t = dict(text=c["input"], kind=c["role"])
            if c.get("task"):
                t["instruction"] = c["task"]
            if c.get("dimensions"):
                t["dimensions"] = c["dimensions"]
            texts.append(t)
        write(a.out, dict(texts=texts))
    else:
        write(a.out, dict(pairs=[dict(query=c["query"], document=c["document"], instruction=c["instruction"]) for c in cases]))
    return 0


def cmd_frame(a) -> int:
    """torch_qwen3.py bench's --frame from an engine run of pairs (q_i, doc A), (q_i, doc B), ...: the
    ids every prompt of a query starts with, and those every prompt ends with."""
    seqs = read(a.engine)["tokens"]
    prefixes = []
    for i in range(0, len(seqs) - 1, 2):
        x, y = seqs[i], seqs[i + 1]
        n = 0
        while n < min(len(x), len(y)) and x[n] == y[n]:
            n += 1
        prefixes.append(x[:n])
    x, y = seqs[0], seqs[1]
    n = 0
    while n < min(len(x), len(y)) and x[-1 - n] == y[-1 - n]:
        n += 1
    write(a.out, dict(prefixes=prefixes, suffix=x[len(x) - n:]))
    return 0


# --- comparisons -----------------------------------------------------------------------------------

def logit_errors(got: np.ndarray, ref: np.ndarray) -> dict:
    scale = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    d = got - ref
    return dict(n=int(len(ref)), rms_ref=scale, rms_rel=float(np.sqrt(np.mean(d ** 2))) / scale,
                max_rel=float(np.max(np.abs(d))) / scale, max_abs=float(np.max(np.abs(d))))


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b, exact, O(n^2) in blocks."""
    n = len(x)
    concordant = 0.0
    tx = ty = 0.0
    total = n * (n - 1) / 2
    for i0 in range(0, n, 512):
        sx = np.sign(x[i0:i0 + 512, None] - x[None, :])
        sy = np.sign(y[i0:i0 + 512, None] - y[None, :])
        rows = np.arange(i0, min(i0 + 512, n))[:, None]
        upper = np.arange(n)[None, :] > rows
        concordant += float(np.sum((sx * sy)[upper]))
        tx += float(np.sum((sx == 0)[upper]))
        ty += float(np.sum((sy == 0)[upper]))
    return concordant / math.sqrt((total - tx) * (total - ty))


def normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def vector_errors(got: list, ref: list) -> dict:
    rel = [float(np.linalg.norm(np.asarray(g) - np.asarray(r)) / np.linalg.norm(r)) for g, r in zip(got, ref)]
    cos = [float(np.dot(g, r) / np.linalg.norm(g) / np.linalg.norm(r)) for g, r in zip(got, ref)]
    return dict(n=len(rel), max_rel=max(rel), mean_rel=float(np.mean(rel)), min_cosine=min(cos))


class Bound:
    """The tolerance of one comparison (module docstring): the rounding count's, or 1.5 x PyTorch bf16's
    measured error where that is larger. Values are relative (to rms(ref) for logits, per vector for
    embeddings)."""

    def __init__(self, model: dict, rms_factor: float, max_factor: float, torch_bf16: dict | None = None):
        self.model = model
        self.rms = rms_factor * model["e"]
        self.max = max_factor * model["e"]
        self.torch_bf16 = torch_bf16
        if torch_bf16:
            self.rms = max(self.rms, 1.5 * torch_bf16.get("rms_rel", torch_bf16.get("mean_rel", 0.0)))
            self.max = max(self.max, 1.5 * torch_bf16["max_rel"])

    def describe(self) -> dict:
        return dict(rms_bound=self.rms, max_bound=self.max, model=self.model, torch_bf16=self.torch_bf16)


def check_logits(name: str, got: np.ndarray, ref: np.ndarray, bound: Bound, extra: dict, result: str | None,
                 note: str = "") -> int:
    err = logit_errors(got, ref)
    ok = bool(np.all(np.isfinite(got))) and err["rms_rel"] <= bound.rms and err["max_rel"] <= bound.max
    detail = (f"{err['n']} logits, rms err {err['rms_rel']:.2e} (bound {bound.rms:.2e}), max {err['max_rel']:.2e} "
              f"(bound {bound.max:.2e}) of rms {err['rms_ref']:.3g}{note}")
    return verdict(name, ok, detail, result, dict(errors=err, **bound.describe(), **extra))


def check_vectors(name: str, err: dict, bound: Bound, extra: dict, result: str | None, note: str = "") -> int:
    ok = math.isfinite(err["max_rel"]) and err["max_rel"] <= bound.max
    return verdict(name, ok, f"{err['n']} embeddings, max rel err {err['max_rel']:.2e} (bound {bound.max:.2e}), "
                             f"min cosine {err['min_cosine']:.6f}{note}", result, dict(errors=err, **bound.describe(), **extra))


def cmd_check_golden(a) -> int:
    """The engine on the tiny models against the committed float64 golden values."""
    golden = {c["id"]: c for c in read(os.path.join(FIXTURES, "golden.json"))["cases"]}
    cases = golden_cases(a.role)
    out = read(a.engine)
    bad_ids = [c["id"] for c, t in zip(cases, out["tokens"]) if t != c["ids"]]
    if bad_ids:
        return verdict(a.name, False, f"token ids differ from the golden inputs in {bad_ids}", a.result, {})
    model = bf16_error(a.model)
    if a.role == "embedder":
        ref = [golden[c["id"]]["embedding"] for c in cases]
        return check_vectors(a.name, vector_errors(out["embeddings"], ref), Bound(model, 2, 2), {}, a.result)
    ref = np.array([golden[c["id"]]["logit_yes"] - golden[c["id"]]["logit_no"] for c in cases])
    return check_logits(a.name, np.array(out["logits"]), ref, Bound(model, 2, 9), {}, a.result)


def check_ref_embeddings(a, out: dict, ref: dict, model: dict) -> int:
    texts = read(a.inputs)["texts"]
    full = [i for i, t in enumerate(texts) if not t.get("dimensions")]
    cut = [i for i, t in enumerate(texts) if t.get("dimensions")]
    refs = np.asarray(ref["embeddings"], dtype=np.float64)
    if len(refs) != len(full):
        return verdict(a.name, False, f"{len(refs)} reference vectors for {len(full)} inputs", a.result, {})
    err = vector_errors([out["embeddings"][i] for i in full], refs)
    extra: dict = {}
    if cut:  # the cut inputs repeat the whole ones in order: their reference is the whole one, cut
        d = len(out["embeddings"][cut[0]])
        cut_err = vector_errors([out["embeddings"][i] for i in cut], normalise(refs[: len(cut), :d]))
        extra["dimensions"] = dict(cut_err, dimensions=d)
        err = dict(err, max_rel=max(err["max_rel"], cut_err["max_rel"]), min_cosine=min(err["min_cosine"], cut_err["min_cosine"]))
    torch_bf16 = vector_errors(read(a.ref_bf16)["embeddings"], refs) if a.ref_bf16 and os.path.exists(a.ref_bf16) else None
    note = f" (whole and cut to {extra['dimensions']['dimensions']})" if cut else ""
    note += f"; torch bf16 max {torch_bf16['max_rel']:.2e}" if torch_bf16 else "; no torch bf16 run"
    return check_vectors(a.name, err, Bound(model, 2, 2, torch_bf16), extra, a.result, note)


def cmd_check_ref(a) -> int:
    """The engine against scripts/torch_qwen3.py (float32) on the same token ids; PyTorch bf16 beside it."""
    out, ref = read(a.engine), read(a.ref)
    model = bf16_error(a.model)
    if a.role == "embedder":
        return check_ref_embeddings(a, out, ref, model)
    got, want = np.array(out["logits"], dtype=np.float64), np.array(ref["logits"], dtype=np.float64)
    if len(got) != len(want):
        return verdict(a.name, False, f"{len(want)} reference logits for {len(got)} pairs", a.result, {})
    tau = kendall_tau(np.array(out["scores"]), np.array(ref["scores"]))
    extra = dict(kendall_tau=tau, seed=read(a.inputs).get("seed") if a.inputs else None)
    torch_bf16 = None
    note = f", Kendall tau {tau:.4f} (>= {a.tau})"
    if a.ref_bf16 and os.path.exists(a.ref_bf16):
        bf = read(a.ref_bf16)
        torch_bf16 = logit_errors(np.array(bf["logits"], dtype=np.float64), want)
        torch_bf16["kendall_tau"] = kendall_tau(np.array(bf["scores"]), np.array(ref["scores"]))
        note += f"; torch bf16: rms {torch_bf16['rms_rel']:.2e}, max {torch_bf16['max_rel']:.2e}, tau {torch_bf16['kendall_tau']:.4f}"
    else:
        note += "; no torch bf16 run"
    status = check_logits(a.name, got, want, Bound(model, 2, 9, torch_bf16), extra, a.result, note)
    if tau < a.tau and status == 0:
        return verdict(a.name, False, f"Kendall tau {tau:.4f} < {a.tau}{note}", a.result, extra)
    return status


def cmd_check_same(a) -> int:
    """One engine, two ways of batching: A (grouped: prefixes reused, calls packed) against B (one input
    per call, one call at a time). Their counters must show the difference, their outputs must not."""
    x, y = read(a.a), read(a.b)
    if x["tokens"] != y["tokens"]:
        return verdict(a.name, False, "the two runs did not run the same token ids", a.result, {})
    sx, sy = x["stats"], y["stats"]
    stats = dict(a_stats=sx, b_stats=sy)
    bound = Bound(bf16_error(a.model), 1, 4.5)
    if "embeddings" in x:
        if not sx["batches"] < sy["batches"]:
            return verdict(a.name, False, f"the runs were not batched differently: {sx['batches']} vs {sy['batches']} batches", a.result, stats)
        return check_vectors(a.name, vector_errors(x["embeddings"], y["embeddings"]), bound, stats, a.result,
                             f"; {sx['batches']} batches vs {sy['batches']}")
    if not (sx["tokens_reused"] > 0 and sy["tokens_reused"] == 0 and sx["batches"] < sy["batches"]):
        return verdict(a.name, False, f"the runs did not differ as meant: reused {sx['tokens_reused']} vs {sy['tokens_reused']}, "
                                      f"batches {sx['batches']} vs {sy['batches']}", a.result, stats)
    gx, gy = np.array(x["logits"], dtype=np.float64), np.array(y["logits"], dtype=np.float64)
    identical = bool(np.array_equal(gx, gy))
    return check_logits(a.name, gx, gy, bound, dict(identical=identical, **stats), a.result,
                        f"; {sx['tokens_reused']} prefix tokens reused vs 0, {sx['batches']} batches vs {sy['batches']}"
                        f"{', bitwise equal' if identical else ''}")


def cmd_check_node(a) -> int:
    """The Node API's throughput against the C++ bench's on the same shape and texts: within 10%."""
    node, cpp = read(a.node), read(a.cpp)
    shape = next(s for s in cpp["shapes"] if s["name"] == a.shape)
    ratio = node["tokens_per_s"] / shape["tokens_per_s"]
    ok = ratio >= 1 - a.within and node["tokens"] == shape["tokens"]
    return verdict(a.name, ok, f"{node['tokens_per_s']:.0f} tokens/s through Node vs {shape['tokens_per_s']:.0f} in C++ "
                               f"({ratio:.3f}, >= {1 - a.within:.2f}), {node['tokens']} vs {shape['tokens']} tokens",
                   a.result, dict(ratio=ratio, node=node, cpp_shape=shape))


# --- report ----------------------------------------------------------------------------------------

def engine_rows(bench: dict, torch: dict | None, label: str) -> list[dict]:
    """One row per shape: this engine and PyTorch side by side, with each one's share of the GEMM ceiling."""
    tshapes = {s.get("name"): s for s in (torch or {}).get("shapes", [])}
    rows = []
    for s in bench.get("shapes", []):
        t = tshapes.get(s["name"], {})
        ceiling = (t.get("gemm_ceiling") or {}).get("combined_tflops")
        rows.append(dict(
            model=label, shape=s["name"], pairs=s["pairs"], tokens=s["tokens"], backend=bench.get("backend"),
            torch_device=((torch or {}).get("environment") or {}).get("device_name"),
            qrank_tokens_per_s=s["tokens_per_s"], qrank_pairs_per_s=s["pairs_per_s"],
            qrank_gemm_tflops=s["gemm_tflops"],
            qrank_share_of_ceiling=s["gemm_tflops"] / ceiling if ceiling else None,
            qrank_share_of_ceiling_all_tokens=(s["gemm_flops"] / max(s["tokens_evaluated"], 1) * s["tokens"]
                                               / s["wall_s_median"] / 1e12 / ceiling) if ceiling else None,
            torch_tokens_per_s=t.get("tokens_per_s"), torch_pairs_per_s=t.get("pairs_per_s"),
            torch_share_of_ceiling=t.get("gemm_share_of_ceiling"), gemm_ceiling_tflops=ceiling,
            speedup=(s["tokens_per_s"] / t["tokens_per_s"]) if t.get("tokens_per_s") else None,
        ))
    return rows


def legend(rows: list[dict]) -> tuple[str, str]:
    torch_on = next((r["torch_device"] for r in rows if r.get("torch_device")), None)
    return (f"qrank ({rows[0].get('backend')})" if rows else "qrank",
            "PyTorch + transformers bf16 (sdpa)" + (f", {torch_on}" if torch_on else ""))


def svg_bars(rows: list[dict], path: str, title: str) -> None:
    """A grouped bar chart of tokens/s, written by hand (no matplotlib on the machine)."""
    w, h, left, bottom = 900, 420, 80, 60
    top = max([r["qrank_tokens_per_s"] for r in rows] + [r["torch_tokens_per_s"] or 0 for r in rows] + [1])
    n = max(len(rows), 1)
    slot = (w - left - 20) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="15">{title}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="black"/>']
    for i, r in enumerate(rows):
        x0 = left + i * slot + slot * 0.15
        for j, (key, color) in enumerate((("qrank_tokens_per_s", "#1f77b4"), ("torch_tokens_per_s", "#ff7f0e"))):
            v = r.get(key) or 0
            bh = (h - bottom - 40) * v / top
            parts.append(f'<rect x="{x0 + j * slot * 0.35:.1f}" y="{h - bottom - bh:.1f}" width="{slot * 0.33:.1f}" height="{bh:.1f}" fill="{color}"/>')
            parts.append(f'<text x="{x0 + j * slot * 0.35 + slot * 0.16:.1f}" y="{h - bottom - bh - 4:.1f}" text-anchor="middle">{v / 1000:.0f}k</text>')
        parts.append(f'<text x="{x0 + slot * 0.35:.1f}" y="{h - bottom + 16}" text-anchor="middle">{r["model"]} {r["shape"]}</text>')
    ours, theirs = legend(rows)
    parts.append(f'<rect x="{left}" y="{h - 25}" width="12" height="12" fill="#1f77b4"/><text x="{left + 16}" y="{h - 15}">{ours}</text>')
    parts.append(f'<rect x="{left + 220}" y="{h - 25}" width="12" height="12" fill="#ff7f0e"/><text x="{left + 236}" y="{h - 15}">{theirs}</text>')
    parts.append(f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">tokens/s</text></svg>')
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def chart(rows: list[dict], out_dir: str, title: str) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = os.path.join(out_dir, "gpu-bench.svg")
        svg_bars(rows, path, title)
        return path
    labels = [f"{r['model']}\n{r['shape']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ours, theirs = legend(rows)
    ax.bar(x - 0.2, [r["qrank_tokens_per_s"] for r in rows], 0.4, label=ours)
    ax.bar(x + 0.2, [r["torch_tokens_per_s"] or 0 for r in rows], 0.4, label=theirs)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("tokens/s")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "gpu-bench.png")
    fig.savefig(path, dpi=120)
    return path


def cmd_report(a) -> int:
    steps = [json.loads(line) for line in open(os.path.join(a.work, "steps.jsonl"), encoding="utf-8")]
    results = {}
    for path in sorted(glob.glob(os.path.join(a.work, "results", "*.json"))):
        try:
            results[os.path.basename(path)[:-5]] = read(path)
        except (OSError, ValueError) as err:  # a step cut short: say so, keep the rest
            results[os.path.basename(path)[:-5]] = dict(unreadable=str(err))
    rows = []
    for label in ("tiny", "0.6b", "4b"):
        bench = results.get(f"bench-qrank-{label}")
        if bench:
            rows += engine_rows(bench, results.get(f"bench-torch-{label}"), label)
    env = results.get("environment", {})
    main = "tiny" if a.dry_run else "0.6b"
    qrank, torch = results.get(f"bench-qrank-{main}") or {}, results.get(f"bench-torch-{main}") or {}
    doc = dict(format="qrank-gpu-check/1", dry_run=a.dry_run, environment=env, steps=steps, benchmark=rows,
               latency=dict(qrank=qrank.get("latency"), torch=torch.get("latency")),
               peak_device_memory=dict(qrank=qrank.get("device_peak_bytes"),
                                       torch=max([s.get("peak_memory_bytes") or 0 for s in torch.get("shapes", [])] or [0])),
               node_api=results.get("node-check"), vector_gpu=results.get("vector-gpu"), results=results)
    write(os.path.join(a.out, "gpu-check.json"), doc)
    if a.quiet:
        return 0
    if rows:
        title = "qrank vs PyTorch, synthetic Qwen3-Reranker shapes" + (" (DRY RUN, CPU, tiny model)" if a.dry_run else "")
        print(f"chart: {chart(rows, a.out, title)}")
    print("\n%-6s %-26s %12s %12s %8s %10s %10s" % ("model", "shape", "qrank tok/s", "torch tok/s", "x", "qrank/ceil", "torch/ceil"))
    for r in rows:
        f = lambda v, spec: (spec % v) if v is not None else "-"  # noqa: E731
        print("%-6s %-26s %12.0f %12s %8s %10s %10s" % (r["model"], r["shape"], r["qrank_tokens_per_s"], f(r["torch_tokens_per_s"], "%.0f"),
                                                        f(r["speedup"], "%.2f"), f(r["qrank_share_of_ceiling"], "%.2f"), f(r["torch_share_of_ceiling"], "%.2f")))
    lat = doc["latency"]["qrank"]
    if lat:
        print(f"one {lat.get('docs')}-document request: p50 {lat.get('p50_ms', 0):.1f} ms, p99 {lat.get('p99_ms', 0):.1f} ms")
    for r in (doc["vector_gpu"] or {}).get("runs", []):
        print(f"vector {r['index']:<16} batch {r['batch']:>5.0f}: {r['qps']:>10.0f} QPS, recall@10 {r['recall_at_10']:.4f}")
    counts = {k: sum(1 for s in steps if s["status"] == k) for k in ("PASS", "FAIL", "SKIP")}
    print(f"\nsteps: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--queries", type=int, required=True)
    p.add_argument("--min-words", type=int, default=8)
    p.add_argument("--max-words", type=int, default=60)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_pairs)
    p = sub.add_parser("texts")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dimensions", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_texts)
    p = sub.add_parser("golden-inputs")
    p.add_argument("--role", choices=["reranker", "causal", "embedder"], required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_golden_inputs)
    p = sub.add_parser("frame")
    p.add_argument("--engine", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_frame)
    for name, fn in (("check-golden", cmd_check_golden), ("check-ref", cmd_check_ref), ("check-same", cmd_check_same),
                     ("check-node", cmd_check_node)):
        p = sub.add_parser(name)
        p.add_argument("--name", required=True)
        p.add_argument("--result")
        p.add_argument("--model", help="the GGUF compared on (its layers and q/k norm gains set the bound)")
        p.set_defaults(fn=fn)
        if name == "check-golden":
            p.add_argument("--role", choices=["reranker", "causal", "embedder"], required=True)
            p.add_argument("--engine", required=True)
        if name == "check-ref":
            p.add_argument("--role", choices=["reranker", "embedder"], required=True)
            p.add_argument("--engine", required=True)
            p.add_argument("--ref", required=True)
            p.add_argument("--ref-bf16")
            p.add_argument("--inputs")
            p.add_argument("--tau", type=float, default=0.99)
        if name == "check-same":
            p.add_argument("--a", required=True)
            p.add_argument("--b", required=True)
        if name == "check-node":
            p.add_argument("--node", required=True)
            p.add_argument("--cpp", required=True)
            p.add_argument("--shape", required=True)
            p.add_argument("--within", type=float, default=0.10)
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--quiet", action="store_true", help="gpu-check.json only: no chart, no table")
    p.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
