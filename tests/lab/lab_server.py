"""JupyterLab for the browser test, started as `make lab` starts it, on loopback only.

The course's own JupyterLab (the venv's `jupyter lab`, the course kernel beside it) serves the
checkout (--notebook-dir), on 127.0.0.1 at a free port, with a random token, without opening a
browser (--allow-root as root). Its configuration and runtime folders are fresh ones, so that a
developer's own settings and saved layout play no part; Jupyter's data folder is the usual one,
where `make setup`'s `jupyter trust` records the stored notebooks' signatures. What differs from a
learner's: autosave is off and the checkpoints JupyterLab makes on opening a notebook go to a
temporary folder (the test leaves the checkout as it found it), and JupyterLab neither asks for
nor fetches news (nothing outside is reachable in CI).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Screenshots of failures and JupyterLab's log (`make test-lab` passes $(BUILD)/lab).
ARTIFACTS = (ROOT / os.environ.get("TINYBERT_LAB_ARTIFACTS", "build/lab")).resolve()

SETTINGS = {
    # what the browser does to a notebook stays in the browser
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # no "official Jupyter news?" toast over the page, no request to a website
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """One JupyterLab server; ``start()``, then ``url()`` / ``api()``, then ``stop()``."""

    def __init__(self, venv: Path, root: Path, home: Path, log: Path):
        self.jupyter = venv / "bin" / "jupyter"
        self.root, self.home, self.log_path = root, home, log
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "lab") -> str:
        return f"{self.base}/{path}?token={self.token}"

    def start(self, timeout: float = 120) -> None:
        if not self.jupyter.exists():
            raise RuntimeError(f"{self.jupyter} not found: `make lab` (or `make test-lab`) installs JupyterLab")
        config = self.home / "config"
        for name, values in SETTINGS.items():
            path = config / "lab" / "user-settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
                   PYTHONUNBUFFERED="1")
        env.pop("JUPYTERLAB_SETTINGS_DIR", None)
        env.pop("JUPYTERLAB_WORKSPACES_DIR", None)
        cmd = [str(self.jupyter), "lab", "--no-browser", f"--notebook-dir={self.root}",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # the checkpoint JupyterLab makes of each notebook it opens: here, not in the checkout
               f"--FileCheckpoints.root_dir={self.home / 'checkpoints'}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.base}/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def session(self, path: str) -> dict | None:
        """The server's session of the notebook at ``path`` (relative to the checkout), if any."""
        return next((s for s in self.api("api/sessions") if s.get("path") == path), None)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20) -> None:
        """Shut the server down (it shuts its kernels down); its process group if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.api("api/shutdown", method="POST")
            self.proc.wait(timeout)
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this object started, by its id
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
