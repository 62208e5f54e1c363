from tests.upstream import Reply, fixture, text_stream


async def test_tool_call_then_text(upstream, client):
    up = upstream(Reply(fixture("chat/openai-gpt4o-tool-call.sse")), Reply(text_stream("It is sunny")))
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], stream=True
    )
    chunks = [c async for c in stream]
    for c in chunks:
        print(c.model_dump_json(exclude_none=True))
    print(up.requests[1]["messages"])
    print(up.requests[0]["tools"])
