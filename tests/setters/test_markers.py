"""Setter markers on the YAML shapes Flux users mark, edited byte for byte."""

from __future__ import annotations

import textwrap

import pytest
from ruamel.yaml import YAML

from gitopsctl.errors import InputError
from gitopsctl.imageref import parse_reference
from gitopsctl.setters import plan_file, render_scalar, scan_text, splice

DIGEST = "sha256:" + "ab" * 32
NEW = parse_reference(f"harbor.lan/homelab/frontend:main-9f8e7d6-1764200000@{DIGEST}")
NEW_NO_DIGEST = parse_reference("harbor.lan/homelab/frontend:main-9f8e7d6-1764200000")
POLICY = "flux-system:frontend"


def bump(text: str, ref=NEW, policy: str = POLICY) -> str:
    plan, _ = plan_file(scan_text(text, "f.yaml"), {policy: ref})
    return plan.new_text


def only_changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.split("\n"), new.split("\n")
    assert len(a) == len(b), "line count changed"
    return [(x, y) for x, y in zip(a, b) if x != y]


def load_all(text: str) -> list:
    return list(YAML(typ="safe", pure=True).load_all(text))


def test_deployment_whole_reference_gets_name_tag_and_digest():
    old = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: frontend   # the web tier
        spec:
          template:
            spec:
              containers:
                - name: web
                  image: harbor.lan/homelab/frontend:main-1a2b3c4-1764160000 # {"$imagepolicy": "flux-system:frontend"}
                - name: sidecar
                  image: harbor.lan/homelab/sidecar:v1
        """)
    new = bump(old)
    assert only_changed_lines(old, new) == [(
        '          image: harbor.lan/homelab/frontend:main-1a2b3c4-1764160000 # {"$imagepolicy": "flux-system:frontend"}',
        f'          image: harbor.lan/homelab/frontend:main-9f8e7d6-1764200000@{DIGEST} # {{"$imagepolicy": "flux-system:frontend"}}')]


def test_whole_reference_without_digest_when_the_value_has_none():
    old = 'image: "harbor.lan/homelab/frontend:old@sha256:' + "cd" * 32 + '" # {"$imagepolicy": "flux-system:frontend"}\n'
    assert bump(old, NEW_NO_DIGEST) == \
        'image: "harbor.lan/homelab/frontend:main-9f8e7d6-1764200000" # {"$imagepolicy": "flux-system:frontend"}\n'


def test_kustomization_images_with_tag_name_and_digest_setters():
    old = textwrap.dedent("""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [deployment.yaml]
        images:
        - name: frontend
          newName: old.lan/frontend # {"$imagepolicy": "flux-system:frontend:name"}
          newTag: main-1a2b3c4-1764160000 # {"$imagepolicy": "flux-system:frontend:tag"}
          digest: 'sha256:""" + "cd" * 32 + """' # {"$imagepolicy": "flux-system:frontend:digest"}
        """)
    new = bump(old)
    docs = load_all(new)
    assert docs[0]["images"] == [{"name": "frontend", "newName": "harbor.lan/homelab/frontend",
                                  "newTag": "main-9f8e7d6-1764200000", "digest": DIGEST}]
    assert f"digest: '{DIGEST}' #" in new  # single quotes kept
    assert "resources: [deployment.yaml]" in new


def test_digest_marker_left_alone_when_the_value_has_no_digest():
    old = 'digest: sha256:' + "cd" * 32 + ' # {"$imagepolicy": "flux-system:frontend:digest"}\n'
    plan, skipped = plan_file(scan_text(old, "k.yaml"), {POLICY: NEW_NO_DIGEST})
    assert plan.new_text == old and not plan.changes
    assert len(skipped) == 1 and "no digest" in skipped[0].reason


def test_cronjob_helmrelease_and_compose():
    cronjob = textwrap.dedent("""\
        apiVersion: batch/v1
        kind: CronJob
        spec:
          schedule: "*/5 * * * *"
          jobTemplate:
            spec:
              template:
                spec:
                  containers:
                  - name: job
                    image: harbor.lan/homelab/frontend:v1 # {"$imagepolicy": "flux-system:frontend"}
        """)
    helm = textwrap.dedent("""\
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        spec:
          values:
            image:
              repository: harbor.lan/homelab/frontend # {"$imagepolicy": "flux-system:frontend:name"}
              tag: v1 # {"$imagepolicy": "flux-system:frontend:tag"}
        """)
    compose = textwrap.dedent("""\
        services:
          web:
            image: harbor.lan/homelab/frontend:v1 # {"$imagepolicy": "flux-system:frontend"}
            healthcheck:
              test: ["CMD", "true"]
        """)
    assert load_all(bump(cronjob))[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"][0]["image"] == str(NEW)
    values = load_all(bump(helm))[0]["spec"]["values"]["image"]
    assert values == {"repository": NEW.name, "tag": NEW.tag}
    assert load_all(bump(compose))[0]["services"]["web"]["image"] == str(NEW)
    assert 'test: ["CMD", "true"]' in bump(compose)


def test_multi_document_file_with_markers_in_several_documents():
    old = ("---\na: x:1 # {\"$imagepolicy\": \"flux-system:frontend\"}\n...\n"
           "--- # second\nb: [1, 2]\n---\n- x:2 # {\"$imagepolicy\": \"flux-system:frontend\"}\n")
    scan = scan_text(old, "m.yaml")
    assert [(m.document, m.yaml_path) for m in scan.markers] == [(0, "a"), (2, "[0]")]
    new = bump(old)
    assert load_all(new) == [{"a": str(NEW)}, {"b": [1, 2]}, [str(NEW)]]
    assert new.count("...\n--- # second\n") == 1


def test_other_policies_unmarked_fields_and_marker_text_inside_strings_are_left_alone():
    old = textwrap.dedent("""\
        a: harbor.lan/x:1 # {"$imagepolicy": "flux-system:backend"}
        b: harbor.lan/x:1
        c: 'harbor.lan/x:1 # {"$imagepolicy": "flux-system:frontend"}'
        d: "q # {\\"$imagepolicy\\": \\"flux-system:frontend\\"}" # just a comment
        e: |
          x:1 # {"$imagepolicy": "flux-system:frontend"}
        f: # {"$imagepolicy": "flux-system:frontend"}
          g: h
        # {"$imagepolicy": "flux-system:frontend"}
        i: [j, k] # {"$imagepolicy": "flux-system:frontend"}
        """)
    scan = scan_text(old, "n.yaml")
    assert [m.policy for m in scan.markers] == ["flux-system:backend"]
    assert bump(old) == old


def test_malformed_markers_are_reported_not_used():
    old = ('a: x # {"$imagepolicy": flux-system:frontend}\n'
           'b: x # {"$imagepolicy": "frontend"}\n'
           'c: x # {"$imagepolicy": "flux-system:frontend:size"}\n'
           'd: x #{"$imagepolicy":"flux-system:frontend"}\n')
    scan = scan_text(old, "bad.yaml")
    assert [m.line for m in scan.markers] == [4]  # compact JSON is still a marker
    assert [m.line for m in scan.malformed] == [1, 2, 3]
    assert all(m.reason for m in scan.malformed)


def test_anchor_tag_and_alias_survive():
    old = textwrap.dedent("""\
        base: &img !!str harbor.lan/homelab/frontend:v1 # {"$imagepolicy": "flux-system:frontend"}
        copy: *img
        other: &o {k: v}
        again: *o
        """)
    new = bump(old, NEW_NO_DIGEST)
    assert new.splitlines()[0] == \
        f'base: &img !!str {NEW_NO_DIGEST} # {{"$imagepolicy": "flux-system:frontend"}}'
    assert new.splitlines()[1:] == old.splitlines()[1:]
    marker = scan_text(old, "a.yaml").markers[0]
    assert old[marker.start:marker.end] == "harbor.lan/homelab/frontend:v1"
    assert marker.column == len("base: &img !!str ") + 1


def test_crlf_and_missing_final_newline_are_kept():
    old = 'a: 1\r\nimage: x:1   # {"$imagepolicy": "flux-system:frontend"}\r\nb: 2'
    new = bump(old, NEW_NO_DIGEST)
    assert new == f'a: 1\r\nimage: {NEW_NO_DIGEST}   # {{"$imagepolicy": "flux-system:frontend"}}\r\nb: 2'


def test_byte_order_mark_is_kept():
    old = '\ufeffimage: x:1  # {"$imagepolicy": "flux-system:frontend"}\n'
    assert scan_text(old, "bom.yaml").markers[0].column == 8
    assert bump(old, NEW_NO_DIGEST) == \
        f'\ufeffimage: {NEW_NO_DIGEST}  # {{"$imagepolicy": "flux-system:frontend"}}\n'


def test_tab_before_the_marker_comment():
    old = 'image: x:1\t# {"$imagepolicy": "flux-system:frontend"}\n'
    assert bump(old, NEW_NO_DIGEST) == f'image: {NEW_NO_DIGEST}\t# {{"$imagepolicy": "flux-system:frontend"}}\n'


def test_numeric_looking_tag_is_quoted_so_it_stays_a_string():
    old = 'newTag: v1 # {"$imagepolicy": "flux-system:frontend:tag"}\n'
    new = bump(old, parse_reference("harbor.lan/homelab/frontend:1.10"))
    assert new == 'newTag: "1.10" # {"$imagepolicy": "flux-system:frontend:tag"}\n'
    assert load_all(new) == [{"newTag": "1.10"}]


@pytest.mark.parametrize("value", ["1.10", "123", "0x1F", "true", "no", "null", "~", "1e5", ".inf",
                                   "12:30", "-1", "+1", "", "08", "09", "0_9"])
def test_render_scalar_never_changes_a_strings_type(value):
    for style in (None, "'", '"'):
        text = f"k: {render_scalar(value, style)}\n"
        assert load_all(text) == [{"k": value}]
        yaml11 = "%YAML 1.1\n---\n" + text  # Kubernetes' go-yaml still reads yes/no/on/off as bools
        assert list(YAML(typ="safe", pure=True).load_all(yaml11)) == [{"k": value}]


def test_multi_line_scalar_is_replaced_as_one_span():
    old = 'image: "harbor.lan/homelab/\n  frontend:v1" # {"$imagepolicy": "flux-system:frontend"}\nz: 1\n'
    new = bump(old, NEW_NO_DIGEST)
    assert new == f'image: "{NEW_NO_DIGEST}" # {{"$imagepolicy": "flux-system:frontend"}}\nz: 1\n'


def test_parse_errors_name_line_and_column():
    with pytest.raises(InputError) as info:
        scan_text('ok: 1\nimage: x # {"$imagepolicy": "a:b"}\n  bad: [\n', "broken.yaml")
    loc = info.value.location
    assert loc.path == "broken.yaml" and loc.line is not None and loc.column is not None
    with pytest.raises(InputError) as info:
        scan_text('a: *nowhere # {"$imagepolicy": "a:b"}\n', "alias.yaml")
    assert "nowhere" in info.value.message and info.value.location.line == 1


def test_files_without_the_token_are_not_parsed():
    assert scan_text("this: [is: not: yaml", "x.yaml").markers == []


def test_splice_is_identity_without_changes():
    assert splice("abc", []) == "abc"


def test_failed_write_puts_back_the_files_already_written(tmp_path):
    from gitopsctl.errors import ExternalError
    from gitopsctl.setters import FilePlan, FileScan, write_plans

    first = tmp_path / "a.yaml"
    first.write_bytes(b"a: 1\r\n")
    first.chmod(0o640)
    missing = tmp_path / "gone" / "b.yaml"  # its directory vanished: the write fails
    plans = [FilePlan(FileScan(first, "a.yaml", "a: 1\r\n"), [], "a: 2\r\n"),
             FilePlan(FileScan(missing, "gone/b.yaml", "b: 1\n"), [], "b: 2\n")]
    with pytest.raises(ExternalError) as info:
        write_plans(plans)
    assert "gone/b.yaml" in info.value.message
    assert first.read_bytes() == b"a: 1\r\n" and oct(first.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml"]  # no temp files left


def test_non_utf8_file_is_an_input_error(tmp_path):
    from gitopsctl.setters import read_if_marked

    path = tmp_path / "latin.yaml"
    path.write_bytes(b'a: caf\xe9\nimage: x:1 # {"$imagepolicy": "a:b"}\n')
    with pytest.raises(InputError) as info:
        read_if_marked(path, "latin.yaml")
    assert info.value.location.line == 1 and "UTF-8" in info.value.message
