"""Markdown tables, goal checks and plots from the results dict that run.py writes to results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines import LABELS

GOALS = (
    # (id, text, target): ratios compare two engines on bert-base; the others are absolute
    ("throughput_vs_optimum", "INT8 b32x128 throughput ≥ 1.5× Optimum default", 1.5),
    ("throughput_vs_openvino", "INT8 b32x128 throughput ≥ 1.0× OpenVINO INT8", 1.0),
    ("minilm_cosine", "MiniLM INT8 mean cosine to PyTorch FP32 ≥ 0.99", 0.99),
    ("latency_128", "INT8 batch-1 latency at 128 tokens ≤ 25 ms (p50)", 25.0),
    ("fill_mask_vs_optimum", "fill-mask throughput ≥ 1.4× Optimum full-logits masked LM", 1.4),
    ("best_throughput_vs_openvino", "best of ours (any engine) b32x128 throughput ≥ 1.0× OpenVINO IR INT8", 1.0),
    ("static_vs_ours_int8", "int8-static on OpenVINO b32x128 throughput vs our ORT INT8 (report)", 1.0),
    ("static_batch_drift", "int8-static on OpenVINO: batch drift max element ≤ 1e-4", 1e-4),
)
#: Goals where lower is better.
LOWER_IS_BETTER = ("latency_128", "static_batch_drift")
OURS = ("ours-int8", "ours-ov-static", "ours-ort-static", "ours-int8-2s", "ours-ov-static-2s")


def _get(results: dict[str, Any], model: str, engine: str, *path: str) -> float | None:
    node: Any = results["models"].get(model, {})
    for key in ("engines", engine, *path):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    bb = "bert-base"
    pairs = results["models"].get(bb, {}).get("paired_speedup_of_ours_int8", {})

    def pair(engine: str, figure: str, fallback: float | None) -> float | None:
        value = pairs.get(engine, {}).get(figure)
        return value if value is not None else fallback

    measured = {
        "throughput_vs_optimum": pair(
            "optimum-int8",
            "throughput",
            ratio(
                _get(results, bb, "ours-int8", "throughput", "seq_per_s"),
                _get(results, bb, "optimum-int8", "throughput", "seq_per_s"),
            ),
        ),
        "throughput_vs_openvino": pair(
            "openvino-int8",
            "throughput",
            ratio(
                _get(results, bb, "ours-int8", "throughput", "seq_per_s"),
                _get(results, bb, "openvino-int8", "throughput", "seq_per_s"),
            ),
        ),
        "minilm_cosine": _get(results, "minilm", "ours-int8", "quality", "cosine_mean"),
        "latency_128": _get(results, bb, "ours-int8", "latency", "128", "p50_ms"),
        "fill_mask_vs_optimum": pair(
            "optimum-int8",
            "fill_mask",
            ratio(
                _get(results, bb, "ours-int8", "fill_mask", "sent_per_s"),
                _get(results, bb, "optimum-int8", "fill_mask", "sent_per_s"),
            ),
        ),
    }
    best = [v for e in OURS if (v := _get(results, bb, e, "throughput", "seq_per_s")) is not None]
    openvino = _get(results, bb, "openvino-int8", "throughput", "seq_per_s")
    measured["best_throughput_vs_openvino"] = ratio(max(best), openvino) if best else None
    measured["static_vs_ours_int8"] = ratio(
        _get(results, bb, "ours-ov-static", "throughput", "seq_per_s"),
        _get(results, bb, "ours-int8", "throughput", "seq_per_s"),
    )
    measured["static_batch_drift"] = _get(results, bb, "ours-ov-static", "batch_invariance", "max_element_diff")
    out = []
    for gid, text, target in GOALS:
        value = measured[gid]
        met = None if value is None else (value <= target if gid in LOWER_IS_BETTER else value >= target)
        out.append({"goal": gid, "text": text, "target": target, "measured": value, "met": met})
    return out


def _fmt(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _peak_pct(results: dict[str, Any], engine: str, gops: float | None) -> str:
    peaks = results["machine"].get("peaks_gops", {})
    key = "int8_vnni" if engine.endswith(("int8", "static")) else "fp32_avx512"
    if gops is None or key not in peaks:
        return "–"
    return f"{100 * gops / peaks[key]:.0f}%"


def speed_table(results: dict[str, Any], model: str) -> str:
    m = results["models"][model]
    lengths = list(next(iter(m["engines"].values()))["latency"])
    head = [
        "engine",
        *(f"b1 {n} tok p50/p95 ms" for n in lengths),
        "b32x128 seq/s median (best)",
        "GOP/s (peak %)",
        "ours INT8 speed-up, paired",
    ]
    pairs = m.get("paired_speedup_of_ours_int8", {})
    rows = []
    for name, e in m["engines"].items():
        lat = [f"{_fmt(e['latency'][n]['p50_ms'])} / {_fmt(e['latency'][n]['p95_ms'])}" for n in lengths]
        t = e.get("throughput", {})
        sp = pairs.get(name, {}).get("throughput")
        rows.append(
            [
                LABELS.get(name, name),
                *lat,
                f"{_fmt(t.get('seq_per_s'))} ({_fmt(t.get('best_seq_per_s'))})",
                f"{_fmt(t.get('gops'), 0)} ({_peak_pct(results, name, t.get('gops'))})",
                f"{sp:.2f}×" if sp else "",
            ]
        )
    return _md(head, rows)


def usage_table(results: dict[str, Any], model: str) -> str:
    m = results["models"][model]
    head = [
        "engine",
        "mixed set texts/s",
        "fill-mask b1 p50 ms",
        "fill-mask sent/s",
        "cold start s",
        "peak RSS MB",
        "size MB",
    ]
    rows = []
    for name, e in m["engines"].items():
        mx, fm, cs = e.get("mixed", {}), e.get("fill_mask", {}), e.get("cold_start", {})
        rows.append(
            [
                LABELS.get(name, name),
                _fmt(mx.get("texts_per_s")),
                _fmt(fm.get("b1_p50_ms")),
                _fmt(fm.get("sent_per_s")),
                _fmt(cs.get("cold_start_s"), 2),
                _fmt(cs.get("rss_peak_mb"), 0),
                _fmt(e.get("size_mb")),
            ]
        )
    extra = m.get("mixed_extra", {})
    for name, mx in extra.items():
        rows.append(
            [
                f"{LABELS.get(name.split('/')[0], name)}, batches in input order",
                _fmt(mx["texts_per_s"]),
                "",
                "",
                "",
                "",
                "",
            ]
        )
    return _md(head, rows)


def quality_table(results: dict[str, Any], model: str) -> str | None:
    m = results["models"][model]
    keys = ("quality", "mask_agreement", "batch_invariance")
    if not any(k in e for e in m["engines"].values() for k in keys):
        return None
    head = [
        "engine",
        "cosine mean",
        "cosine min",
        "NN agreement",
        "fill-mask top-1",
        "fill-mask top-5 overlap",
        "batch drift max / cosine min",
    ]
    rows = []
    for name, e in m["engines"].items():
        q, a, b = e.get("quality", {}), e.get("mask_agreement", {}), e.get("batch_invariance", {})
        drift = f"{b['max_element_diff']:.2g} / {b['cosine_min']:.6f}" if b else "–"
        rows.append(
            [
                LABELS.get(name, name),
                _fmt(q.get("cosine_mean"), 4),
                _fmt(q.get("cosine_min"), 4),
                _fmt(q.get("nn_agreement"), 3),
                _fmt(a.get("top1_agreement"), 3),
                _fmt(a.get("top5_overlap"), 3),
                drift,
            ]
        )
    return _md(head, rows)


GOALS_NOTE = (
    "Ratios are medians over rounds of the two engines' times taken in the same round (paired), "
    "so that load drifting between rounds cancels out."
)


def goals_table(results: dict[str, Any]) -> str:
    rows = [
        [
            g["text"],
            str(g["target"]),
            _goal_value(g),
            {True: "met", False: "missed", None: "not measured"}[g["met"]],
        ]
        for g in results["goals"]
    ]
    return _md(["goal (bert-base-shaped unless noted)", "target", "measured", ""], rows)


def _goal_value(g: dict[str, Any]) -> str:
    if g["goal"] == "static_batch_drift":
        return "–" if g["measured"] is None else f"{g['measured']:.2g}"
    return _fmt(g["measured"], 3 if g["goal"] == "minilm_cosine" else 2)


def _md(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    mc = results["machine"]
    out = [
        f"# Benchmarks ({results['date']})",
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores at {mc.get('ghz')} GHz ({', '.join(mc['isa'])}); "
        f"threads per engine: {results['plan']['threads']}. Command: `{results['command']}`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items() if v),
        "",
    ]
    if results.get("goals"):
        out += ["## Goals", "", goals_table(results), "", GOALS_NOTE, ""]
    for model, m in results["models"].items():
        out += [f"## {model}: {m['description']}", "", speed_table(results, model), "", usage_table(results, model), ""]
        q = quality_table(results, model)
        if q:
            out += [q, ""]
        out += [f"![{model}](bench_{model}.png)", ""]
    return "\n".join(out)


def plots(results: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for model, m in results["models"].items():
        eng = m["engines"]
        fig, axes = plt.subplots(2, 2, figsize=(12, 8))
        ax = axes[0][0]
        for name, e in eng.items():
            xs = [int(k) for k in e["latency"]]
            ax.plot(xs, [e["latency"][str(x)]["p50_ms"] for x in xs], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="tokens (batch 1)", ylabel="p50 latency, ms", title="Latency")
        ticks = [int(k) for k in next(iter(eng.values()))["latency"]]
        ax.set_xticks(ticks, [str(t) for t in ticks], minor=False)
        ax.minorticks_off()
        ax.legend(fontsize=8)
        for ax, key, field, title in (
            (axes[0][1], "throughput", "seq_per_s", "batch 32 x 128 tokens, seq/s"),
            (axes[1][0], "mixed", "texts_per_s", "mixed-length set, texts/s"),
            (axes[1][1], "fill_mask", "sent_per_s", "fill-mask, sentences/s"),
        ):
            names = [n for n, e in eng.items() if key in e]
            if not names:
                ax.set_visible(False)
                continue
            ax.barh(
                names,
                [eng[n][key][field] for n in names],
                color=["tab:green" if n.startswith("ours") else "tab:gray" for n in names],
            )
            ax.set(title=title)
            ax.invert_yaxis()
        fig.suptitle(f"{model}: {m['description']} — {results['machine']['cores']} cores", fontsize=10)
        fig.tight_layout()
        path = out / f"bench_{model}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path.name)
    return written
