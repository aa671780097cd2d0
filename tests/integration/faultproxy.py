"""A TCP proxy on 127.0.0.1 in front of the real node, that misbehaves on cue.

Faults a real node cannot be made to produce when wanted: a connection torn mid-request,
an answer lost after the node has indexed the batch (the client times out), a node that
is "down" (connection refused) for a while.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["forward", "tear", "swallow_response", "down"]


class FaultProxy:
    """Forwards 127.0.0.1:<port> to an upstream host:port, with a switchable fault mode."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "forward"
        self.connections = 0
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._stopped.clear()
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()
        return self

    def set_mode(self, mode: Mode) -> None:
        """Switch fault mode; "down" closes the listener and every open connection."""
        if mode == "down":
            self.stop()
        elif self.mode == "down":
            self.mode = mode
            self.start()
        self.mode = mode

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()
        self._pump(client, upstream, False)

    def _pump(self, source: socket.socket, target: socket.socket, is_response: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not is_response and self.mode == "tear":
                    break  # the request is cut off mid-way
                if is_response and self.mode == "swallow_response":
                    continue  # the node did the work; the client never hears back
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()
