"""Browser tests: Debian's Chromium through Playwright, with a fake camera.

The camera plays a Y4M file made from a fixture photo (see
shared/notes/browser-tests.md): limited-range BT.601 4:2:0, 640x480.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import FIXTURES, PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("FACES_CHROMIUM", "/usr/bin/chromium")
CAMERA_PHOTO = FIXTURES / "people" / "barack_obama" / "2.jpg"


def write_y4m(photo: Path, target: Path, size: tuple[int, int] = (640, 480), frames: int = 2) -> Path:
    """A Y4M video showing ``photo`` (padded, limited-range YCbCr 4:2:0)."""
    image = ImageOps.pad(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"), size, color="black")
    ycbcr = np.asarray(image.convert("YCbCr"), dtype=np.float32)
    y = 16 + ycbcr[..., 0] * 219 / 255
    chroma = [128 + (ycbcr[..., i] - 128) * 224 / 255 for i in (1, 2)]
    w, h = size
    planes = [np.clip(np.round(y), 0, 255).astype(np.uint8).tobytes()]
    for c in chroma:
        sub = c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        planes.append(np.clip(np.round(sub), 0, 255).astype(np.uint8).tobytes())
    with open(target, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            handle.write(b"FRAME\n")
            for plane in planes:
                handle.write(plane)
    return target


@pytest.fixture(scope="session")
def fake_camera_file(tmp_path_factory) -> Path:
    path = write_y4m(CAMERA_PHOTO, tmp_path_factory.mktemp("camera") / "face.y4m")
    assert path.stat().st_size > 640 * 480, "the fake camera file was not written"
    return path


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args, fake_camera_file):
    assert Path(CHROMIUM).exists(), f"Chromium is missing at {CHROMIUM} (apt-get install chromium)"
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={fake_camera_file}"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "permissions": ["camera"], "viewport": {"width": 1280, "height": 860}}


@pytest.fixture
def shoot():
    """Save a screenshot of the page under docs/screenshots/ for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return save


def login(page, live_server, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def confirm_email(page, live_server, address: str) -> None:
    """Open the confirmation link of the last mail to ``address`` and confirm, as a new user does."""
    import re

    from django.core import mail

    body = next(message.body for message in reversed(mail.outbox) if address in message.to)
    path = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^/\s]+/)", body).group(1)
    page.goto(f"{live_server.url}{path}")
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/**")


def named_copies(tmp_path: Path, relative_paths: list[str]) -> list[str]:
    """Copies of fixture photos named after their identity, e.g. joe_biden-1.jpg."""
    files = []
    for relative in relative_paths:
        source = FIXTURES / relative
        target = tmp_path / relative.replace("people/", "").replace("/", "-")
        shutil.copy(source, target)
        files.append(str(target))
    return files
