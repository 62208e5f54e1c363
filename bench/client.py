"""A lean HTTP/1.1 streaming client for the benchmark: raw asyncio, so the client costs the
same for every target and stays out of the measurement's way."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    status: int = 0
    started: int = 0  # monotonic ns, just before the request was written
    first_content: int = 0  # monotonic ns when the first content chunk arrived
    ended: int = 0
    chunk_latency_ns: list[int] = field(default_factory=list)  # arrival - upstream write time
    arrivals: list[int] = field(default_factory=list)
    body: bytes = b""
    error: str = ""


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, path: str, body: dict, headers: dict[str, str], keep_body: bool = False
    ) -> Result:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\nauthorization: Bearer sk-bench\r\n"
            f"content-length: {len(data)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode()
        result = Result(started=time.monotonic_ns())
        self.writer.write(head + data)
        try:
            await self._read(result, keep_body)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            result.error = repr(exc)
            self.writer.close()
            self.writer = None
        result.ended = time.monotonic_ns()
        return result

    async def _read(self, result: Result, keep_body: bool) -> None:
        reader = self.reader
        assert reader is not None
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        result.status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        body = []
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunk = await reader.readexactly(size + 2)
                self._saw(result, chunk)
                if keep_body:
                    body.append(chunk[:-2])
        else:
            chunk = await reader.readexactly(int(headers.get("content-length", "0")))
            self._saw(result, chunk)
            body.append(chunk)
        result.body = b"".join(body)
        if result.status >= 400:
            result.error = f"HTTP {result.status}"

    @staticmethod
    def _saw(result: Result, chunk: bytes) -> None:
        now = time.monotonic_ns()
        start = chunk.find(b"t=")
        while start != -1:
            end = chunk.index(b";", start)
            sent = int(chunk[start + 2 : end])
            if not result.first_content:
                result.first_content = now
            result.chunk_latency_ns.append(now - sent)
            result.arrivals.append(now)
            start = chunk.find(b"t=", end)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
