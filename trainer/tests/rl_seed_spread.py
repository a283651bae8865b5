"""Measures the seed spread that test_rl's online-loop thresholds are derived from.

    .venv/bin/python trainer/tests/rl_seed_spread.py 0 1 2 3 4 5 6 7
    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python trainer/tests/rl_seed_spread.py 0 1 2 3

Prints each seed's mean reward before and after, its gain and the final KL, then mean / sd / min
of the gain. Not collected by pytest (the file name does not start with test_)."""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from tenet_trainer import make_tiny  # noqa: E402
from test_rl import online_loop  # noqa: E402


def main(seeds: list[int]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tiny = Path(scratch) / "tiny"
        make_tiny.run(make_tiny.Config(output=str(tiny), seed=0))
        gains, kls = [], []
        for seed in seeds:
            run = online_loop(tiny, Path(scratch), seed)
            gain, kl = run["after"] - run["before"], run["history"][-1]["kl_k3"]
            gains.append(gain)
            kls.append(kl)
            print(f"seed {seed}: {run['before']:.3f} -> {run['after']:.3f} gain {gain:+.3f} final kl_k3 {kl:.3f}", flush=True)
        spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
        print(f"gain mean {statistics.mean(gains):.3f} sd {spread:.3f} min {min(gains):.3f}; final kl_k3 min {min(kls):.3f}")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2, 3])
