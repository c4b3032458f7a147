"""The tag scheme: valid tags for any commit, ordered the way Flux's ImagePolicy orders them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from gitopsctl.errors import ConfigError, InputError
from gitopsctl.imageref import parse_reference
from gitopsctl.imagetags import (FLUX_FILTER_PATTERN, flux_tag_order, render_tag,
                                 template_fields)

shas = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
timestamps = st.integers(min_value=0, max_value=2**40)


@given(shas, timestamps)
def test_default_template_is_a_valid_tag_flux_can_order(sha, ts):
    tag = render_tag("main-{sha7}-{timestamp}", sha, ts)
    assert tag == f"main-{sha[:7]}-{ts}"
    assert parse_reference(f"harbor.lan/homelab/frontend:{tag}").tag == tag
    assert flux_tag_order(tag) == ts


@given(shas, timestamps, shas, timestamps)
def test_flux_order_follows_commit_time_not_sha(sha_a, ts_a, sha_b, ts_b):
    a = render_tag("main-{sha7}-{timestamp}", sha_a, ts_a)
    b = render_tag("main-{sha7}-{timestamp}", sha_b, ts_b)
    assert (flux_tag_order(a) < flux_tag_order(b)) == (ts_a < ts_b)


@given(shas, st.text(alphabet="abcXYZ019/_.-", min_size=1, max_size=40))
def test_any_branch_name_renders_to_a_valid_tag(sha, branch):
    tag = render_tag("{branch}-{sha7}", sha, 1, branch=branch)
    assert re.match(r"^[\w][\w.-]{0,127}$", tag, re.ASCII)


def test_sha7_tag_is_not_picked_by_the_flux_filter():
    assert flux_tag_order("1a2b3c4") is None
    assert FLUX_FILTER_PATTERN == r"^main-[a-f0-9]+-(?P<ts>[0-9]+)"


@pytest.mark.parametrize("template", ["main-{commit}", "main-{sha7!r}", "main-{sha7:>9}", "main-{"])
def test_bad_templates_are_config_errors(template):
    with pytest.raises(ConfigError) as err:
        template_fields(template)
    assert "tag_template" in err.value.message


def test_template_rendering_to_an_invalid_tag_is_refused():
    with pytest.raises(ConfigError):
        render_tag("-{sha7}", "a" * 40, 1)
    with pytest.raises(ConfigError):
        render_tag("{sha}" * 4, "a" * 40, 1)  # 160 characters: longer than a tag may be


@pytest.mark.parametrize("sha", ["abc1234", "g" * 40, "A" * 40, ""])
def test_only_full_lowercase_shas_are_accepted(sha):
    with pytest.raises(InputError):
        render_tag("main-{sha7}-{timestamp}", sha, 1)
