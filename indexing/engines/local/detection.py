"""Finding faces with YuNet, checking them, and aligning them for SFace.

Per image, ``analyze`` (in ``engine``) runs these steps on the decoded pixels:

1. YuNet on a copy at most ``DETECT_SIDE`` (480) long, candidates from a score of
   ``CANDIDATE_SCORE`` (0.5). YuNet finds faces down to about 10 px of its
   input, so 480 finds the 26-43 px faces of the 7-face fixture inside a
   1080x1350 post; from 0.5 (0.6 before) it also finds the 20-25 px faces of a
   photo shrunk to a tenth of a 1080 px frame. Faces that fill the frame, like
   the dlib chips, are found as they are: no padded retry.
2. YuNet on the same photo turned by ``TURNS`` (90, 180, 270, 45 and -45
   degrees), at most ``TURN_SIDE`` (160) long before turning: YuNet only finds
   faces within about 30 degrees of upright, so a photo stored sideways without
   EXIF (or someone lying down) needs a pass in each orientation, and a head
   tilted 45 degrees is often scored below ``CANDIDATE_SCORE`` upright. These
   passes are small (faces from about 70 px of a 1080 px photo), their
   candidates need ``TURN_SCORE`` (0.7), and a quarter turn that shows a face
   the upright pass did not find is run again at ``DETECT_SIDE``, for the
   small faces of a sideways photo.
3. Each candidate is re-detected in a square crop of twice its box resized to
   ``VERIFY_SIDE`` (96), and kept if YuNet scores it >= 0.8 there too (real
   faces score higher there, the dog of ``noface/dogs.jpg`` lower). Faces from a turned
   pass are checked in a crop turned upright by their landmarks' roll. An
   upright candidate that fails is tried again turned by ``RETRY_ANGLES`` (30
   and 45 degrees either way, nearest its landmarks' roll first): YuNet still
   finds a head tilted 45 degrees in the full photo, but scores it too low in
   the canonical crop, and its landmarks then understate the tilt by half.
4. One face per place: candidates ranked by detection plus check score, a
   candidate dropped if half of it lies in a better one (upright faces of the
   first pass keep their own non-maximum suppression). The two scores together
   tell a face from the same face upside down in a turned pass.
5. Faces kept at an angle get their landmarks again from a crop turned by that
   angle (``REFINE_SIDE``, 160), where YuNet sees them nearly upright.
6. Alignment for SFace: ``alignment``.

YuNet's output is decoded exactly as OpenCV's ``FaceDetectorYN`` decodes it
(tests compare the two). Faces come largest first (ties: left to right, then
top to bottom). ``DetectOptions`` holds the settings, so the benchmark can price each step.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ...images import shrink
from ..base import Box

if TYPE_CHECKING:  # runtime imports this module for decode_yunet
    from .runtime import FaceModels

# YuNet's five points, the person's right first (so the image's left first).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
DETECT_SIDE = 480  # YuNet input; finds faces down to ~10 px at this size
CANDIDATE_SCORE = 0.5  # YuNet score to consider a candidate at all
TURNS = (90, 180, 270, 45, -45)  # counter-clockwise turns of the extra passes
TURN_SIDE = 160  # their input, before turning
TURN_SCORE = 0.7  # their candidates' score
RETRY_ANGLES = (30.0, 45.0)  # turns (either way) tried on an upright candidate that fails
VERIFY_SIDE = 96  # canonical crop: twice the face box, resized to this
VERIFY_SCORE = 0.8  # YuNet score in the canonical crop to keep a face
REFINE_SIDE = 160  # crop (twice the box) that faces kept at an angle get landmarks from
OVERLAP = 0.5  # share of the smaller box inside a better face that drops it
NMS_THRESHOLD = 0.3
TOP_K = 5000
YUNET_STRIDES = (8, 16, 32)


def decode_yunet(outputs: list[np.ndarray], padded_width: int, min_score: float) -> np.ndarray:
    """YuNet's raw outputs to face rows, as OpenCV's ``FaceDetectorYN`` decodes them.

    Outputs come as cls, obj, bbox, kps for each stride; score = sqrt(cls * obj);
    boxes and landmarks are offsets from each grid cell, then non-maximum suppression.
    """
    count = len(YUNET_STRIDES)
    found = []
    for level, stride in enumerate(YUNET_STRIDES):
        cls, obj, bbox, kps = (outputs[level + count * k][0] for k in range(4))
        scores = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        cells = np.flatnonzero(scores >= min_score)
        if not len(cells):
            continue
        columns = padded_width // stride
        grid = np.stack([cells % columns, cells // columns], axis=1).astype(np.float32)
        centers = (grid + bbox[cells, :2]) * stride
        sizes = np.exp(bbox[cells, 2:4]) * stride
        points = (kps[cells].reshape(-1, 5, 2) + grid[:, None, :]) * stride
        found.append(np.hstack([
            centers - sizes / 2, sizes, points.reshape(-1, 10), scores[cells, None],
        ]).astype(np.float32))
    if not found:
        return np.zeros((0, 15), np.float32)
    rows = np.vstack(found)
    keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), min_score, NMS_THRESHOLD, top_k=TOP_K)
    return rows[np.asarray(keep, dtype=np.intp).reshape(-1)]


@dataclass(frozen=True)
class DetectOptions:
    """The settings of ``find_faces``; the defaults are the engine's, others are for measuring."""

    detect_side: int = DETECT_SIDE
    candidate_score: float = CANDIDATE_SCORE
    turns: tuple[int, ...] = TURNS
    turn_side: int = TURN_SIDE
    turn_score: float = TURN_SCORE
    retry_angles: tuple[float, ...] = RETRY_ANGLES


