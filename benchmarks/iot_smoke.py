"""IoT smoke data set (T, RH, eCO2 at 1 Hz): what the label means, and what small causal models can reach.

    .venv/bin/python benchmarks/iot_smoke.py

Answers issue 6 ("F1 at least 0.98 on the data set's time-ordered test part") with numbers, in three parts:

(a) the labelled segments: length, label, T/RH/eCO2 ranges and typical 60 s rates of change, plus a check
    for blocks of rows that repeat earlier rows exactly;
(b) small models cheap enough for a heater, numpy only, evaluated on time-ordered splits only: the issue's
    split (first 70 % train, last 30 % test) and a forward-chaining variant (expanding train part, a gap
    of GAP_S seconds dropped before each test block so neighbouring seconds do not leak);
(c) whether any causal model reaches F1 >= 0.98 on the 70/30 test part, and where the errors sit.

Every feature at row t uses rows <= t only (causal). Every threshold, weight and split is fitted on the
train part only. The "hindsight" rows are fitted on the test part itself: they are not valid results,
only an upper bound on what the same model families could do with those features.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CSV = DATA / "smoke_iot" / "smoke_detection_iot_subset_T_RH_eCO2.csv"
TEST_FRACTION = 0.3
WINDOW_S = 60          # rolling window of the rate and spread features, samples (= seconds at 1 Hz)
GAP_S = 600            # rows dropped between train and test in forward chaining
FOLD_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # forward-chaining test blocks, fractions of the rows
N_CANDIDATES = 99      # threshold candidates per feature: train quantiles 1 %..99 %
TARGET_F1 = 0.98
CHANNELS = ("T", "RH", "eCO2")
UNITS = ("C", "%", "ppm")


# -- data ------------------------------------------------------------------------------------------

def load(path: Path = CSV) -> tuple[np.ndarray, np.ndarray]:
    """Read the CSV. Returns (x, y): x (n, 3) float = temperature C, humidity %, eCO2 ppm; y (n,) bool."""
    raw = np.genfromtxt(path, delimiter=",", skip_header=1)
    if not np.all(np.diff(raw[:, 0]) == 1):
        raise ValueError("index column is not consecutive: rows are not in the expected order")
    return raw[:, 1:4], raw[:, 4].astype(bool)


def segments(y: np.ndarray) -> list[tuple[int, int]]:
    """Runs of constant label. y (n,) bool. Returns [(start, stop), ...], stop exclusive, row indices."""
    edges = np.flatnonzero(np.diff(y.astype(np.int8))) + 1
    bounds = np.r_[0, edges, len(y)]
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def lagged(x: np.ndarray, lag: int) -> np.ndarray:
    """x shifted by `lag` rows into the past, the first row repeated at the start. x (n, k) -> (n, k)."""
    pad = np.repeat(x[:1], lag, axis=0)
    return np.concatenate([pad, x[:-lag]], axis=0)


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Std of the last `window` rows including the current one (fewer at the start). x (n, k) -> (n, k)."""
    c1 = np.cumsum(np.concatenate([np.zeros((1, x.shape[1])), x]), axis=0)
    c2 = np.cumsum(np.concatenate([np.zeros((1, x.shape[1])), x * x]), axis=0)
    stop = np.arange(1, len(x) + 1)
    start = np.maximum(stop - window, 0)
    count = (stop - start)[:, None]
    mean = (c1[stop] - c1[start]) / count
    var = (c2[stop] - c2[start]) / count - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def causal_features(x: np.ndarray, window: int = WINDOW_S) -> tuple[np.ndarray, list[str]]:
    """Features at row t from rows t-window..t only.

    x (n, 3): T C, RH %, eCO2 ppm at 1 Hz. Returns (f, names), f (n, 9):
    levels (C, %, ppm); change over the last `window` s per minute (K/min, %/min, ppm/min);
    std over the last `window` s (K, %, ppm). The first `window` rows use the rows available.
    """
    rate = (x - lagged(x, window)) * (60.0 / window)
    spread = rolling_std(x, window)
    names = [f"{c} [{u}]" for c, u in zip(CHANNELS, UNITS)]
    names += [f"d{c}/dt [{u}/min]" for c, u in zip(CHANNELS, UNITS)]
    names += [f"std{window}s {c} [{u}]" for c, u in zip(CHANNELS, UNITS)]
    return np.concatenate([x, rate, spread], axis=1), names


