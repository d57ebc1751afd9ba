"""Small real HTTP servers on localhost for the judge tests: a scripted OpenAI-compatible endpoint (http.server),
and llama.cpp's own server on the embedded GGUF model when llama-cpp-python is installed."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scripted_server(answer: Callable[[dict, dict], tuple[int, bytes, float]]) -> Iterator[tuple[str, list]]:
    """An OpenAI-compatible /v1/chat/completions endpoint whose reply `answer(request_json, headers)` scripts:
    (status, body, seconds to wait first). Yields (base_url, the requests it received)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            received.append({"path": self.path, "json": request, "headers": dict(self.headers)})
            status, body, delay = answer(request, dict(self.headers))
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        server.server_close()


def completion(content: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "scripted",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}).encode()


def embedded_gguf() -> Path:
    from llamagym.policy.models import default_gguf_path

    return default_gguf_path()


@contextlib.contextmanager
def llama_cpp_server(timeout: float = 90.0) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`) on the embedded SmolLM2 GGUF, on a free
    localhost port; yields its base URL once /v1/models answers."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--model_alias", "smollm2"]
    log = tempfile.TemporaryFile()  # llama.cpp logs a lot while loading: a pipe nobody reads would fill and stall it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama.cpp's server exited: {log.read().decode(errors='replace')[-500:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp's server did not start in time")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