OPTIONS = DetectOptions()
_half: tuple = (None, None)  # (weak reference to an image, that image at half size)


@dataclass
class _Candidate:
    row: np.ndarray  # YuNet row in decoded-image pixels
    angle: float  # the turn (degrees, counter-clockwise) that shows it upright
    score: float  # detection + check
    upright: bool  # from the first pass, checked as it is


def find_faces(
    models: FaceModels, pixels: np.ndarray, options: DetectOptions | None = None
) -> list[np.ndarray]:
    """YuNet rows (decoded-image pixels) of the verified faces of ``pixels`` (RGB), largest first."""
    options = options or OPTIONS
    height, width = pixels.shape[:2]
    scale = min(1.0, options.detect_side / max(height, width))
    small, sx, sy = _detect_copy(pixels, max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    levels = [(pixels, 1.0, True), (small, sx, False)]  # turned crops come from the smaller that serves
    found = [
        candidate
        for row in _scaled(models.detect(small, options.candidate_score), sx, sy)
        if (candidate := _check_upright(models, pixels, levels, row, options)) is not None
    ]
    sideways: set[int] = set()
    # A photo that shows faces a quarter turn away is searched again that way at full size.
    for turns, side, min_score in (
        (options.turns, options.turn_side, options.turn_score),
        (sideways, options.detect_side, options.candidate_score),
    ):
        for turn, row in _turned_passes(models, small, (sx, sy), tuple(sorted(turns)), side, min_score):
            score = _check_turned(models, levels, row, roll(row))
            if score >= VERIFY_SCORE:
                if turns is options.turns and turn % 90 == 0 and not _found_upright(found, row):
                    sideways.add(turn)
                found.append(_Candidate(row, roll(row), float(row[14]) + score, upright=False))
    kept: list[_Candidate] = []
    for candidate in sorted(found, key=lambda c: -c.score):
        if all(
            (candidate.upright and other.upright) or _overlap(candidate.row, other.row) <= OVERLAP
            for other in kept
        ):
            kept.append(candidate)
    rows = [c.row if c.angle == 0.0 else _refined(models, levels, c.row, c.angle) for c in kept]
    rows.sort(key=lambda r: (-float(r[2] * r[3]), float(r[0]), float(r[1])))
    return rows


def _found_upright(found: list[_Candidate], row: np.ndarray) -> bool:
    """Whether the face of ``row`` is one the upright pass found (YuNet sees some faces upside down too)."""
    return any(c.upright and _overlap(c.row, row) > OVERLAP for c in found)


def _detect_copy(pixels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """``shrink(pixels, width, height)``, its first halving taken from ``half_size``.

    Big faces are verified and aligned from the half-size image anyway, so the
    halving that the first pass's copy starts with is made once, not twice; the
    pixels and scales are the same as ``shrink``'s.
    """
    h, w = pixels.shape[:2]
    if w // 2 < width or h // 2 < height:
        return shrink(pixels, width, height)
    small, sx, sy = shrink(half_size(pixels), width, height)
    return small, sx / 2, sy / 2


def _scaled(rows: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Rows found in a copy shrunk by (sx, sy), in the pixels of the original."""
    rows = rows.copy()
    rows[:, 0:14:2] /= sx
    rows[:, 1:14:2] /= sy
    return rows


def _check_upright(
    models: FaceModels, pixels: np.ndarray, levels: list, row: np.ndarray, options: DetectOptions
) -> _Candidate | None:
    score = _verify(models, pixels, row)
    if score >= VERIFY_SCORE:
        return _Candidate(row, 0.0, float(row[14]) + score, upright=True)
    twice_roll = 2 * roll(row)  # YuNet's landmarks show about half the tilt of a tilted head
    angles = sorted((a for t in options.retry_angles for a in (-t, t)), key=lambda a: abs(a - twice_roll))
    for angle in angles:
        score = _check_turned(models, levels, row, angle)
        if score >= VERIFY_SCORE:
            return _Candidate(row, angle, float(row[14]) + score, upright=False)
    return None


def _turned_passes(
    models: FaceModels, first: np.ndarray, first_scale: tuple[float, float],
    turns: tuple[int, ...], side: int, min_score: float,
) -> list[tuple[int, np.ndarray]]:
    """(turn, candidate) of the photo turned by each of ``turns`` at most ``side`` long, in decoded pixels.

    The turned copies are made from ``first``, the first pass's input (BGR, shrunk
    by ``first_scale``): shrinking the decoded photo again would cost more than the passes.
    """
    if not turns or not side:
        return []
    height, width = first.shape[:2]
    scale = min(1.0, side / max(height, width))
    small, sx, sy = shrink(first, max(1, round(width * scale)), max(1, round(height * scale)))
    sx, sy = sx * first_scale[0], sy * first_scale[1]
    found = []
    for turn in turns:
        turned, back = _turn(small, turn)
        rows = _scaled(_mapped(models.detect(turned, min_score), back, turn), sx, sy)
        found.extend((turn, row) for row in rows)
    return found


def _turn(image: np.ndarray, angle: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned counter-clockwise by ``angle`` degrees (grown to hold it), and the 2x3 map back."""
    height, width = image.shape[:2]
    if angle % 90 == 0:
        quarter = (angle // 90) % 4
        # np.rot90 turns counter-clockwise: one quarter takes (x, y) to (y, width-1-x).
        back = {
            1: [[0, -1.0, width - 1], [1.0, 0, 0]],
            2: [[-1.0, 0, width - 1], [0, -1.0, height - 1]],
            3: [[0, 1.0, 0], [-1.0, 0, height - 1]],
        }.get(quarter, [[1.0, 0, 0], [0, 1.0, 0]])
        return np.ascontiguousarray(np.rot90(image, quarter)), np.array(back)
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    size = (int(math.ceil(width * cos + height * sin)), int(math.ceil(width * sin + height * cos)))
    forward = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    forward[:, 2] += ((size[0] - width) / 2, (size[1] - height) / 2)
    turned = cv2.warpAffine(image, forward, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return turned, cv2.invertAffineTransform(forward)


def _mapped(rows: np.ndarray, transform: np.ndarray, angle: int) -> np.ndarray:
    """Rows mapped by the 2x3 ``transform``: landmarks exactly, boxes the same about the mapped center."""
    rows = rows.copy()
    points = rows[:, 4:14].reshape(-1, 5, 2) @ transform[:, :2].T + transform[:, 2]
    centers = (rows[:, :2] + rows[:, 2:4] / 2) @ transform[:, :2].T + transform[:, 2]
    if angle % 180 == 90:
        rows[:, 2:4] = rows[:, 3:1:-1].copy()
    rows[:, 0:2] = centers - rows[:, 2:4] / 2
    rows[:, 4:14] = points.reshape(-1, 10)
    return rows


def roll(row: np.ndarray) -> float:
    """The in-image angle (degrees) of the line from the face's right eye to its left eye."""
    (rx, ry), (lx, ly) = row[4:6], row[6:8]
    return math.degrees(math.atan2(ly - ry, lx - rx))


def _turned_crop(levels: list, row: np.ndarray, angle: float, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``side`` square of twice the box around its center, turned by ``angle``, and its map to pixels.

    One warpAffine from the smallest level (image, scale, is RGB) where the face
    still has 0.6 ``side`` pixels, so a big face is not sampled from a much bigger image.
    """
    size = float(max(row[2], row[3]))
    image, scale, rgb = levels[0]
    for level in levels[1:]:
        if size * level[1] >= 0.6 * side:
            image, scale, rgb = level
    cx, cy = (row[0] + row[2] / 2) * scale, (row[1] + row[3] / 2) * scale
    transform = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, side / (2 * size * scale))
    transform[:, 2] += (side / 2 - cx, side / 2 - cy)
    crop = cv2.warpAffine(image, transform, (side, side), flags=cv2.INTER_LINEAR)  # zeros outside
    back = cv2.invertAffineTransform(transform) / scale
    return (cv2.cvtColor(crop, cv2.COLOR_RGB2BGR) if rgb else crop), back


def _check_turned(models: FaceModels, levels: list, row: np.ndarray, angle: float) -> float:
    """``_verify`` in a crop turned by ``angle``."""
    crop, _ = _turned_crop(levels, row, angle, VERIFY_SIDE)
    return _centre_score(models.verify(crop), VERIFY_SIDE)[0]


def _refined(models: FaceModels, levels: list, row: np.ndarray, angle: float) -> np.ndarray:
    """The row with landmarks found again in a REFINE_SIDE crop turned by ``angle`` (upright there)."""
    crop, back = _turned_crop(levels, row, angle, REFINE_SIDE)
    _, best = _centre_score(models.verify(crop), REFINE_SIDE)
    refined = row.copy()
    if best is None:
        return refined
    refined[4:14] = (best[4:14].reshape(5, 2) @ back[:, :2].T + back[:, 2]).reshape(-1)
    return refined


def _centre_score(found: np.ndarray, side: int) -> tuple[float, np.ndarray | None]:
    """The best YuNet row centred in a ``side`` crop (within a sixth of it), and its score."""
    centers = found[:, :2] + found[:, 2:4] / 2
    near = np.flatnonzero(np.all(np.abs(centers - side / 2) < side / 6, axis=1))
    if not len(near):
        return 0.0, None
    best = near[np.argmax(found[near, 14])]
    return float(found[best, 14]), found[best]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """The share of the smaller box that lies in the other."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return float(width * height / max(1e-6, min(a[2] * a[3], b[2] * b[3])))


def square_crop(pixels: np.ndarray, row: np.ndarray, factor: float) -> tuple[np.ndarray, int, int]:
    """A square of ``factor`` times the box around its center, zero-padded at the edges."""
    cx, cy = row[0] + row[2] / 2, row[1] + row[3] / 2
    side = max(2, int(round(max(row[2], row[3]) * factor)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    height, width = pixels.shape[:2]
    crop = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = pixels[sy0:sy1, sx0:sx1]
    return crop, x0, y0


def half_size(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` halved (exact INTER_AREA), made once per image: big faces are cut from it."""
    global _half
    ref, half = _half
    if ref is None or ref() is not pixels:
        h, w = pixels.shape[:2]
        half = cv2.resize(pixels[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        _half = (weakref.ref(pixels), half)
    return half


def face_source(pixels: np.ndarray, row: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """The image and row to cut a face from: the half-size image when the face is ``side`` px there."""
    if max(row[2], row[3]) * 0.5 < side or min(pixels.shape[:2]) < 2:
        return pixels, row
    scaled = row.copy()
    scaled[:14] *= 0.5
    return half_size(pixels), scaled


def _verify(models: FaceModels, pixels: np.ndarray, row: np.ndarray) -> float:
    """YuNet's score for the same face in a canonical crop (face about half of it)."""
    pixels, row = face_source(pixels, row, VERIFY_SIDE / 2)
    crop, _, _ = square_crop(pixels, row, 2.0)
    crop, _, _ = shrink(crop, VERIFY_SIDE, VERIFY_SIDE)
    return _centre_score(models.verify(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)), VERIFY_SIDE)[0]


def clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def relative_box(row: np.ndarray, shape: tuple[int, ...]) -> Box:
    """A YuNet row's box relative to an image of ``shape``, clipped to [0, 1]."""
    height, width = shape[:2]
    x0, y0 = clip(row[0] / width), clip(row[1] / height)
    x1, y1 = clip((row[0] + row[2]) / width), clip((row[1] + row[3]) / height)
    return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0)