# -- (a) segments ----------------------------------------------------------------------------------

def describe_segments(x: np.ndarray, y: np.ndarray, split: int) -> list[dict]:
    """One dict per labelled segment. x (n, 3), y (n,) bool, split: first test row of the 70/30 split.

    Rates are |change over 60 s| per minute, taken only inside the segment (a description, not a feature);
    NaN for segments shorter than the window.
    """
    out = []
    for a, b in segments(y):
        seg = x[a:b]
        row = {"start": a, "stop": b, "rows": b - a, "label": int(y[a]),
               "train_rows": max(0, min(b, split) - a), "test_rows": max(0, b - max(a, split))}
        rate = np.abs(seg[WINDOW_S:] - seg[:-WINDOW_S]) if len(seg) > WINDOW_S else np.full((1, 3), np.nan)
        for j, name in enumerate(CHANNELS):
            row[name] = (seg[:, j].min(), np.median(seg[:, j]), seg[:, j].max())
            row["rate_" + name] = (np.median(rate[:, j]), np.quantile(rate[:, j], 0.95))
        out.append(row)
    return out


def repeated_blocks(x: np.ndarray, y: np.ndarray, min_rows: int = 1000) -> list[tuple[int, int, int, str]]:
    """Later segments whose RH and eCO2 columns repeat an earlier stretch of rows exactly.

    x (n, 3), y (n,) bool. Returns [(copy_start, original_start, rows, columns_equal), ...]; a candidate
    original is found by matching the first 20 RH values of a segment, then extended row by row.
    """
    found = []
    for a, b in segments(y):
        if b - a < min_rows:
            continue
        head = x[a:a + 20, 1]
        for s in range(0, a - 20):
            if np.array_equal(x[s:s + 20, 1], head):
                same = np.all(x[a:b, 1:3] == x[s:s + (b - a), 1:3], axis=1) if s + (b - a) <= a else None
                if same is not None and same.all():
                    t_equal = np.mean(x[a:b, 0] == x[s:s + (b - a), 0])
                    found.append((a, s, b - a, f"RH, eCO2 (T equal in {t_equal:.0%} of rows)"))
                break
    return found


def print_segments(rows: list[dict]) -> None:
    """Print the segment table of describe_segments."""
    print("== (a) labelled segments (rows in time order, 1 Hz; ranges min/median/max; "
          "|60 s change| median/p95)")
    print(f"{'rows':>13} {'n':>6} {'y':>2} {'train/test':>12}  {'T C':>19}  {'RH %':>17}  {'eCO2 ppm':>17}"
          f"  {'|dT| K':>10} {'|dRH| %':>10} {'|deCO2| ppm':>12}")
    for r in rows:
        rng = "  ".join(f"{lo:5.1f}/{md:5.1f}/{hi:5.1f}" if c != "eCO2" else f"{lo:4.0f}/{md:4.0f}/{hi:5.0f}"
                        for c, (lo, md, hi) in ((c, r[c]) for c in CHANNELS))
        rates = " ".join(f"{'n/a':>10}" if m != m else f"{m:4.2f}/{p:5.2f}" if c != "eCO2"
                         else f"{m:4.0f}/{p:7.0f}" for c, (m, p) in ((c, r["rate_" + c]) for c in CHANNELS))
        print(f"{r['start']:>6}-{r['stop'] - 1:<6} {r['rows']:>6} {r['label']:>2} "
              f"{r['train_rows']:>5}/{r['test_rows']:<6}  {rng}  {rates}")


