from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """The real data beside the checkout (../shared/data); absent on users' machines."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present: the real-data tests run only beside the project's shared data")
    return SHARED_DATA
