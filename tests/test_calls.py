"""Tool-call fragments in every shape real providers send (DESIGN §5)."""

from proxy.chat.calls import CallAssembler


def assemble(*fragments):
    assembler = CallAssembler()
    added = [assembler.add(f) for f in fragments]
    return assembler.calls, added


def fn(name=None, arguments=None):
    f = {}
    if name is not None:
        f["name"] = name
    if arguments is not None:
        f["arguments"] = arguments
    return f


def test_openai_shape_index_and_fragments():
    calls, _ = assemble(
        {"index": 0, "id": "call_a", "type": "function", "function": fn("f", "")},
        {"index": 0, "function": fn(arguments='{"x"')},
        {"index": 0, "function": fn(arguments=": 1}")},
        {"index": 1, "id": "call_b", "type": "function", "function": fn("g", "{}")},
    )
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "f", '{"x": 1}'),
        ("call_b", "g", "{}"),
    ]


def test_missing_index_continues_the_last_call():
    calls, _ = assemble(
        {"id": "a", "function": fn("f", '{"x":')},
        {"function": fn(arguments="1}")},
        {"id": "b", "function": fn("g", "{}")},
    )
    assert [(c.name, c.arguments) for c in calls] == [("f", '{"x":1}'), ("g", "{}")]


def test_ollama_every_call_at_index_zero_told_apart_by_id():
    calls, _ = assemble(
        {"index": 0, "id": "a", "function": fn("f", '{"q": 1}')},
        {"index": 0, "id": "b", "function": fn("f", '{"q": 2}')},
    )
    assert [(c.id, c.arguments) for c in calls] == [("a", '{"q": 1}'), ("b", '{"q": 2}')]


def test_index_starting_at_one():
    calls, _ = assemble(
        {"index": 1, "id": "a", "function": fn("f", "{")},
        {"index": 2, "id": "b", "function": fn("g", "{")},
        {"index": 1, "function": fn(arguments="}")},
        {"index": 2, "function": fn(arguments="}")},
    )
    assert [(c.name, c.arguments) for c in calls] == [("f", "{}"), ("g", "{}")]


def test_empty_and_repeated_id_type_name_on_continuations():
    calls, added = assemble(
        {"index": 0, "id": "a", "type": "function", "function": fn("weather", "")},
        {"index": 0, "id": "", "type": "function", "function": fn("", '{"l": "S')},
        {"index": 0, "id": "a", "type": "function", "function": fn("weather", 'F"}')},
        {"index": 0, "id": "", "type": "function", "function": fn(arguments="")},
    )
    assert len(calls) == 1
    assert (calls[0].name, calls[0].arguments) == ("weather", '{"l": "SF"}')
    assert [a.is_new for a in added] == [True, False, False, False]


def test_cumulative_arguments_keep_only_the_new_text():
    calls, added = assemble(
        {"index": 0, "id": "a", "function": fn("f", '{"a"')},
        {"index": 0, "function": fn(arguments='{"a": 1')},
        {"index": 0, "function": fn(arguments='{"a": 1}')},
    )
    assert calls[0].arguments == '{"a": 1}'
    assert [a.arguments for a in added] == ['{"a"', ": 1", "}"]


def test_no_id_at_all_gets_a_generated_one():
    calls, _ = assemble({"function": fn("f", "{}")})
    assert calls[0].id.startswith("call_") and len(calls[0].id) > 10


def test_unknown_fields_survive_into_the_message():
    calls, _ = assemble(
        {
            "index": 0,
            "id": "a",
            "type": "function",
            "function": fn("f", "{}"),
            "extra_content": {"google": {"thought_signature": "sig"}},
        }
    )
    part = calls[0].as_message_part()
    assert part["extra_content"] == {"google": {"thought_signature": "sig"}}
    assert part["function"] == {"name": "f", "arguments": "{}"}
