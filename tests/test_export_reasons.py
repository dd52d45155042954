"""A post of an export ZIP without a photo says truly why, file by file (a link is not "video")."""

from __future__ import annotations

import stat
import zipfile

from indexing.instagram.export import ExportStats, iter_export_posts
from tests.fakes.instagram import FAKE_MP4
from tests.test_instagram_export import build_export


def test_each_skipped_file_has_its_own_reason(tmp_path, fixtures_dir):
    photo = (fixtures_dir / "people/joe_biden/1.jpg").read_bytes()
    files = {
        "media/posts/202401/17900000000000001.jpg": photo,
        "media/posts/202401/17900000000000002.mp4": FAKE_MP4 + b"\0" * 1000,
        "media/posts/202401/17900000000000003.txt": b"just some text, not a picture",
    }
    posts = [
        {"media": [{"uri": "media/posts/202401/17900000000000001.jpg", "creation_timestamp": 1704067200}]},
        {"media": [{"uri": "media/posts/202401/17900000000000002.mp4", "creation_timestamp": 1704153600}]},
        {"media": [{"uri": "media/posts/202401/17900000000000003.txt", "creation_timestamp": 1704240000}]},
        {"media": [{"uri": "media/posts/202401/gone.jpg", "creation_timestamp": 1704326400}]},
        {"media": [{"uri": "media/posts/202401/17900000000000004.jpg", "creation_timestamp": 1704412800}]},
    ]
    path = build_export(tmp_path / "export.zip", {"your_instagram_activity/media/posts_1.json": posts}, files)
    with zipfile.ZipFile(path, "a") as archive:  # a symbolic link, as `zip -y` stores it
        link = zipfile.ZipInfo("media/posts/202401/17900000000000004.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "17900000000000001.jpg")
    stats = ExportStats()
    reasons = {p.external_id: p.skip_reason for p in iter_export_posts(path, stats)}
    assert reasons["17900000000000001"] == ""
    assert reasons["17900000000000002"] == ""  # videos are indexed too
    assert "neither a photo nor a video Faces can read" in reasons["17900000000000003"]
    assert "missing from the export" in next(r for k, r in reasons.items() if k.startswith("export:"))
    assert "a link to another file" in reasons["17900000000000004"]
    assert "video" not in reasons["17900000000000004"] and "read" not in reasons["17900000000000004"]
    assert stats.links == 1 and stats.missing == 1 and stats.non_images == 1
