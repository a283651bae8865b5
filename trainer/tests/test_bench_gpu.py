"""bench/gpu.sh runs on a CPU with a tiny model (the GPU figures need a GPU machine)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_runs_on_cpu_and_prints_its_ratio():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--tiny"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert re.match(r"reward model: .* tokens/s, MFU [0-9.]+%", lines[1])
    assert re.match(r"dpo: .* tokens/s, MFU [0-9.]+%", lines[2])
    ratio = float(re.fullmatch(r"ratio=([0-9.]+)", lines[-1]).group(1))
    assert 0 < ratio < 1.5
