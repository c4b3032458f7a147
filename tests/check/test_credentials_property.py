"""Property: a credential-like literal is always found, and its value never printed."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings, strategies as st

from gitopsctl.checks import content
from gitopsctl.checks.documents import load

_key = st.sampled_from(["password", "DB_PASSWORD", "apiKey", "api-key", "clientSecret",
                        "GITEA_TOKEN", "private_key", "accessKey"])
_value = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\"\\'$<{"),
                 min_size=6, max_size=40)


@settings(max_examples=150, deadline=None)
@given(key=_key, value=_value, as_env=st.booleans())
def test_credential_literals_are_reported_without_their_value(tmp_path_factory, key, value, as_env):
    quoted = json.dumps(value)
    if as_env:
        body = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                f"    - name: p\n      image: x:v1\n      env:\n        - name: {key}\n"
                f"          value: {quoted}\n")
    else:
        body = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata:\n  {key}: {quoted}\n"
    path = Path(tmp_path_factory.mktemp("cred")) / "m.yaml"
    path.write_text(body)
    file, errors = load(path, "m.yaml")
    assert not errors
    found = list(content.credentials(file))
    assert len(found) == 1 and found[0].rule == "GOC004"
    assert found[0].location.line == body.count("\n")
    shown = found[0].to_dict()
    assert value not in shown["message"] and value not in shown["location"]
