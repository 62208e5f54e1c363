"""Tool names as OpenAI takes them: valid characters, 64 at most, distinct — deterministic."""

from __future__ import annotations

import re

from openai_tool_proxy_mcp.names import openai_names, valid

OPENAI = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_characters_openai_refuses_become_underscores() -> None:
    assert valid("files/read.all") == "files_read_all"
    assert valid("get-time_2") == "get-time_2"
    assert valid("résumé écrit") == "r_sum___crit"
    assert valid("") == "_"


def test_a_long_name_is_cut_and_stays_distinct() -> None:
    first, second = valid("a" * 70 + "1"), valid("a" * 70 + "2")
    assert len(first) == len(second) == 64
    assert first != second
    assert first.startswith("a" * 55 + "_")
    assert valid("a" * 64) == "a" * 64


def test_a_name_two_servers_offer_is_prefixed_with_each_server() -> None:
    names = openai_names([("github", "search"), ("jira", "search"), ("jira", "create.issue")])
    assert names == {
        ("github", "search"): "github_search",
        ("jira", "search"): "jira_search",
        ("jira", "create.issue"): "create_issue",
    }


def test_names_clashing_once_made_valid_are_prefixed_too() -> None:
    names = openai_names([("a", "read.file"), ("b", "read_file")])
    assert names == {("a", "read.file"): "a_read_file", ("b", "read_file"): "b_read_file"}


def test_names_still_clashing_once_prefixed_get_a_hash() -> None:
    offers = [("a", "b_c"), ("z", "b_c"), ("a_b", "c"), ("x", "c")]
    names = openai_names(offers)
    assert (names[("z", "b_c")], names[("x", "c")]) == ("z_b_c", "x_c")
    ab, a_b = names[("a", "b_c")], names[("a_b", "c")]
    assert ab != a_b
    assert ab.startswith("a_b_c_") and a_b.startswith("a_b_c_")
    assert all(OPENAI.match(name) for name in names.values())


def test_the_names_do_not_depend_on_the_order_servers_come_in() -> None:
    offers = [("s1", "t"), ("s2", "t"), ("s1", "u" * 80), ("s2", "v.w")]
    assert openai_names(offers) == openai_names(reversed(offers))
    assert all(OPENAI.match(name) for name in openai_names(offers).values())
