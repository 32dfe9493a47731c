"""`make test-flipped` runs the lessons again under other CPU arithmetic (tests/flipped-arithmetic.env).

These tests check that the flip is real: the settings reach torch, and on a vectorised CPU they
change the last bits of a forward pass of the teacher while staying within float32 noise. The
lessons' checked outputs must print the same either way (nbval compares them with the stored ones).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

ENV_FILE = Path(__file__).with_name("flipped-arithmetic.env")

PROBE = r"""
import json, sys, torch
import tinybert_lib as tl
teacher = tl.load_teacher("minilm")
batch = teacher.tokenizer(["a gripping , funny and moving film .", "bad ."], padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = teacher(**batch).hidden_states[-1]
torch.save(hidden, sys.argv[1])
print(json.dumps({"threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def flipped_env() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_FILE.read_text().split() if line.strip()]
    return {key: value for key, value in pairs}


def probe(tmp_path: Path, name: str, extra: dict[str, str]) -> tuple[dict, torch.Tensor]:
    out = tmp_path / f"{name}.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra}
    done = subprocess.run([sys.executable, "-c", PROBE, str(out)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), torch.load(out)


def test_flipped_settings_are_the_makefiles():
    makefile = (ENV_FILE.parents[1] / "Makefile").read_text()
    assert "FLIPPED := $(shell cat tests/flipped-arithmetic.env)" in makefile
    assert "$(FLIPPED) $(PY) -m pytest" in makefile
    assert {"OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY"} <= set(flipped_env())


def test_flipped_arithmetic_changes_the_last_bits_only(tmp_path):
    base_info, base = probe(tmp_path, "default", {})
    info, flipped = probe(tmp_path, "flipped", flipped_env())
    assert info == {"threads": 1, "capability": "DEFAULT"}
    relative = ((flipped - base).abs().max() / base.abs().max()).item()
    print(f"default {base_info}, flipped {info}: max relative difference {relative:.1e}")
    assert relative < 1e-4  # float32 noise, not a different computation
    if platform.machine() in ("x86_64", "AMD64") and base_info["capability"] != "DEFAULT":
        assert not torch.equal(base, flipped), "the flipped settings did not change the arithmetic"


def test_close_is_relative_to_the_scale_and_catches_real_differences():
    from tinybert_lib.exercises import close, relative_difference

    big = torch.tensor([1000.0, -2000.0])
    assert close(big + 0.01, big)  # 5e-6 of the scale: float noise at this size
    assert not close(big * 1.01, big)  # a 1% error is a bug
    assert not close(torch.ones(3), torch.ones(4))  # shapes must match
    assert relative_difference(torch.zeros(2), torch.zeros(2)) == 0.0
    small = torch.tensor([1e-6, 2e-6])
    assert close(small * (1 + 1e-6), small) and not close(small * 1.1, small)