# -- scoring ---------------------------------------------------------------------------------------

def prf(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of predictions p against labels y, both (n,) bool."""
    tp, fp, fn = int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "positives": int(y.sum()), "rows": int(len(y))}


def f1_at_thresholds(v: np.ndarray, y: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 of the rules v >= thr and v <= thr for every candidate. v, y (n,); thr (m,). Returns 2 x (m,)."""
    order = np.argsort(v, kind="stable")
    vs, ys = v[order], y[order].astype(np.int64)
    pos_below = np.r_[0, np.cumsum(ys)]                     # positives among the first k sorted rows
    total_pos = pos_below[-1]
    lo = np.searchsorted(vs, thr, side="left")              # rows with v < thr
    hi = np.searchsorted(vs, thr, side="right")             # rows with v <= thr
    tp_ge, pred_ge = total_pos - pos_below[lo], len(v) - lo
    tp_le, pred_le = pos_below[hi], hi
    f1_ge = 2 * tp_ge / np.maximum(pred_ge + total_pos, 1)
    f1_le = 2 * tp_le / np.maximum(pred_le + total_pos, 1)
    return f1_ge, f1_le


# -- models: each fit(f_train, y_train) returns a predict(f) -> (n,) bool ---------------------------

def fit_stump(f: np.ndarray, y: np.ndarray, columns: list[int], names: list[str]):
    """Best single rule `feature >= thr` or `<= thr` by F1 on the train part. f (n, k), y (n,) bool."""
    best = (-1.0, 0, 0.0, 1)
    for j in columns:
        thr = np.unique(np.quantile(f[:, j], np.linspace(0.01, 0.99, N_CANDIDATES)))
        f_ge, f_le = f1_at_thresholds(f[:, j], y, thr)
        for scores, sign in ((f_ge, 1), (f_le, -1)):
            i = int(np.argmax(scores))
            if scores[i] > best[0]:
                best = (float(scores[i]), j, float(thr[i]), sign)
    _, j, thr, sign = best

    def predict(g: np.ndarray) -> np.ndarray:
        return sign * g[:, j] >= sign * thr
    predict.rule = f"{names[j]} {'>=' if sign > 0 else '<='} {thr:.3g}"
    return predict


def fit_logistic(f: np.ndarray, y: np.ndarray, steps: int = 400, rate: float = 0.5, l2: float = 1e-3):
    """Logistic regression by full-batch gradient descent, output threshold fitted on train F1.

    f (n, k) features, y (n,) bool. Each feature is clipped to its train 0.5..99.5 % range and z-scored
    with train statistics, so one 60 000 ppm spike cannot dominate the gradient.
    """
    lo, hi = np.quantile(f, 0.005, axis=0), np.quantile(f, 0.995, axis=0)
    mu = np.clip(f, lo, hi).mean(axis=0)
    sd = np.clip(f, lo, hi).std(axis=0) + 1e-9

    def design(g: np.ndarray) -> np.ndarray:
        z = (np.clip(g, lo, hi) - mu) / sd
        return np.concatenate([z, np.ones((len(g), 1))], axis=1)

    a, t = design(f), y.astype(float)
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))
        grad = a.T @ (p - t) / len(t) + l2 * np.r_[w[:-1], 0.0]
        w -= rate * grad
    score = a @ w
    cut = np.unique(np.quantile(score, np.linspace(0.01, 0.99, N_CANDIDATES)))
    cut_best = float(cut[int(np.argmax(f1_at_thresholds(score, y, cut)[0]))])

    def predict(g: np.ndarray) -> np.ndarray:
        return design(g) @ w >= cut_best
    predict.rule = f"z-weights {np.round(w[:-1], 2).tolist()}, bias {w[-1]:.2f}, cut {cut_best:.2f}"
    return predict


