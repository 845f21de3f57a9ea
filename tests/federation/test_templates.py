"""URI templates match exactly the URIs their expansions produce (RFC 6570 levels 1-3)."""

from __future__ import annotations

import time

import pytest

from wardgate.routing.templates import MAX_URI, InvalidTemplate, UriTemplate

MATCHES = [
    # level 1: a simple variable is one segment, never more
    ("users://{id}/profile", "users://7/profile", True),
    ("users://{id}/profile", "users://7/profile/x", False),
    ("users://{id}/profile", "users://7/8/profile", False),
    ("users://{id}/profile", "users:///profile", False),
    ("users://{id}/profile", "users://7/settings", False),
    ("users://{id}/settings", "users://7/profile", False),
    ("file:///{path}", "file:///notes.txt", True),
    ("file:///{path}", "file:///a/b.txt", False),
    ("test://template/{id}/data", "test://template/42/data", True),
    ("test://template/{id}/data", "test://template/42/data/more", False),
    ("test://template/{id}/data", "test://template/data", False),
    ("weather://{city}/{day}", "weather://paris/monday", True),
    ("weather://{city}/{day}", "weather://paris", False),
    # literals are literal: regex metacharacters mean nothing
    ("a.b://{x}", "aXb://1", False),
    ("a.b://{x}", "a.b://1", True),
    ("plain://exact", "plain://exact", True),
    ("plain://exact", "plain://exact2", False),
    # level 2: reserved expansion may span "/", fragment expansion starts with "#"
    ("file:///{+path}", "file:///a/b.txt", True),
    ("file:///{+path}", "file:///", False),
    ("doc://x{#section}", "doc://x#intro", True),
    ("doc://x{#section}", "doc://xintro", False),
    # level 3: several variables, labels, path segments, parameters, queries
    ("map://{x,y}", "map://1,2", True),
    ("map://{x,y}", "map://1", False),
    ("host://www{.domain}", "host://www.example", True),
    ("repo://r{/owner,name}", "repo://r/octo/cat", True),
    ("repo://r{/owner,name}", "repo://r/octo", False),
    ("repo://r{/owner,name}", "repo://r/octo/cat/extra", False),
    ("m://x{;a}", "m://x;a=1", True),
    ("m://x{;a}", "m://x;b=1", False),
    ("search://q{?term,limit}", "search://q", True),
    ("search://q{?term,limit}", "search://q?term=cats", True),
    ("search://q{?term,limit}", "search://q?term=cats&limit=5", True),
    ("search://q{?term,limit}", "search://q?limit=5", True),
    ("search://q{?term,limit}", "search://q?other=5", False),
    ("search://q{?term,limit}", "search://q?term=cats/../x#frag", False),
    ("search://q?fixed=1{&page}", "search://q?fixed=1&page=2", True),
    ("search://q?fixed=1{&page}", "search://q?fixed=1&evil=2", False),
    # level 4 modifiers are tolerated
    ("l4://{x:3}", "l4://abc", True),
    ("l4://{/list*}", "l4:///a/b/c", True),
]


@pytest.mark.parametrize(("template", "uri", "expected"), MATCHES)
def test_a_template_matches_only_its_expansions(template: str, uri: str, expected: bool) -> None:
    assert UriTemplate(template).matches(uri) is expected


@pytest.mark.parametrize(
    "template",
    [
        "a://{",
        "a://}",
        "a://{}",
        "a://{x{y}}",
        "a://{=x}",
        "a://{x y}",
        "a://{!x}",
        "a://{x}{y}",
        "a://{+x}/{+y}",
        "a://{+x}{#y}",
        "a://{/x*}/{+y}",
    ],
)
def test_a_malformed_template_is_refused(template: str) -> None:
    with pytest.raises(InvalidTemplate):
        UriTemplate(template)


def test_matching_stays_fast_on_long_hostile_uris() -> None:
    template = UriTemplate("files://{+path}/end")
    hostile = "files://" + "a/" * 3000 + "x"
    started = time.perf_counter()
    assert not template.matches(hostile)
    assert not template.matches("files://" + "/" * (MAX_URI + 1) + "end")
    assert time.perf_counter() - started < 0.5
    assert template.matches("files://a/b/end")
