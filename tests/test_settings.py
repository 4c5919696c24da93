import pytest

from nbo_platform.defs.resources import build_resources
from nbo_platform.settings import load_settings


def test_the_dedup_window_is_a_whole_number_of_days_and_reaches_ingestion(tmp_path):
    env = {"NBO_DATA_DIR": str(tmp_path)}
    assert load_settings(env).dedup_window_days is None  # all history, the contract's default
    assert load_settings({**env, "NBO_DEDUP_WINDOW_DAYS": ""}).dedup_window_days is None
    settings = load_settings({**env, "NBO_DEDUP_WINDOW_DAYS": "30"})
    assert build_resources(settings)["landing"].dedup_window_days == 30
    for bad in ("-1", "2.5", "a week"):
        with pytest.raises(ValueError, match="NBO_DEDUP_WINDOW_DAYS"):
            load_settings({**env, "NBO_DEDUP_WINDOW_DAYS": bad})
