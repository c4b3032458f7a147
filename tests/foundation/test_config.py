"""Config loading: the valid example, env overrides, and every error path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from gitopsctl import config
from gitopsctl.errors import ConfigError

from tests.fixtures.configs import MINIMAL

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitopsctl.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gitopsctl.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ=None) -> config.Config:
    return config.load(write(tmp_path, text), environ=environ or {})


def error_of(tmp_path: Path, text: str, environ=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    return info.value


def test_example_config_loads_with_every_section():
    c = config.load(EXAMPLE, environ={})
    assert c.registry.host == "harbor.lan" and c.registry.scheme == "https"
    assert c.image_repository("backend") == "harbor.lan/homelab/backend"
    assert c.stage.order == ("frontend", "backend")
    assert c.stage.delay == 60.0
    assert c.timeouts.failure == 300.0
    assert c.targets["backend-vm"].sync_interval == 300.0
    assert c.targets["backend-vm"].sealed_secrets == ("clusters/homelab/backend-vm/backend-secrets.sealed.yaml",)
    assert c.targets["homelab"].image_update_automation.name == "homelab"
    assert c.services["frontend"].paths == ("clusters/homelab/apps/frontend",)


def test_objects_are_frozen(tmp_path):
    c = load(tmp_path, MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.stage.delay = 1  # type: ignore[misc]


def test_defaults_fill_in(tmp_path):
    c = load(tmp_path, MINIMAL)
    assert c.git.branch == "main" and c.git.skip_marker == "[skip ci]"
    assert c.git.author.name == "gitopsctl"
    assert c.timeouts.failure == 300.0 and c.stage.delay == 60.0
    assert c.registry.username_env == "HARBOR_USERNAME"
    assert list(c.targets) == ["kubernetes"]
    assert c.path == (tmp_path / "gitopsctl.yaml").resolve()


@pytest.mark.parametrize("text,seconds", [("90", 90.0), ("90s", 90.0), ("2m", 120.0),
                                          ("1.5m", 90.0), ("1h", 3600.0), ("1500ms", 1.5)])
def test_durations(tmp_path, text, seconds):
    c = load(tmp_path, MINIMAL + f"  delay: {text}\n")
    assert c.stage.delay == seconds


def test_env_overrides_defaults_and_file_values(tmp_path):
    c = load(tmp_path, MINIMAL + "  delay: 90s\n",
             environ={"GITOPSCTL_STAGE__DELAY": "0", "GITOPSCTL_TIMEOUTS__FAILURE": "2m",
                      "GITOPSCTL_GIT__AUTHOR__NAME": "ci-bot", "GITOPSCTL_OUTPUT": "json"})
    assert c.stage.delay == 0.0
    assert c.timeouts.failure == 120.0
    assert c.git.author.name == "ci-bot"


def test_the_health_sample_interval_is_configurable_and_bounded(tmp_path):
    assert load(tmp_path, MINIMAL).timeouts.sample_interval == 0.5
    c = load(tmp_path, MINIMAL, environ={"GITOPSCTL_TIMEOUTS__SAMPLE_INTERVAL": "250ms"})
    assert c.timeouts.sample_interval == 0.25
    err = error_of(tmp_path, MINIMAL, environ={"GITOPSCTL_TIMEOUTS__SAMPLE_INTERVAL": "0s"})
    assert "timeouts.sample_interval" in err.message and "0.05" in err.message


def test_env_override_is_validated(tmp_path):
    err = error_of(tmp_path, MINIMAL, environ={"GITOPSCTL_TIMEOUTS__FAILURE": "soon"})
    assert "timeouts.failure" in err.message and "duration" in err.message


def test_missing_file_names_fix(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.yaml", environ={})
    assert "does not exist" in info.value.message
    assert "--config" in info.value.hint


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    err = error_of(tmp_path, "registry:\n  url: [unclosed\n  project: x\n")
    assert err.location.path.endswith("gitopsctl.yaml")
    assert err.location.line >= 2 and err.location.column >= 1
    assert "not valid YAML" in err.message


def test_top_level_must_be_mapping(tmp_path):
    err = error_of(tmp_path, "- a\n- b\n")
    assert "mapping" in err.message and err.location.line == 1


def test_unknown_key_suggests_the_right_one(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("  project: homelab", "  projekt: homelab"))
    assert err.message == "registry.projekt: unknown key"
    assert err.hint == "did you mean `project`?"
    assert (err.location.line, err.location.column) == (3, 3)


def test_missing_required_key_points_at_its_parent(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("  project: homelab\n", ""))
    assert err.message == "registry.project: required key is missing"
    assert err.location.line == 1
    assert "project: homelab" in err.hint


def test_wrong_type_names_key_expected_and_example(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("order: [frontend]", "order: [frontend]\n  delay: [1]"))
    assert err.message.startswith("stage.delay: expected a duration")
    assert "got a list" in err.message
    assert err.hint == "example: delay: 60s"
    assert (err.location.line, err.location.column) == (19, 10)


def test_out_of_range(tmp_path):
    err = error_of(tmp_path, MINIMAL + "  delay: 2h\n")
    assert "between 0s and 3600s" in err.message


def test_pattern_violation(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("policy: flux-system:frontend", "policy: frontend"))
    assert err.message.startswith("services.frontend.policy: expected a string matching")
    assert err.hint == "example: policy: flux-system:frontend"
    assert (err.location.line, err.location.column) == (9, 13)


def test_choice_violation(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("target: kubernetes", "target: k8s"))
    assert "one of kubernetes, vm" in err.message


def test_bool_is_not_a_number(tmp_path):
    err = error_of(tmp_path, MINIMAL + "timeouts:\n  healthy_samples: true\n")
    assert "healthy_samples: expected a whole number" in err.message


def test_stage_order_names_unknown_service(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("order: [frontend]", "order: [frontend, backend]"))
    assert err.message == "stage.order[1]: unknown service 'backend'"
    assert err.location.line == 18


def test_service_target_must_be_configured(tmp_path):
    text = MINIMAL.replace("target: kubernetes", "target: vm")
    err = error_of(tmp_path, text)
    assert "target 'vm' is not configured" in err.message
    assert "targets.vm" in err.hint


def test_bad_service_name(tmp_path):
    err = error_of(tmp_path, MINIMAL.replace("  frontend:\n    image", "  Front_End:\n    image"))
    assert "services.Front_End" in err.message


def test_empty_file_reports_missing_sections(tmp_path):
    err = error_of(tmp_path, "")
    assert err.message == "registry: required key is missing"


def test_default_config_path_is_repo_root(tmp_path):
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert config.default_config_path(sub) == tmp_path / "gitopsctl.yaml"


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=10))
def test_any_yaml_value_gives_config_error_never_a_crash(tmp_path_factory, value):
    from ruamel.yaml import YAML
    import io

    buf = io.StringIO()
    YAML(typ="safe").dump({"registry": value, "services": value, "targets": value}, buf)
    path = tmp_path_factory.mktemp("cfg") / "gitopsctl.yaml"
    path.write_text(buf.getvalue())
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={})
    assert info.value.location is not None
