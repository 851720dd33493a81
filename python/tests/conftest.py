import os
import pathlib

import pytest

DATA = pathlib.Path(os.environ.get("ATTNX_TEST_DATA_DIR",
                                   pathlib.Path(__file__).resolve().parents[2] / "tests" / "data"))


@pytest.fixture(scope="session")
def data_dir():
    assert (DATA / "manifest.json").is_file(), f"attnx test data not found in {DATA} (set ATTNX_TEST_DATA_DIR)"
    return DATA
