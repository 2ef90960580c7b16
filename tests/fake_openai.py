"""A fake OpenAI-compatible chat server on 127.0.0.1 for the remote writer's tests.

A real HTTP server (ThreadingHTTPServer in a thread, a random port) with GET /v1/models,
POST /v1/chat/completions (SSE streaming, or one JSON reply when "stream" is false) and
POST /tokenize. Each chat request takes the next queued behaviour:

  Text("...", chunks=N, delay=s)   the reply streamed in N pieces, `delay` seconds apart
  Error(status, "message", retry_after=None)   an OpenAI-style error body with that status
  Drop("text before")               some text, then the connection is cut mid-stream
  Hang(seconds)                     headers, then nothing (until the client leaves)

An empty queue answers with `responder(body) -> text` when a test set one (the end-to-end
tests; `responder_delay` spaces its words), else it is an unexpected call: recorded in `errors` (the fixture fails the test on
any) and answered 500. Every request body is kept in `requests`; `disconnects` counts chat
streams the client closed before their end, and `disconnected` is set at each.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Text:
    """A streamed reply: `text` in `chunks` pieces (None: one piece per word)."""

    text: str
    chunks: int | None = None
    delay: float = 0.0

    def pieces(self) -> list[str]:
        if self.chunks is None:
            words = self.text.split(" ")
            return [w + " " for w in words[:-1]] + [words[-1]] if self.text else []
        size = max(1, -(-len(self.text) // self.chunks))
        return [self.text[i:i + size] for i in range(0, len(self.text), size)]


@dataclass
class Error:
    """An HTTP error with an OpenAI-style body; retry_after sets the Retry-After header."""

    status: int
    message: str
    retry_after: str | None = None


@dataclass
class Drop:
    """`text` streamed (one piece per word), then the connection closes without an end."""

    text: str


@dataclass
class Hang:
    """Response headers, then silence for up to `seconds` (ends early when the client
    leaves)."""

    seconds: float = 10.0


Behaviour = Text | Error | Drop | Hang


class FakeOpenAIServer(ThreadingHTTPServer):
    """The server and what it saw; configure `models`, `key`, `tokenize`, `responder`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.queue: list[Behaviour] = []
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body or None)
        self.errors: list[str] = []
        self.models: list[dict[str, Any]] = [{"id": "fake-writer", "object": "model",
                                              "max_model_len": 4096}]
        self.key: str | None = None  # when set, requests must carry "Bearer <key>"
        self.tokenize = True
        self.responder: Callable[[dict[str, Any]], str] | None = None
        self.responder_delay = 0.0  # seconds between the words of a responder's reply
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        """The API base, as COMPOSER_WRITER_URL takes it."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        """Queue the next chat replies, in order."""
        self.queue.extend(behaviours)

    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests, in order."""
        return [body for method, path, body in self.requests
                if path.endswith("/chat/completions")]

    def next_behaviour(self, body: dict[str, Any]) -> Behaviour:
        with self.lock:
            if self.queue:
                return self.queue.pop(0)
        if self.responder is not None:
            return Text(self.responder(body), delay=self.responder_delay)
        last = next((m for m in reversed(body.get("messages", [])) if m["role"] == "user"), {})
        self.errors.append(f"unexpected chat call: {str(last.get('content'))[:120]!r}")
        return Error(500, "unexpected call: nothing queued in the fake server")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, None))
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": self.server.models})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append(("POST", self.path, body))
        if not self._authorised():
            return
        if self.path == "/tokenize" and self.server.tokenize:
            text = body.get("prompt") or body.get("content") or ""
            self._json(200, {"tokens": list(range(len(text.split()))), "count": 0})
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _authorised(self) -> bool:
        key = self.server.key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._json(401, {"error": {"message": "Incorrect API key provided",
                                   "type": "invalid_request_error", "code": "invalid_api_key"}})
        return False

    # -- chat ------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        behaviour = self.server.next_behaviour(body)
        model = body.get("model", "")
        if isinstance(behaviour, Error):
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            self._json(behaviour.status, {"error": {"message": behaviour.message,
                                                    "type": "error", "code": behaviour.status}},
                       headers)
            return
        if not body.get("stream"):
            text = behaviour.text if isinstance(behaviour, Text) else ""
            self._json(200, {"id": "c", "object": "chat.completion", "created": 0,
                             "model": model, "choices": [{
                                 "index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._stream(behaviour, model)
        except (BrokenPipeError, ConnectionResetError):
            self._client_left()
        self.close_connection = True

    def _stream(self, behaviour: Behaviour, model: str) -> None:
        if isinstance(behaviour, Hang):
            if self._wait(behaviour.seconds):
                self._client_left()
            return
        pieces = behaviour.pieces() if isinstance(behaviour, Text) else \
            Text(behaviour.text).pieces()
        delay = behaviour.delay if isinstance(behaviour, Text) else 0.0
        for index, piece in enumerate(pieces):
            if index and delay and self._wait(delay):
                self._client_left()
                return
            self._event(_chunk(model, {"content": piece}))
        if isinstance(behaviour, Drop):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # no final chunk: a cut stream
            return
        self._event(_chunk(model, {}, finish="stop"))
        self._send(b"data: [DONE]\n\n")
        self._send(b"")  # the last chunk of a chunked body

    def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as the client closes the connection."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                return True
        return False

    def _client_left(self) -> None:
        with self.server.lock:
            self.server.disconnects += 1
        self.server.disconnected.set()

    def _event(self, data: dict[str, Any]) -> None:
        self._send(b"data: " + json.dumps(data).encode() + b"\n\n")

    def _send(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def start() -> FakeOpenAIServer:
    """A running fake server (stop it with stop())."""
    server = FakeOpenAIServer()
    server.thread.start()
    return server


def stop(server: FakeOpenAIServer) -> None:
    """Stop serving and free the port."""
    server.shutdown()
    server.server_close()
    server.thread.join(timeout=5)
