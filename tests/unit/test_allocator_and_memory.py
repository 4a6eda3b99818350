"""Peak memory per run (VmHWM, reset per run) and the glibc allocator tuning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from flarena.bench.timing import peak_memory_bytes

CPU = torch.device("cpu")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux only")


PEAK_AFTER_RESET = """
import torch
from flarena.bench.timing import peak_memory_bytes, reset_peak_memory
cpu = torch.device("cpu")
reset_peak_memory(cpu)
base = peak_memory_bytes(cpu)
big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
grown = peak_memory_bytes(cpu) - base
del big
reset_peak_memory(cpu)
print(grown, peak_memory_bytes(cpu) - base)
"""


@linux
def test_peak_memory_sees_a_big_tensor_and_forgets_it_after_a_reset():
    # in a fresh process: in this one, freed heap memory (kept by the allocator tuning) may
    # already be resident, so a new tensor need not raise the peak at all
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "FLARENA_MALLOC": "default"}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_AFTER_RESET],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    grown, after_reset = int(out[0]), int(out[1])
    assert grown >= 60 * 2**20
    assert after_reset < 60 * 2**20


@linux
def test_a_child_process_reports_its_own_peak_not_the_parents():
    # Linux carries ru_maxrss over fork + exec; VmHWM belongs to the new process
    hog = torch.ones(256 * 2**20 // 4)  # the parent's peak is now at least 256 MiB more
    code = (
        "import torch; from flarena.bench.timing import peak_memory_bytes; "
        "print(peak_memory_bytes(torch.device('cpu')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
    )
    assert child < peak_memory_bytes(CPU) - 200 * 2**20
    del hog


@pytest.mark.parametrize(("env", "applied"), [("", True), ("default", False)])
def test_malloc_tuning_can_be_turned_off(env, applied):
    code = "from flarena.bench.allocator import tune_malloc; print(tune_malloc(), tune_malloc())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FLARENA_MALLOC": env, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    want = applied and sys.platform.startswith("linux")
    assert proc.stdout.split() == [str(want), str(want)]
