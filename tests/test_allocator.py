import subprocess
import sys

import pytest

# Page faults of the last 5 of 20 steps that each hold two 40 MiB tensors at once, then free them (as a
# batch's temporaries do), in a fresh interpreter with or without keep_freed_memory().
FAULTS_PER_STEP = """
import resource, sys, torch
from speechcls.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
counts = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    temporaries = [torch.ones(40 * 2**20 // 4) for _ in range(2)]
    del temporaries
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(counts[-5:]) / 5)
"""
PAGES_OF_ONE_TENSOR = 40 * 2**20 // 4096


def faults_per_step(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True, check=True)
    return float(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    # By default glibc maps every tensor over 32 MiB anew and unmaps it when freed: fresh pages each step.
    assert faults_per_step("default") >= 2 * PAGES_OF_ONE_TENSOR
    assert faults_per_step("keep") < 100
