import pytest

import distill_lib  # noqa: F401  (sets the offline, in-project cache environment first)
from distill_lib.config import DataConfig
from distill_lib.data import prepare_data


@pytest.fixture(scope="session")
def bible_data(tmp_path_factory):
    """The whole World English Bible, a small BPE (fast to train) and its token streams."""
    cfg = DataConfig(corpus="web-bible", vocab_size=512, block_length=64)
    return prepare_data(cfg, cache_root=tmp_path_factory.mktemp("data-cache"), log=None)
