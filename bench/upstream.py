"""A loopback upstream that streams instantly, for the benchmark.

A tiny HTTP/1.1 server on raw asyncio (no framework, so it costs the same whether a request
comes direct or through a proxy). The request's `x-bench` header sets the scenario:
`chunks=N;interval_ms=F;tool=K;idle=0|1`. Every content chunk carries the monotonic time it
was written (`t=<ns>;`), so the client can tell each chunk's latency. With `tool=K` the
first K rounds call the server tool `bench_echo`; once the request carries K results, the
round streams text. With `idle=1` a stream sends its head and first frame, then nothing
until the client closes it (an open, idle stream). A request that does not ask for a stream
gets the same rounds as one JSON body (a chat completion, or a response). The time between
the end of a tool-call round and the arrival of the next request is recorded by request id
(`x-bench-id`) and served at `GET /turnaround`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

CHAT_BASE = (
    '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1727346168,'
    '"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,'
)
CALL_ARGS = ['{"te', 'xt": "', "hello ", 'world"}']


def chat_frames(chunks: int, tool_round: bool) -> list[bytes | None]:
    """The frames of one chat round; None marks where a timestamped content chunk goes."""
    frames: list[bytes | None] = [
        (
            CHAT_BASE + '"delta":{"role":"assistant","content":""},"logprobs":null,'
            '"finish_reason":null}]}'
        ).encode()
    ]
    if tool_round:
        frames.append(
            (
                CHAT_BASE + '"delta":{"tool_calls":[{"index":0,"id":"call_bench",'
                '"type":"function","function":{"name":"bench_echo","arguments":""}}]},'
                '"logprobs":null,"finish_reason":null}]}'
            ).encode()
        )
        for part in CALL_ARGS:
            frames.append(
                (
                    CHAT_BASE + '"delta":{"tool_calls":[{"index":0,"function":'
                    '{"arguments":' + json.dumps(part) + "}}]},"
                    '"logprobs":null,"finish_reason":null}]}'
                ).encode()
            )
        finish = "tool_calls"
    else:
        frames += [None] * chunks
        finish = "stop"
    frames.append(
        (CHAT_BASE + '"delta":{},"logprobs":null,"finish_reason":"' + finish + '"}]}').encode()
    )
    frames.append(b"[DONE]")
    return frames


def chat_content(now: int) -> bytes:
    return (
        CHAT_BASE + '"delta":{"content":"t=' + str(now) + ';"},"logprobs":null,'
        '"finish_reason":null}]}'
    ).encode()


def responses_frames(chunks: int, tool_round: bool, rid: str) -> list[bytes | None]:
    def event(body: dict) -> bytes:
        return json.dumps(body, separators=(",", ":")).encode()

    response = {
        "id": rid,
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "gpt-4o",
        "output": [],
        "usage": None,
        "tools": [],
    }
    frames: list[bytes | None] = [
        event({"type": "response.created", "response": response}),
        event({"type": "response.in_progress", "response": response}),
    ]
    if tool_round:
        item = {
            "id": "fc_bench",
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": "call_bench",
            "name": "bench_echo",
        }
        frames.append(
            event({"type": "response.output_item.added", "output_index": 0, "item": item})
        )
        for part in CALL_ARGS:
            frames.append(
                event(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": "fc_bench",
                        "output_index": 0,
                        "delta": part,
                    }
                )
            )
        done = {**item, "status": "completed", "arguments": "".join(CALL_ARGS)}
        frames.append(event({"type": "response.output_item.done", "output_index": 0, "item": done}))
        output = [done]
    else:
        item = {
            "id": "msg_bench",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        part = {"type": "output_text", "text": "", "annotations": []}
        frames.append(
            event({"type": "response.output_item.added", "output_index": 0, "item": item})
        )
        frames.append(
            event(
                {
                    "type": "response.content_part.added",
                    "item_id": "msg_bench",
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                }
            )
        )
        frames += [None] * chunks
        done = {**item, "status": "completed", "content": [part]}
        frames.append(event({"type": "response.output_item.done", "output_index": 0, "item": done}))
        output = [done]
    usage = {"input_tokens": 10, "output_tokens": chunks, "total_tokens": 10 + chunks}
    frames.append(
        event(
            {
                "type": "response.completed",
                "response": {**response, "status": "completed", "output": output, "usage": usage},
            }
        )
    )
    return frames


def responses_content(now: int) -> bytes:
    return (
        b'{"type":"response.output_text.delta","item_id":"msg_bench","output_index":0,'
        b'"content_index":0,"delta":"t=' + str(now).encode() + b';","logprobs":[]}'
    )


def streamed(body: bytes) -> bool:
    """Whether the request asks for a stream (`"stream": true`), read without parsing it."""
    return b'"stream":true' in body or b'"stream": true' in body


def chat_body(chunks: int, tool_round: bool, now: int) -> bytes:
    """A whole chat completion: the call round, or text carrying `chunks` timestamps."""
    message: dict = {"role": "assistant", "content": None}
    if tool_round:
        call = {"name": "bench_echo", "arguments": "".join(CALL_ARGS)}
        message["tool_calls"] = [{"id": "call_bench", "type": "function", "function": call}]
    else:
        message["content"] = f"t={now};" * chunks
    completion = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1727346168,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_round else "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks},
    }
    return json.dumps(completion, separators=(",", ":")).encode()


def responses_body(chunks: int, tool_round: bool, rid: str, now: int) -> bytes:
    """A whole response: the call round, or a message carrying `chunks` timestamps."""
    item: dict
    if tool_round:
        item = {
            "id": "fc_bench",
            "type": "function_call",
            "status": "completed",
            "arguments": "".join(CALL_ARGS),
            "call_id": "call_bench",
            "name": "bench_echo",
        }
    else:
        text = {"type": "output_text", "text": f"t={now};" * chunks, "annotations": []}
        item = {
            "id": "msg_bench",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [text],
        }
    response = {
        "id": rid,
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-4o",
        "output": [item],
        "usage": {"input_tokens": 10, "output_tokens": chunks, "total_tokens": 10 + chunks},
        "tools": [],
    }
    return json.dumps(response, separators=(",", ":")).encode()


class Upstream:
    def __init__(self) -> None:
        self.round_ended: dict[str, int] = {}
        self.turnaround_ns: list[int] = []
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.monotonic_ns()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    body = await _read_chunked(reader)
                self.requests += 1
                await self.respond(method, path, headers, body, arrived, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def respond(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        arrived: int,
        writer: asyncio.StreamWriter,
    ) -> None:
        if path == "/turnaround":
            data = json.dumps(self.turnaround_ns).encode()
            self.turnaround_ns = []
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(data)).encode() + b"\r\n\r\n" + data
            )
            return
        settings = dict(p.split("=", 1) for p in headers.get("x-bench", "").split(";") if p)
        chunks = int(settings.get("chunks", 20))
        interval = float(settings.get("interval_ms", 0)) / 1000
        bench_id = headers.get("x-bench-id", "")
        responses = path.endswith("/responses")
        answered = body.count(b'"function_call_output"' if responses else b'"tool_call_id"')
        has_result = answered > 0
        tool_round = answered < int(settings.get("tool", 0))
        idle = settings.get("idle") == "1"
        if has_result and bench_id in self.round_ended:
            self.turnaround_ns.append(arrived - self.round_ended.pop(bench_id))
        if not streamed(body):
            rid = "resp_" + (bench_id or "x")
            data = (
                responses_body(chunks, tool_round, rid, time.monotonic_ns())
                if responses
                else chat_body(chunks, tool_round, time.monotonic_ns())
            )
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(data), data)
            )
            await writer.drain()
            if tool_round:
                self.round_ended[bench_id] = time.monotonic_ns()
            return
        if responses:
            frames = responses_frames(chunks, tool_round, "resp_" + (bench_id or "x"))
            content = responses_content
        else:
            frames = chat_frames(chunks, tool_round)
            content = chat_content
        if idle:
            frames = frames[:1]
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for seq, frame in enumerate(frames):
            if frame is None:
                if interval:
                    await asyncio.sleep(interval)
                frame = content(time.monotonic_ns())
            if responses:
                frame = frame[:-1] + b',"sequence_number":%d}' % seq
                name = frame[9 : frame.index(b'"', 9)]
                data = b"event: " + name + b"\ndata: " + frame + b"\n\n"
            else:
                data = b"data: " + frame + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            if interval:
                await writer.drain()
        if not idle:  # an idle stream stays open, silent, until the client closes it
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        if tool_round:
            self.round_ended[bench_id] = time.monotonic_ns()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def main(port: int) -> None:
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(os.environ["BENCH_PORT"])))
