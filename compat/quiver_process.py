"""Starting `quiver server` processes of the tests' own (for tests that need a store, flags or a
Python environment other than the shared server's)."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quiver_bin():
    """The quiver binary to run: `$QUIVER_BIN`, which `cargo test -p quiver --test it compat`
    sets, else `target/debug/quiver` or `target/release/quiver`; fails (does not skip) when
    there is none."""
    explicit = os.environ.get("QUIVER_BIN")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        candidate = ROOT / "target" / profile / "quiver"
        if candidate.exists():
            return str(candidate)
    pytest.fail(
        "no quiver binary: set QUIVER_BIN, or build one (cargo build -p quiver); "
        "`cargo test -p quiver --test it compat` sets QUIVER_BIN itself"
    )


def free_port():
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store, *flags):
    """Starts `quiver server --store STORE FLAGS...` on a free port and waits for /health;
    returns (process, url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [quiver_bin(), "server", "--host", "127.0.0.1", "--port", str(port), "--store", str(store),
         *flags],
        env={**os.environ, "QUIVER_LOG": "warn"},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).read()
            return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"quiver server did not start (exit code {server.poll()})")
            time.sleep(0.05)


def stop_server(server):
    """Kills `server` if it still runs."""
    if server.poll() is None:
        server.kill()
        server.wait()
