"""The OCI reference grammar: what parses, what is refused, and exact round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gitopsctl.errors import InputError
from gitopsctl.imageref import ImageReference, is_valid_reference, parse_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("text,domain,path,tag,digest", [
    ("nginx", "", "nginx", None, None),
    ("nginx:1.25", "", "nginx", "1.25", None),
    ("library/nginx", "", "library/nginx", None, None),
    ("harbor.lan/homelab/frontend:main-1a2b3c4-1764160000", "harbor.lan", "homelab/frontend",
     "main-1a2b3c4-1764160000", None),
    (f"harbor.lan/homelab/frontend:v1@{DIGEST}", "harbor.lan", "homelab/frontend", "v1", DIGEST),
    (f"harbor.lan/homelab/frontend@{DIGEST}", "harbor.lan", "homelab/frontend", None, DIGEST),
    ("localhost:5000/app", "localhost:5000", "app", None, None),
    ("localhost/app:x", "localhost", "app", "x", None),
    ("127.0.0.1:41234/homelab/backend:abc1234", "127.0.0.1:41234", "homelab/backend", "abc1234",
     None),
    ("Registry/app", "Registry", "app", None, None),  # an uppercase first part is a host
    ("a/b__c/d-e--f.g_h:T_1.x-y", "", "a/b__c/d-e--f.g_h", "T_1.x-y", None),
    ("[::1]:5000/app:v", "[::1]:5000", "app", "v", None),
])
def test_parses_the_parts(text, domain, path, tag, digest):
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == text
    assert ref.name == (f"{domain}/{path}" if domain else path)


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    ("harbor.lan/homelab/Frontend:v1", "repository path"),
    ("nginx:", "tag ''"),
    ("nginx:.hidden", "tag"),
    ("nginx:" + "a" * 129, "tag"),
    ("nginx@sha256:abc", "digest"),
    ("nginx@sha256:" + "a" * 63, "digest"),   # grammar allows 32+, sha256 needs exactly 64
    ("nginx@md5", "digest"),
    ("nginx latest", "whitespace"),
    (" nginx", "whitespace"),
    ("harbor.lan//app", "repository path"),
    ("harbor.lan/app/", "repository path"),
    ("-bad.lan/app", "registry host"),
    (":tag", "no repository"),
    ("a" * 256, "longer than 255"),
    ("app__-x", "repository path"),
])
def test_rejects_with_a_reason(text, fragment):
    with pytest.raises(InputError) as info:
        parse_reference(text)
    assert fragment in info.value.message
    assert info.value.hint
    assert not is_valid_reference(text)


def test_with_tag_and_digest_keep_the_name():
    ref = parse_reference("harbor.lan/homelab/frontend:old")
    assert str(ref.with_tag("new")) == "harbor.lan/homelab/frontend:new"
    assert str(ref.with_digest(DIGEST)) == f"harbor.lan/homelab/frontend:old@{DIGEST}"
    assert str(ref.with_digest(DIGEST).without_digest()) == "harbor.lan/homelab/frontend:old"
    with pytest.raises(InputError):
        ref.with_tag("bad tag")
    with pytest.raises(InputError):
        ref.with_digest("sha256:1234")


def test_pinned():
    assert not parse_reference("nginx").pinned
    assert not parse_reference("nginx:latest").pinned
    assert parse_reference("nginx:1").pinned
    assert parse_reference(f"nginx:latest@{DIGEST}").pinned


_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_sep = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(lambda first, rest: first + "".join(s + a for s, a in rest),
                       _alnum, st.lists(st.tuples(_sep, _alnum), max_size=2))
_path = st.lists(_component, min_size=1, max_size=3).map("/".join)
_host_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?\Z")
_domain = st.one_of(
    st.just(""),
    st.builds(lambda a, b, port: f"{a}.{b}" + (f":{port}" if port else ""), _host_label,
              _host_label, st.one_of(st.none(), st.integers(1, 65535))),
    st.just("localhost:5000"))
_tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_digest = st.from_regex(r"\A[0-9a-f]{64}\Z").map(lambda h: "sha256:" + h)


@settings(max_examples=300, deadline=None)
@given(_domain, _path, st.one_of(st.none(), _tag), st.one_of(st.none(), _digest))
def test_every_grammatical_reference_round_trips(domain, path, tag, digest):
    expected = ImageReference(domain, path, tag, digest)
    text = str(expected)
    if not domain and "/" in path and ("." in path.split("/")[0] or path.split("/")[0] == "localhost"):
        return  # the first component would read as a host: not this case
    assert parse_reference(text) == expected


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="aZ0:/@._-+ \t\u00e9", max_size=40))
def test_arbitrary_text_either_round_trips_or_is_an_input_error(text):
    try:
        ref = parse_reference(text)
    except InputError:
        return
    assert str(ref) == text
