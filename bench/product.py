"""The product as ``make run`` runs it, driven the way a person drives it: for ``e2e.py``.

Free ports, stopping a process group, peak RSS of a process tree, waiting until
gunicorn answers and every ``qcluster`` worker has run a task, and a scripted
browser (plain HTTP, no JavaScript) that logs in, connects Instagram and
presses Allow on the loopback Instagram's dialog.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

PASSWORD = "correct-horse-battery-9"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(root_pid: int) -> list[tuple[int, float, str]]:
    """(pid, VmHWM in MB, command) of ``root_pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(re.search(r"^PPid:\s+(\d+)", (entry / "status").read_text(), re.M).group(1))
            except (OSError, AttributeError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if match:
            out.append((pid, int(match.group(1)) / 1024, cmd))
    return out


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def browser_links_instagram(web: str) -> tuple[float, str]:
    """Log in, connect Instagram, press Allow; returns (time the callback was sent, run page URL)."""
    import requests

    session = requests.Session()

    def form_post(url: str, data: dict, marker: str) -> requests.Response:
        page = session.get(url, timeout=30)
        form = next(f for f in re.findall(r"<form.*?</form>", page.text, re.S) if marker in f)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        action = re.search(r'action="([^"]*)"', form.split(">", 1)[0])
        target = url if action is None or not action.group(1) else requests.compat.urljoin(url, action.group(1))
        target = target.replace("&amp;", "&")
        return session.post(target, data={"csrfmiddlewaretoken": token, **data}, headers={"Referer": url},
                            allow_redirects=False, timeout=30)

    answer = form_post(f"{web}/accounts/login/", {"login": "bench@example.com", "password": PASSWORD},
                       'name="login"')
    assert answer.status_code == 302, answer.text[:500]
    answer = form_post(f"{web}/instagram/connect/", {}, "connect-instagram")
    assert answer.status_code == 302, answer.text[:500]
    dialog = session.get(answer.headers["Location"], timeout=30)  # the (fake) Instagram dialog
    allow = re.search(r'id="allow" href="([^"]+)"', dialog.text).group(1).replace("&amp;", "&")
    fake_base = re.match(r"https?://[^/]+", answer.headers["Location"]).group(0)
    callback = session.get(fake_base + allow, allow_redirects=False, timeout=30).headers["Location"]
    started = time.time()
    landed = session.get(callback.split("#")[0], timeout=60)
    assert "/runs/" in landed.url, landed.url
    return started, landed.url


def wait_until_up(web: str, workers: int, timeout: float = 180) -> None:
    """The web answers and every queue worker ran a task (models loaded)."""
    import requests
    from django_q.models import Success
    from django_q.tasks import async_task

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{web}/accounts/login/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the web process did not start")
        time.sleep(0.3)
    for n in range(4 * workers):
        async_task("math.hypot", 3, n)
    while Success.objects.filter(func="math.hypot").count() < 4 * workers:
        if time.monotonic() > deadline:
            raise TimeoutError("the queue workers did not start")
        time.sleep(0.2)
    time.sleep(1.0)
