"""A bounded loopback load generator: N concurrent clients, a request budget and a time limit."""

import http.client
import itertools
import threading
import time
from urllib.parse import urlencode

from .measure import percentiles


def run_load(port: int, path: str, params: list[dict], *, headers: dict | None = None, clients: int = 50,
             requests: int = 4000, seconds: float = 30.0) -> dict:
    """`clients` threads send GET `path` with the given query strings in turn, one connection per request
    (gunicorn's sync workers close after each answer), until `requests` are done or `seconds` have passed."""
    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                n = next(counter)
            if n >= requests:
                return
            query = urlencode(params[n % len(params)])
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                connection.request("GET", f"{path}?{query}", headers=headers or {})
                response = connection.getresponse()
                response.read()
                connection.close()
                ok = response.status == 200
            except OSError:
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    wall = time.perf_counter() - started
    result = percentiles(latencies) if latencies else {"n": 0}
    result.update(rps=round(len(latencies) / wall, 1), errors=errors[0], seconds=round(wall, 3), clients=clients,
                  latencies=latencies)
    return result


def pooled(rounds: list[dict]) -> dict:
    """Several rounds of one endpoint as one: percentiles over all their requests, rate over all their time."""
    latencies = [value for one in rounds for value in one.pop("latencies")]
    seconds = sum(one["seconds"] for one in rounds)
    result = percentiles(latencies) if latencies else {"n": 0}
    result.update(rps=round(len(latencies) / seconds, 1) if seconds else 0.0, errors=sum(r["errors"] for r in rounds),
                  seconds=round(seconds, 1), clients=rounds[0]["clients"], rounds=len(rounds))
    return result
