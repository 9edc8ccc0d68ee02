"""A TCP forwarder in front of a database server that a test can cut, hang and restore.

Real sockets on the loopback interface, one thread per direction of each connection:

- `cut()`: the listening socket closes (new connections are refused) and every open
  connection is dropped, as when the database server stops;
- `hang()`: new connections are accepted but nothing is forwarded, and open connections
  stop forwarding, as when the server (or the network to it) freezes; the kernel still
  acknowledges what clients send, so only a client-side limit notices;
- `restore()`: frozen connections are dropped and new ones are forwarded again.
"""

import contextlib
import select
import socket
import threading


class TCPProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.mode = "forward"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.port = self._listen(0)

    # -- the switches a test turns ------------------------------------------------------------

    def cut(self) -> None:
        with self._lock:
            self.mode = "cut"
            self._close_listener()
            self._drop_all()

    def hang(self) -> None:
        with self._lock:
            self.mode = "hang"
            if self._listener is None:
                self._listen(self.port)

    def restore(self) -> None:
        with self._lock:
            if self.mode == "hang":
                self._drop_all()
            self.mode = "forward"
            if self._listener is None:
                self._listen(self.port)

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_listener()
            self._drop_all()

    # -- the machinery ------------------------------------------------------------------------

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()
        return listener.getsockname()[1]

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _drop_all(self) -> None:
        for sock in list(self._sockets):
            _close(sock)
        self._sockets.clear()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                readable, _, _ = select.select([listener], [], [], 0.2)
                if not readable:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # the listener was closed by cut() or close()
                return
            with self._lock:
                self._sockets.add(client)
                mode = self.mode
            if mode == "forward":
                threading.Thread(target=self._connect_upstream, args=(client,), daemon=True).start()
            # In "hang" the client stays accepted and unanswered until restore() drops it.

    def _connect_upstream(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self._forget(client)
            return
        with self._lock:
            if client not in self._sockets:
                _close(server)
                return
            self._sockets.add(server)
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while not self._stopped.is_set():
            if self.mode == "hang":  # frozen: hold the bytes, answer nothing
                self._stopped.wait(0.1)
                continue
            try:
                readable, _, _ = select.select([source], [], [], 0.2)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
            except (OSError, ValueError):
                break
        self._forget(source, target)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
