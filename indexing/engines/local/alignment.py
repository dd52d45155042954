"""Aligning a found face for SFace, and scoring the aligned crop.

Step 6 of ``detection``: the five landmarks are mapped onto ArcFace's template
(``similarity_transform``, as OpenCV's ``alignCrop``), on a crop shrunk so the
face is at most ``ALIGN_FACE`` px (full resolution for small faces, no
aliasing for big ones), cut from the image at half size when the face allows.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .detection import face_source, shrink, square_crop

ALIGN_FACE = 112  # largest face box (px) alignCrop gets: SFace's input size

# Where SFace (like ArcFace) expects the five landmarks in its 112x112 input.
ARCFACE_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def aligned_face(pixels: np.ndarray, row: np.ndarray) -> np.ndarray:
    """SFace's 112x112 aligned face (BGR), cut from a crop shrunk to about ALIGN_FACE."""
    pixels, row = face_source(pixels, row, ALIGN_FACE)
    crop, x0, y0 = square_crop(pixels, row, 2.0)
    factor = min(1.0, ALIGN_FACE / float(max(row[2], row[3])))
    points = row[4:14].reshape(5, 2).astype(np.float64) - (x0, y0)
    if factor < 1.0:
        side = max(1, round(crop.shape[0] * factor))
        crop, sx, _ = shrink(crop, side, side)
        points *= sx
    transform = similarity_transform(points, ARCFACE_POINTS)
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    return cv2.warpAffine(bgr, transform, (112, 112), flags=cv2.INTER_LINEAR)


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
