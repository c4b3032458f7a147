"""The build record: atomic, merge-on-partial-rebuild, strict on read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from gitopsctl.buildrecord import BuildRecord, BuiltImage, read_record, record_path, write_record
from gitopsctl.errors import InputError


@dataclass
class FakeConfig:
    """Only what buildrecord reads; paths are resolved against a tmp dir."""

    root: Path
    state_dir: str = ".gitopsctl"

    def resolve(self, rel: str) -> Path:
        return (self.root / rel).resolve()


SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32


def image(service: str, digest: str = DIGEST) -> BuiltImage:
    return BuiltImage(service, f"harbor.lan/homelab/{service}",
                      ("0123456", "main-0123456-1764160000"), digest)


def test_round_trip_and_reference(tmp_path):
    cfg = FakeConfig(tmp_path)
    path = write_record(cfg, BuildRecord(SHA, {"frontend": image("frontend"),
                                               "backend": image("backend")}))
    assert path == tmp_path / ".gitopsctl/builds" / f"{SHA}.json"
    rec = read_record(cfg, SHA)
    assert rec.image("frontend").reference == \
        f"harbor.lan/homelab/frontend:main-0123456-1764160000@{DIGEST}"
    assert read_record(cfg, SHA[:7]).source == SHA
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_partial_rebuild_keeps_the_other_service(tmp_path):
    cfg = FakeConfig(tmp_path)
    write_record(cfg, BuildRecord(SHA, {"frontend": image("frontend"), "backend": image("backend")}))
    new = "sha256:" + "cd" * 32
    write_record(cfg, BuildRecord(SHA, {"frontend": image("frontend", new)}))
    rec = read_record(cfg, SHA)
    assert rec.image("frontend").digest == new
    assert rec.image("backend").digest == DIGEST


def test_missing_record_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError) as err:
        read_record(FakeConfig(tmp_path), SHA)
    assert "gitopsctl build --source" in err.value.hint


def test_missing_service_in_record(tmp_path):
    cfg = FakeConfig(tmp_path)
    write_record(cfg, BuildRecord(SHA, {"frontend": image("frontend")}))
    with pytest.raises(InputError) as err:
        read_record(cfg, SHA).image("backend")
    assert "--service backend" in err.value.hint


def test_corrupt_record_names_file_and_line(tmp_path):
    cfg = FakeConfig(tmp_path)
    path = record_path(cfg, SHA)
    path.parent.mkdir(parents=True)
    path.write_text('{\n  "version": 1,\n  "source": oops\n}\n')
    with pytest.raises(InputError) as err:
        read_record(cfg, SHA)
    assert str(err.value.location) == f"{path}:3:13"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.integers() | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(max_size=8), children, max_size=3), max_leaves=10))
def test_any_malformed_document_is_an_input_error(tmp_path, doc):
    cfg = FakeConfig(tmp_path)
    path = record_path(cfg, SHA)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError):
        read_record(cfg, SHA)


def test_ambiguous_prefix(tmp_path):
    cfg = FakeConfig(tmp_path)
    write_record(cfg, BuildRecord(SHA, {"frontend": image("frontend")}))
    write_record(cfg, BuildRecord("0123" + "f" * 36, {"frontend": image("frontend")}))
    with pytest.raises(InputError) as err:
        read_record(cfg, "0123")
    assert "matches 2" in err.value.message
