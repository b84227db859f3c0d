"""Parameter sweep: the Lyapunov exponent of the logistic map x -> r x (1 - x) for r over a grid.

Pure Python, CPU-bound, one point at a time. On SIGTERM it saves the finished points to checkpoint.json
and exits 75 (resume me); a restart continues from there. Writes result.json and prints one JSON line with
a checksum that does not depend on interruptions. ``--pause-at N`` (for tests) makes a fresh run stop before
point N, print {"paused_at": N} and wait for SIGTERM, so a test decides when it checkpoints.
"""

import argparse
import hashlib
import json
import math
import os
import signal
import sys

CHECKPOINT = "checkpoint.json"
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


def lyapunov(r, iterations, warmup=200):
    x, total = 0.5, 0.0
    for _ in range(warmup):
        x = r * x * (1 - x)
    for _ in range(iterations):
        x = r * x * (1 - x)
        total += math.log(abs(r * (1 - 2 * x)) + 1e-300)
    return total / iterations


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=400)
    ap.add_argument("--iterations", type=int, default=20_000)
    ap.add_argument("--r-min", type=float, default=2.8)
    ap.add_argument("--r-max", type=float, default=4.0)
    ap.add_argument("--ignore-sigterm", action="store_true", help="misbehave: never checkpoint")
    ap.add_argument("--pause-at", type=int, help="tests: a fresh run waits for SIGTERM before this point")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.SIG_IGN if a.ignore_sigterm else on_sigterm)
    results = []
    if os.path.exists(CHECKPOINT):
        with open(CHECKPOINT) as f:
            results = json.load(f)["results"]
    print(json.dumps({"resumed_at": len(results)}), flush=True)
    fresh = not results
    for i in range(len(results), a.points):
        if fresh and i == a.pause_at:
            pause_until_sigterm(i)
        if stop_requested:
            with open(CHECKPOINT + ".tmp", "w") as f:
                json.dump({"results": results}, f)
            os.replace(CHECKPOINT + ".tmp", CHECKPOINT)
            print(json.dumps({"checkpointed_points": len(results)}), flush=True)
            sys.exit(75)
        r = a.r_min + (a.r_max - a.r_min) * i / max(1, a.points - 1)
        results.append(lyapunov(r, a.iterations))
    chaotic = sum(1 for v in results if v > 0)
    digest = hashlib.sha256(json.dumps(results).encode()).hexdigest()[:16]
    result = {"points": a.points, "chaotic": chaotic, "checksum": digest}
    with open("result.json", "w") as f:
        json.dump(result, f)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
