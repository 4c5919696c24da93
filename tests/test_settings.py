import pytest

from nbo_platform.cli import EXIT_ERRORS
from nbo_platform.cli import main as cli_main
from nbo_platform.defs.resources import build_resources
from nbo_platform.settings import SettingsError, load_settings


def test_the_dedup_window_is_a_whole_number_of_days_and_reaches_ingestion(tmp_path):
    env = {"NBO_DATA_DIR": str(tmp_path)}
    assert load_settings(env).dedup_window_days is None  # all history, the contract's default
    assert load_settings({**env, "NBO_DEDUP_WINDOW_DAYS": ""}).dedup_window_days is None
    settings = load_settings({**env, "NBO_DEDUP_WINDOW_DAYS": "30"})
    assert build_resources(settings)["landing"].dedup_window_days == 30
    for bad in ("-1", "2.5", "a week", "²"):
        with pytest.raises(SettingsError, match="NBO_DEDUP_WINDOW_DAYS"):
            load_settings({**env, "NBO_DEDUP_WINDOW_DAYS": bad})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"NBO_PARTITIONS_START": "01/02/2024"}, "NBO_PARTITIONS_START='01/02/2024': expected a date"),
        ({"NBO_DELIVERY": "pigeon"}, "NBO_DELIVERY='pigeon': expected one of outbox, webhook"),
        ({"NBO_DELIVERY": "webhook"}, "NBO_DELIVERY='webhook' needs NBO_WEBHOOK_URL"),
        ({"NBO_PARQUET_VERSION": "v3"}, "NBO_PARQUET_VERSION='v3': expected one of v1, v2"),
        ({"NBO_LAKE_URI": "/srv/lake,2025"}, "NBO_LAKE_URI: the lake root '/srv/lake,2025' holds a comma"),
        ({"NBO_DATA_DIR": "/srv/nbo,1"}, "NBO_DATA_DIR: the lake root '/srv/nbo,1/lake' holds a comma"),
    ],
)
def test_a_setting_the_platform_cannot_use_is_named_before_anything_runs(tmp_path, variables, message):
    with pytest.raises(SettingsError, match=message):
        load_settings({"NBO_DATA_DIR": str(tmp_path), **variables})


def test_the_command_reports_a_bad_setting_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NBO_DELIVERY", "pigeon")
    assert cli_main(["run", "--data-dir", str(tmp_path)]) == EXIT_ERRORS
    err = capsys.readouterr().err
    assert err.strip() == "nbo: NBO_DELIVERY='pigeon': expected one of outbox, webhook"
