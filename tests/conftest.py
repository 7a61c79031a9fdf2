"""Shared test fixtures: where the real DREAM samples live (../shared beside the checkout)."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DREAM_DIR = SHARED / "data" / "dream2022"


@pytest.fixture(scope="session")
def dream_dir() -> pathlib.Path:
    if not DREAM_DIR.is_dir():
        pytest.fail(f"real DREAM samples not found at {DREAM_DIR} (../shared beside the repo)")
    return DREAM_DIR


@pytest.fixture(scope="session")
def real_train_file(dream_dir) -> pathlib.Path:
    return dream_dir / "train_sample" / "de_boer_demo_train.txt"