def _gini_split(f: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
    """Best (weighted Gini, feature, thr) for the split f[:, j] <= thr. f (n, k), y (n,) bool."""
    best = (np.inf, -1, 0.0)
    n, npos = len(y), int(y.sum())
    for j in range(f.shape[1]):
        order = np.argsort(f[:, j], kind="stable")
        vs, cum = f[order, j], np.r_[0, np.cumsum(y[order])]
        thr = np.unique(np.quantile(vs, np.linspace(0.02, 0.98, 49)))
        k = np.searchsorted(vs, thr, side="right")          # rows going left
        pl, pr = cum[k], npos - cum[k]
        nl, nr = k, n - k
        with np.errstate(invalid="ignore", divide="ignore"):
            g = (2 * pl * (nl - pl) / np.maximum(nl, 1) + 2 * pr * (nr - pr) / np.maximum(nr, 1)) / n
        g[(nl == 0) | (nr == 0)] = np.inf
        i = int(np.argmin(g))
        if g[i] < best[0]:
            best = (float(g[i]), j, float(thr[i]))
    return best


def fit_tree(f: np.ndarray, y: np.ndarray, names: list[str], depth: int = 2):
    """Depth-limited classification tree, Gini splits on train quantiles, majority-label leaves.

    f (n, k), y (n,) bool. Returns predict(g) -> (m,) bool with a readable .rule.
    """
    def grow(idx: np.ndarray, d: int):
        leaf = bool(y[idx].mean() >= 0.5) if len(idx) else False
        if d == 0 or len(idx) < 20 or y[idx].all() or not y[idx].any():
            return leaf
        _, j, thr = _gini_split(f[idx], y[idx])
        if j < 0:
            return leaf
        go_left = f[idx, j] <= thr
        left, right = grow(idx[go_left], d - 1), grow(idx[~go_left], d - 1)
        return left if isinstance(left, bool) and left is right else (j, thr, left, right)

    root = grow(np.arange(len(y)), depth)

    def apply(node, g: np.ndarray) -> np.ndarray:
        if isinstance(node, bool):
            return np.full(len(g), node)
        j, thr, left, right = node
        out = np.empty(len(g), dtype=bool)
        m = g[:, j] <= thr
        out[m], out[~m] = apply(left, g[m]), apply(right, g[~m])
        return out

    def text(node) -> str:
        if isinstance(node, bool):
            return str(int(node))
        j, thr, left, right = node
        return f"({names[j]} <= {thr:.3g} ? {text(left)} : {text(right)})"

    def predict(g: np.ndarray) -> np.ndarray:
        return apply(root, g)
    predict.rule = text(root)
    return predict


def heat_rule_a1r(f: np.ndarray) -> np.ndarray:
    """Fixed EN 54-5 A1R-style heat rule (not fitted): 46 C rising > 4 K/min, or 56 C. f (n, 9) -> (n,)."""
    return ((f[:, 0] >= 46.0) & (f[:, 3] > 4.0)) | (f[:, 0] >= 56.0)


def model_zoo(names: list[str]) -> dict:
    """Name -> fit(f_train, y_train) returning predict. Levels are columns 0-2, rate/spread 3-8."""
    every = list(range(len(names)))
    return {
        "A1R heat rule (fixed)": lambda f, y: heat_rule_a1r,
        "stump, levels": lambda f, y: fit_stump(f, y, [0, 1, 2], names),
        "stump, rate/std": lambda f, y: fit_stump(f, y, every[3:], names),
        "stump, any": lambda f, y: fit_stump(f, y, every, names),
        "logistic, 9 feats": fit_logistic,
        "tree depth 2": lambda f, y: fit_tree(f, y, names, 2),
        "tree depth 3": lambda f, y: fit_tree(f, y, names, 3),
    }


# -- (b) evaluation --------------------------------------------------------------------------------

def evaluate(f: np.ndarray, y: np.ndarray, train: slice, test: slice, zoo: dict) -> dict[str, dict]:
    """Fit every model on rows `train`, score on rows `test`. f (n, k), y (n,) bool."""
    out = {}
    for name, fit in zoo.items():
        predict = fit(f[train], y[train])
        p = predict(f[test])
        out[name] = {**prf(y[test], p), "train_f1": prf(y[train], predict(f[train]))["f1"],
                     "rule": getattr(predict, "rule", "46 C & >4 K/min, or 56 C"), "pred": p}
    return out


def forward_chaining(f: np.ndarray, y: np.ndarray, zoo: dict) -> tuple[list[dict], dict[str, dict]]:
    """Expanding-window folds: train [0, edge - GAP_S), test [edge, next edge). f (n, k), y (n,) bool.

    Returns (per-fold results, pooled results over all test blocks: confusion counts summed).
    """
    n = len(y)
    edges = [int(e * n) for e in FOLD_EDGES]
    folds, pooled_y, pooled_p = [], [], {m: [] for m in zoo}
    for a, b in zip(edges[:-1], edges[1:]):
        res = evaluate(f, y, slice(0, a - GAP_S), slice(a, b), zoo)
        folds.append({"train_stop": a - GAP_S, "test": (a, b), "res": res})
        pooled_y.append(y[a:b])
        for m in zoo:
            pooled_p[m].append(res[m]["pred"])
    yy = np.concatenate(pooled_y)
    pooled = {m: prf(yy, np.concatenate(pooled_p[m])) for m in zoo}
    return folds, pooled


def _fmt(v: float) -> str:
    return "  n/a" if v != v else f"{v:5.3f}"


def print_results(title: str, res: dict[str, dict], show_rule: bool = True) -> None:
    """One line per model: train F1, test precision, recall, F1, and the fitted rule."""
    print(title)
    print(f"  {'model':<22} {'trainF1':>7} {'prec':>6} {'recall':>6} {'F1':>6}  {'tp/fp/fn':>18}  rule")
    for name, r in res.items():
        counts = f"{r['tp']}/{r['fp']}/{r['fn']}"
        print(f"  {name:<22} {_fmt(r.get('train_f1', float('nan'))):>7} {_fmt(r['precision']):>6} "
              f"{_fmt(r['recall']):>6} {_fmt(r['f1']):>6}  {counts:>18}  {r['rule'] if show_rule else ''}")


def per_segment_accuracy(y: np.ndarray, test_start: int, res: dict[str, dict]) -> None:
    """Share of rows labelled correctly, per model and per labelled segment of the test part."""
    segs = [(max(a, test_start), b) for a, b in segments(y) if b > test_start]
    print("  share of test rows labelled correctly, per segment (rows start-stop, label):")
    print(f"  {'model':<22} " + " ".join(f"{f'{a}-{b - 1} y{int(y[a])}':>17}" for a, b in segs))
    for name, r in res.items():
        p = r["pred"]
        cells = [np.mean(p[a - test_start:b - test_start] == y[a:b]) for a, b in segs]
        print(f"  {name:<22} " + " ".join(f"{c:>17.3f}" for c in cells))


def coverage(x: np.ndarray, y: np.ndarray, split: int) -> None:
    """Per class: the train range of each level and the share of test rows of that class outside it.

    x (n, 3) levels, y (n,) bool, split: first test row. A share near 1 means the test class is a kind of
    session the train part never showed for that label.
    """
    print("  levels per label, train range vs share of test rows of the same label outside it:")
    for label in (True, False):
        tr, te = x[:split][y[:split] == label], x[split:][y[split:] == label]
        lo, hi = tr.min(axis=0), tr.max(axis=0)
        outside = np.any((te < lo) | (te > hi), axis=1).mean()
        parts = ", ".join(f"{c} {a:.4g}..{b:.4g} {u} ({np.mean((te[:, j] < a) | (te[:, j] > b)):.0%} out)"
                          for j, (c, u, a, b) in enumerate(zip(CHANNELS, UNITS, lo, hi)))
        print(f"    y={int(label)}: train {parts}; test rows outside on any channel: {outside:.0%} "
              f"of {len(te)}")


def hindsight(f: np.ndarray, y: np.ndarray, test: slice, names: list[str]) -> dict[str, dict]:
    """NOT a valid result: stump / trees fitted on the test rows themselves, an upper bound per family."""
    zoo = {"HINDSIGHT stump, any": lambda g, t: fit_stump(g, t, list(range(len(names))), names),
           "HINDSIGHT tree depth2": lambda g, t: fit_tree(g, t, names, 2),
           "HINDSIGHT tree depth3": lambda g, t: fit_tree(g, t, names, 3)}
    return evaluate(f, y, test, test, zoo)


def main() -> int:
    t0 = time.perf_counter()
    x, y = load()
    n = len(y)
    split = int(n * (1 - TEST_FRACTION))
    f, names = causal_features(x)
    zoo = model_zoo(names)

    print(f"IoT smoke subset: {n} rows, {int(y.sum())} labelled 1 ({y.mean():.1%}); "
          f"70/30 split at row {split}; "
          f"features: {WINDOW_S} s causal windows\n")
    print_segments(describe_segments(x, y, split))
    for copy, orig, rows, cols in repeated_blocks(x, y):
        print(f"  rows {copy}-{copy + rows - 1} repeat rows {orig}-{orig + rows - 1} exactly in {cols}")

    main_res = evaluate(f, y, slice(0, split), slice(split, n), zoo)
    print_results(f"\n== (b1) time-ordered split: train rows 0-{split - 1}, test rows {split}-{n - 1} "
                  f"({int(y[split:].sum())} of {n - split} test rows labelled 1)", main_res)
    per_segment_accuracy(y, split, main_res)
    coverage(x, y, split)
    print(f"  all-positive rule on this test part: F1 {prf(y[split:], np.ones(n - split, bool))['f1']:.3f}")

    gap_res = evaluate(f, y, slice(0, split - GAP_S), slice(split, n), zoo)
    print_results(f"\n== (b2) same test part, {GAP_S} s gap (train rows 0-{split - GAP_S - 1})", gap_res,
                  show_rule=False)

    folds, pooled = forward_chaining(f, y, zoo)
    print(f"\n== (b3) forward chaining, {GAP_S} s gap; F1 per fold (test rows, labelled 1 / rows)")
    first = next(iter(zoo))
    spans = [f"{fd['test'][0]}-{fd['test'][1] - 1}" for fd in folds]
    counts = [f"{fd['res'][first]['positives']}/{fd['res'][first]['rows']}" for fd in folds]
    print(f"  {'model':<22} " + " ".join(f"{s:>13}" for s in spans) + f" {'pooled P/R/F1':>19}")
    print(f"  {'(positives/rows)':<22} " + " ".join(f"{c:>13}" for c in counts))
    for m in zoo:
        cells = " ".join(f"{_fmt(fd['res'][m]['f1']):>13}" for fd in folds)
        pr = pooled[m]
        print(f"  {m:<22} {cells} {_fmt(pr['precision'])}/{_fmt(pr['recall'])}/{_fmt(pr['f1'])}")

    hind = hindsight(f, y, slice(split, n), names)
    print_results("\n== hindsight upper bound (fitted ON the 70/30 test part; not a valid result)", hind)

    causal = {**{f"{m} (70/30)": r["f1"] for m, r in main_res.items()},
              **{f"{m} (70/30, gap)": r["f1"] for m, r in gap_res.items()}}
    best = max(causal, key=causal.get)
    print(f"\n== (c) best causal model fitted on train only: {best}, test F1 {causal[best]:.3f}; "
          f"reaches {TARGET_F1}: {'YES' if causal[best] >= TARGET_F1 else 'NO'}")
    best_pooled = max(r["f1"] for r in pooled.values())
    print(f"  best pooled forward-chaining F1: {best_pooled:.3f}; best hindsight F1 on the 70/30 test part "
          f"(fitted on it): {max(r['f1'] for r in hind.values()):.3f}")
    print(f"(run time {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
