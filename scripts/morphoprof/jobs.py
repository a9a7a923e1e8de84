"""What every rule script does first: log to the rule's log, size torch to the rule's threads, pick a device."""

from __future__ import annotations

import ctypes
import logging
import os
import sys


def pick_device(use_gpu: bool = True):
    """The GPU when one is present and wanted, else the CPU (with one warning)."""
    import torch

    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    if use_gpu:
        logging.getLogger("morphoprof").warning("no GPU found: running on the CPU")
    return torch.device("cpu")


def start_job(snakemake) -> logging.Logger:
    """Log to the rule's log file and give torch, where the job uses it, the rule's threads.

    torch is imported lazily throughout, so that parsing the workflow and the jobs that
    need no network do not pay for it.
    """
    log_file = snakemake.log[0] if snakemake.log else None
    logging.basicConfig(
        filename=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )
    threads = max(int(snakemake.threads), 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is imported later
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    reuse_freed_memory()
    return logging.getLogger(f"morphoprof.{snakemake.rule}")


def reuse_freed_memory() -> None:
    """Keep freed memory in this process for reuse (glibc's malloc; elsewhere a no-op).

    glibc serves every block over 32 MB with its own mmap and returns it to the kernel when freed,
    so torch on a CPU page-faults a large image's activations afresh on every forward pass.
    Allocating from the heap only and never trimming it ran EfficientNet-Lite0 on 1024x1280 fields
    4.5 times faster here (sys time 11.3 s to 0.8 s), for a peak memory 25 % higher, kept until the
    job ends.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_trim_threshold, -1)
    libc.mallopt(m_mmap_max, 0)
