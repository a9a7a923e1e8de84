import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake(workdir: Path, *args, check: bool = True, timeout: int | None = None) -> subprocess.CompletedProcess:
    """Run the workflow's Snakemake in ``workdir`` with ``args``; with ``check``, a failed run fails
    the test with the tail of its output. ``timeout`` (seconds) stops a run that hangs (a SLURM job
    that never starts, say) and fails the test."""
    command = [*SNAKEMAKE, "--directory", str(workdir), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or b"").decode(errors="replace")[-6000:]
        raise AssertionError(f"snakemake ran past {timeout} s:\n{tail}") from err
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture
def shared_data():
    """The real data beside the checkout (../shared/data); absent on users' machines."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present: the real-data tests run only beside the project's shared data")
    return SHARED_DATA


@pytest.fixture
def model_finding_nothing(tmp_path):
    """A Cellpose model file saved as segmentation.train saves one, with every weight zero (its sizes
    kept): its cell probability is 0 everywhere, never above Cellpose's threshold, so it finds no nucleus."""
    import torch

    from morphoprof import segmentation

    model = segmentation.new_model(diam_mean=14.0)
    with torch.no_grad():
        for name, weights in model.net.named_parameters():
            if not name.startswith("diam_"):
                weights.zero_()
    path = tmp_path / "zero.pth"
    model.net.save_model(str(path))
    segmentation.sidecar(path).write_text('{"nbase": [8, 16, 32, 256], "diam_mean": 14.0}')
    return path
