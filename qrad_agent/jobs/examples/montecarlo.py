"""Monte Carlo pricing of a European call and the 1-day 99 % value at risk of a 3-asset basket.

Standalone (numpy only): runs inside the sandbox. Paths come in batches, batch i drawn from
SeedSequence(seed).spawn(...)[i], so the result does not depend on interruptions: SIGTERM saves the
accumulators to checkpoint.json and exits 75 (resume me); a restart continues from it. Prints one JSON line:
price, VaR, paths/s and a checksum (SHA-256 of the exact results) reproducible from the seed.
``--pause-at N`` (for tests) makes a fresh run stop before batch N, print {"paused_at": N} and wait for
SIGTERM, so a test decides when it checkpoints.
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import time

import numpy as np

CHECKPOINT = "checkpoint.json"
S0, STRIKE, RATE, SIGMA, MATURITY = 100.0, 105.0, 0.02, 0.25, 1.0
WEIGHTS = np.array([0.5, 0.3, 0.2])
VOLS = np.array([0.20, 0.30, 0.25])
CORR = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.4], [0.3, 0.4, 1.0]])

stop_requested = False


def on_sigterm(signum, frame):
    global stop_requested
    stop_requested = True


def pause_until_sigterm(at):
    """Print {"paused_at": at}, then block until SIGTERM (no race: the signal is blocked before the print)."""
    global stop_requested
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print(json.dumps({"paused_at": at}), flush=True)
    if not stop_requested:
        signal.sigwait({signal.SIGTERM})
        stop_requested = True
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def batch(rng, n, steps):
    """Discounted call payoffs (sum) and basket 1-day returns for n paths."""
    dt = MATURITY / steps
    log_s = np.full(n, np.log(S0))
    for _ in range(steps):
        log_s += (RATE - 0.5 * SIGMA**2) * dt + SIGMA * np.sqrt(dt) * rng.standard_normal(n)
    payoff = np.maximum(np.exp(log_s) - STRIKE, 0.0) * np.exp(-RATE * MATURITY)
    z = rng.standard_normal((n, 3)) @ np.linalg.cholesky(CORR).T
    day = np.exp(VOLS * np.sqrt(1 / 252) * z - 0.5 * VOLS**2 / 252) - 1.0
    return float(payoff.sum()), day @ WEIGHTS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--pause-at", type=int, help="tests: a fresh run waits for SIGTERM before this batch")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    n_batches = -(-a.paths // a.batch)
    state = {"done": 0, "payoff_sum": 0.0, "losses": []}
    if os.path.exists(CHECKPOINT):
        with open(CHECKPOINT) as f:
            state = json.load(f)
    seeds = np.random.SeedSequence(a.seed).spawn(n_batches)
    t0, done0 = time.perf_counter(), state["done"]
    fresh = state["done"] == 0
    while state["done"] < n_batches:
        if fresh and state["done"] == a.pause_at:
            pause_until_sigterm(state["done"])
        if stop_requested:
            with open(CHECKPOINT + ".tmp", "w") as f:
                json.dump(state, f)
            os.replace(CHECKPOINT + ".tmp", CHECKPOINT)
            print(json.dumps({"checkpointed_batches": state["done"]}), flush=True)
            sys.exit(75)
        i = state["done"]
        n = min(a.batch, a.paths - i * a.batch)
        payoff, returns = batch(np.random.Generator(np.random.PCG64(seeds[i])), n, a.steps)
        state["payoff_sum"] += payoff
        state["losses"].append(float(np.quantile(-returns, 0.99)))
        state["done"] += 1
    elapsed = time.perf_counter() - t0
    price = state["payoff_sum"] / a.paths
    var99 = float(np.mean(state["losses"]))
    digest = hashlib.sha256(json.dumps([price, var99]).encode()).hexdigest()[:16]
    paths_run = min(a.paths, (state["done"] - done0) * a.batch)
    result = {"price": price, "var99": var99, "paths": a.paths, "checksum": digest,
              "paths_per_s": round(paths_run / elapsed) if elapsed > 0 else None, "elapsed_s": round(elapsed, 3)}
    with open("result.json", "w") as f:
        json.dump(result, f)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
