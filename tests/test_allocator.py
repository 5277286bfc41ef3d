"""wsend.tune_allocator: glibc's allocator keeps freed memory for reuse."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

import wsend


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


def test_applies_on_glibc_in_a_fresh_process() -> None:
    code = "import wsend; print(wsend.tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(_glibc())


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_large_allocations_stop_mapping_fresh_memory() -> None:
    """With the defaults, 4 MiB blocks are mapped and unmapped; tuned, they are reused."""
    code = """
import resource, wsend
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def churn():
    before = faults()
    for _ in range(50):
        block = bytearray(4 << 20)
        del block
    return faults() - before
untuned = churn()
assert wsend.tune_allocator()
churn()
tuned = churn()
print(untuned, tuned)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    untuned, tuned = map(int, out.stdout.split())
    assert tuned * 10 < untuned  # 50 x 1,024 pages faulted before, almost none after


@pytest.mark.parametrize("kwargs", [{"mmap_threshold": -1}, {"trim_threshold": 1 << 31}])
def test_rejects_thresholds_out_of_range(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        wsend.tune_allocator(**kwargs)
