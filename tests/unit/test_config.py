from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from lakecdp.config import ConfigError, load_settings, parse_duration

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"


def make_conf(tmp_path: Path, base: dict[str, str], local: dict[str, str] | None = None) -> Path:
    for folder, files in (("base", base), ("local", local or {})):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    return tmp_path


def test_committed_conf_loads_with_defaults():
    settings = load_settings(REPO_CONF, env={})
    assert settings.lake.engine == "delta-spark"
    assert settings.events.max_future_skew == timedelta(minutes=5)


def test_local_files_then_env_override_base(tmp_path):
    conf = make_conf(
        tmp_path,
        {"pipeline.yaml": "lake:\n  root: /base\nspark:\n  shuffle_partitions: 4\n"},
        {"mine.yaml": "lake:\n  root: /local\n"},
    )
    settings = load_settings(conf, env={"LAKECDP__SPARK__SHUFFLE_PARTITIONS": "8", "UNRELATED": "x"})
    assert settings.lake.root == "/local"
    assert settings.spark.shuffle_partitions == 8


def test_errors_name_file_key_and_fix(tmp_path):
    conf = make_conf(tmp_path, {"pipeline.yaml": "lake:\n  engine: delta\n  rooot: /x\n"})
    with pytest.raises(ConfigError) as excinfo:
        load_settings(conf, env={})
    message = str(excinfo.value)
    assert "pipeline.yaml: lake.engine" in message and "'delta'" in message
    assert "lake.rooot" in message and "check its spelling" in message


def test_env_override_errors_name_the_variable(tmp_path):
    conf = make_conf(tmp_path, {"pipeline.yaml": "spark:\n  shuffle_partitions: 4\n"})
    with pytest.raises(ConfigError, match="env LAKECDP__SPARK__SHUFFLE_PARTITIONS: spark.shuffle_partitions"):
        load_settings(conf, env={"LAKECDP__SPARK__SHUFFLE_PARTITIONS": "many"})


def test_a_section_defined_in_two_base_files_is_an_error(tmp_path):
    conf = make_conf(tmp_path, {"a.yaml": "lake:\n  root: /a\n", "b.yaml": "lake:\n  root: /b\n"})
    with pytest.raises(ConfigError, match="also defined in"):
        load_settings(conf, env={})


def test_bad_yaml_names_the_file(tmp_path):
    conf = make_conf(tmp_path, {"pipeline.yaml": "lake: [unclosed\n"})
    with pytest.raises(ConfigError, match="pipeline.yaml: not valid YAML"):
        load_settings(conf, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("48h", timedelta(hours=48)), ("7d", timedelta(days=7)), ("90s", timedelta(seconds=90)), ("1.5h", timedelta(minutes=90))],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "48", "h", "-3h", "3 hours", None])
def test_parse_duration_rejects_nonsense(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_committed_conf_passes_every_capabilitys_check():
    from lakecdp.settings_check import check_sections

    sections = check_sections(load_settings(REPO_CONF, env={}))
    assert sections.segments and "cart_webhook" in sections.triggers.destinations


@pytest.mark.parametrize(
    "file, find, replace, named",
    [
        ("triggers.yaml", "      timeout: 10s", "      timeout: 10s\n      tiemout: 10s", "triggers.destinations.cart_webhook.tiemout"),
        ("privacy.yaml", "  admin_token_sha256: null", "  admin_token_sha256: null\n  admin_tokn: x", "privacy.admin_tokn"),
    ],
)
def test_a_typo_in_any_section_stops_every_command_before_it_runs(tmp_path, capsys, monkeypatch, file, find, replace, named):
    """Once, a triggers.yaml typo surfaced only when a trigger fell due, inside the stream's timer thread."""
    import shutil

    from lakecdp import cli

    conf = tmp_path / "conf"
    shutil.copytree(REPO_CONF / "base", conf / "base")
    text = (conf / "base" / file).read_text()
    assert find in text
    (conf / "base" / file).write_text(text.replace(find, replace, 1))
    monkeypatch.setattr("lakecdp.content.commands._validate", lambda *a: pytest.fail("the command ran"))
    monkeypatch.setenv("LAKECDP_CONF_DIR", str(conf))  # main() points it at --conf: restored after the test

    assert cli.main(["--conf", str(conf), "content", "validate"]) == 2
    error = capsys.readouterr().err
    assert file in error and named in error


@pytest.mark.parametrize(
    "local, env, source, named",
    [
        (
            {"mine.yaml": "esp:\n  destinations:\n    mc:\n      type: mailchimp\n      api_key: abc\n"},
            {},
            "local/mine.yaml",
            "esp.destinations.mc.api_key",
        ),
        ({}, {"LAKECDP__MODELS__INTENT__FAMILES": "[logistic]"}, "env LAKECDP__MODELS__INTENT__FAMILES", "models.intent.familes"),
        ({"mine.yaml": "triggers:\n  max_attempts: many\n"}, {}, "local/mine.yaml", "triggers.max_attempts"),
        ({"mine.yaml": "privacy:\n  consent:\n    evnt: X\n"}, {}, "local/mine.yaml", "privacy.consent.evnt"),
        ({"mine.yaml": "segments: {}\n"}, {}, "local/mine.yaml", "segments"),
    ],
)
def test_a_section_error_names_the_file_or_variable_that_set_the_key(tmp_path, local, env, source, named):
    """Not conf/base/<section>.yaml when the key came from conf/local or the environment."""
    import shutil

    from lakecdp.segments.rules import RuleError
    from lakecdp.settings_check import check_sections

    conf = tmp_path / "conf"
    shutil.copytree(REPO_CONF / "base", conf / "base")
    make_conf(conf, {}, local)
    with pytest.raises((ConfigError, RuleError)) as raised:
        check_sections(load_settings(conf, env=env))
    lines = [line for line in str(raised.value).splitlines() if named in line]
    assert lines and all(source in line.split(": ")[0] for line in lines), str(raised.value)


def test_built_in_customer_columns_are_the_customers_table():
    from lakecdp.config.models import BUILT_IN_CUSTOMER_COLUMNS
    from lakecdp.lake.tables import CUSTOMERS

    assert BUILT_IN_CUSTOMER_COLUMNS == CUSTOMERS.columns


@pytest.mark.parametrize(
    ("attribute", "says"),
    [
        ({"email": {}}, "'email' is a built-in column of customers"),
        ({"Tier": {}}, "an attribute name is lower_snake_case"),
        ({"tier": {"type": "int", "values": ["a"]}}, "values: a non-empty list, for a string attribute only"),
        ({"tier": {"min": 1}}, "min/max: for an int or double attribute only"),
        ({"age": {"type": "int", "min": 9, "max": 1}}, "min 9.0 > max 1.0"),
        ({"age": {"type": "integer"}}, "customers.attributes.age.type"),
    ],
)
def test_customer_attribute_declarations_are_checked(tmp_path, attribute, says):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "customers.yaml").write_text(yaml.safe_dump({"customers": {"attributes": attribute}}))
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, env={})
    assert says in str(caught.value) and "customers.yaml" in str(caught.value)


def test_a_batch_timeout_is_a_duration_or_none():
    assert load_settings(env={}).stream.batch_timeout == timedelta(minutes=30)  # conf/base/pipeline.yaml
    assert load_settings(env={"LAKECDP__STREAM__BATCH_TIMEOUT": "none"}).stream.batch_timeout is None
    with pytest.raises(ConfigError, match="batch_timeout"):
        load_settings(env={"LAKECDP__STREAM__BATCH_TIMEOUT": "soon"})
