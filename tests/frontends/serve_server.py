"""A ``sleapflow serve`` subprocess for the serve tests: started on loopback, port 0, its URL read
from its banner, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import sleapflow

#: The package under test's checkout (or install), put first on the server's import path.
ROOT = Path(sleapflow.__file__).resolve().parent.parent


class Server:
    """A `sleapflow serve` subprocess on 127.0.0.1, port 0; the port is read from its banner."""

    def __init__(self, model: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {})}
        # The checkout under test, whatever is installed.
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                                 if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from sleapflow.cli.app import main; sys.exit(main())",
             "serve", "-m", str(model), "--host", "127.0.0.1", "--port", "0", "--device", "cpu",
             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env)
        self.log: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if self.url is None and "listening on http://" in line:
                self.url = line.split("listening on ")[1].split()[0]
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 120) -> str:
        assert self._ready.wait(timeout), "server did not start in time"
        assert self.url is not None, "server exited:\n" + "".join(self.log)
        assert self.url.startswith("http://127.0.0.1:")
        return self.url

    @property
    def port(self) -> int:
        assert self.url is not None
        return int(self.url.rsplit(":", 1)[1])

    def peak_rss_kib(self) -> int:
        """The server process's peak resident set (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    @property
    def ws_url(self) -> str:
        assert self.url is not None
        return self.url.replace("http://", "ws://") + "/v1/stream"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(timeout=5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
