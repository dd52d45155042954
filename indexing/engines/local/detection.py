"""Finding faces with YuNet, checking them, and aligning them for SFace.

Per image, ``analyze`` (in ``engine``) runs these steps on the decoded pixels:

1. YuNet on a copy at most ``DETECT_SIDE`` (480) long. YuNet finds faces down to
   about 10 px of its input, so 480 finds the 26-43 px faces of the 7-face
   fixture inside a 1080x1350 Instagram post; 400 misses one, 360 three. (The
   fixture photos alone pass even at 160, their faces being large.) Faces that
   fill the frame, like the dlib chips, are found as they are: no padded retry.
2. Each candidate (score >= 0.6) is re-detected in a square crop of twice its
   box resized to ``VERIFY_SIDE`` (96), and kept if YuNet scores it >= 0.8 there
   too. Real faces score 0.87-0.94 in that crop; the dog that YuNet takes for a
   face in ``noface/dogs.jpg`` (0.88 at full scale) scores 0.72.
3. Alignment of YuNet's five landmarks (``similarity_transform``, as OpenCV's
   ``alignCrop``) on a crop of the decoded image, shrunk (area filter) so the
   face is at most ``ALIGN_FACE`` (112) px: full resolution for small faces,
   no aliasing for big ones.

YuNet's output is decoded exactly as OpenCV's ``FaceDetectorYN`` decodes it
(tests compare the two). Faces come largest first (ties: left to right, then
top to bottom).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..base import Box

if TYPE_CHECKING:  # runtime imports this module for decode_yunet
    from .runtime import FaceModels

# YuNet's five points, the person's right first (so the image's left first).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
DETECT_SIDE = 480  # YuNet input; finds faces down to ~10 px at this size
CANDIDATE_SCORE = 0.6  # YuNet score to consider a candidate at all
VERIFY_SIDE = 96  # canonical crop: twice the face box, resized to this
VERIFY_SCORE = 0.8  # YuNet score in the canonical crop to keep a face
NMS_THRESHOLD = 0.3
TOP_K = 5000
ALIGN_FACE = 112  # largest face box (px) alignCrop gets: SFace's input size
YUNET_STRIDES = (8, 16, 32)

# Where SFace (like ArcFace) expects the five landmarks in its 112x112 input.
ARCFACE_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


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


def find_faces(models: FaceModels, pixels: np.ndarray) -> list[np.ndarray]:
    """YuNet rows (decoded-image pixels) of the verified faces of ``pixels`` (RGB), largest first."""
    rows = _detect_scaled(models, pixels)
    kept = [row for row in rows if _verify(models, pixels, row) >= VERIFY_SCORE]
    kept.sort(key=lambda r: (-float(r[2] * r[3]), float(r[0]), float(r[1])))
    return kept


def _detect_scaled(models: FaceModels, pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    small, sx, sy = shrink(pixels, max(1, round(width * scale)), max(1, round(height * scale)))
    rows = models.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR)).copy()
    rows[:, 0:14:2] /= sx
    rows[:, 1:14:2] /= sy
    return rows


def shrink(pixels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """Resize down to (width, height) fast and without aliasing; returns the x and y scales.

    An exact integer INTER_AREA step (OpenCV's fast path; a general INTER_AREA
    costs far more) then bilinear for the last factor below 2. The integer step
    may drop up to f-1 pixels at the right and bottom edges.
    """
    h, w = pixels.shape[:2]
    if (w, h) == (width, height):
        return pixels, 1.0, 1.0
    factor = min(w // width, h // height)
    if factor >= 2:
        w, h = w - w % factor, h - h % factor
        pixels = cv2.resize(pixels[:h, :w], (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    if pixels.shape[:2] != (height, width):
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
    return pixels, width / w, height / h


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


def _verify(models: FaceModels, pixels: np.ndarray, row: np.ndarray) -> float:
    """YuNet's score for the same face in a canonical crop (face about half of it)."""
    crop, _, _ = square_crop(pixels, row, 2.0)
    crop, _, _ = shrink(crop, VERIFY_SIDE, VERIFY_SIDE)
    found = models.verify(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    centers = found[:, :2] + found[:, 2:4] / 2
    near = np.all(np.abs(centers - VERIFY_SIDE / 2) < VERIFY_SIDE / 6, axis=1)
    return float(found[near, 14].max()) if near.any() else 0.0


def aligned_face(pixels: np.ndarray, row: np.ndarray) -> np.ndarray:
    """SFace's 112x112 aligned face (BGR), cut from a crop shrunk to about ALIGN_FACE."""
    crop, x0, y0 = square_crop(pixels, row, 2.0)
    factor = min(1.0, ALIGN_FACE / float(max(row[2], row[3])))
    points = row[4:14].reshape(5, 2).astype(np.float64) - (x0, y0)
    if factor < 1.0:
        side = max(1, round(crop.shape[0] * factor))
        crop, sx, _ = shrink(crop, side, side)
        points *= sx
    transform = similarity_transform(points, ARCFACE_POINTS)
    return cv2.warpAffine(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), transform, (112, 112), flags=cv2.INTER_LINEAR)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift taking ``source`` points nearest to ``target``.

    Umeyama's least-squares estimate, as OpenCV's ``FaceRecognizerSF.alignCrop`` computes it.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    signs = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    u, singular, vt = np.linalg.svd(covariance)
    rotation = u @ np.diag(signs) @ vt
    variance = source_centered.var(axis=0).sum()
    scale = float(singular @ signs / variance) if variance > 1e-12 else 1.0
    transform = np.empty((2, 3))
    transform[:, :2] = scale * rotation
    transform[:, 2] = target_mean - scale * rotation @ source_mean
    return transform


def face_quality(aligned_bgr: np.ndarray, side_px: float) -> float:
    """0-100 from the face's size (full marks at 80 px) and the aligned crop's sharpness."""
    gray = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    size_score = min(1.0, side_px / 80.0)
    sharp_score = min(1.0, sharpness / 150.0)
    return round(100.0 * math.sqrt(size_score * sharp_score), 1)


def clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def relative_box(row: np.ndarray, shape: tuple[int, ...]) -> Box:
    """A YuNet row's box relative to an image of ``shape``, clipped to [0, 1]."""
    height, width = shape[:2]
    x0, y0 = clip(row[0] / width), clip(row[1] / height)
    x1, y1 = clip((row[0] + row[2]) / width), clip((row[1] + row[3]) / height)
    return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0)
