"""OCR speed and accuracy on scans made from known text: pages per second and character error rate.

    python benchmarks/ocr.py                              # PP-OCRv5 recogniser (wendao's), denoised
    python benchmarks/ocr.py --recognisers ppocrv5,ppocrv4 --denoise both

The rendered set is the tests' (``tests/scan_samples.py``): three A4 pages of Chinese typeset
with reportlab's CJK font (Simplified paragraphs with numbers and dates, Traditional paragraphs,
a ruled table), scanned by pdfium at 200 dpi into an image-only PDF, and into a PNG (page 1)
and a JPEG (page 2) turned by 0.8° / -0.6° with noise; plus the mixed PDF (typed pages 1 and 3,
page 2 a scan under a mojibake text layer) and the typed PDF. Every file goes through wendao's
own loader (``corpus.loaders.load_file``: per-page text-layer decision, rendering, OCR, reading
order). CER is the edit distance to the typeset text over its length, whitespace ignored;
"folded" compares after wendao's matching fold (Traditional→Simplified, widths, OCR look-alikes).
Pages/s counts the OCR'd pages over the time spent in those files, after the OCR process has
started (its start-up, loading the models, is reported apart). Prints JSON, then a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from scan_samples import character_error_rate, make_samples  # noqa: E402

from corpus.folding import fold  # noqa: E402
from corpus.loaders import load_file  # noqa: E402
from corpus.ocr import RECOGNISERS, OcrEngine, use_engine  # noqa: E402
from corpus.pages import PageOptions  # noqa: E402


def documents(folder: Path) -> tuple[list[tuple[str, Path, list[int]]], list]:
    """(label, file, which typeset page each of its pages shows) and the typeset pages."""
    s = make_samples(folder)
    return [
        ("scanned.pdf (image-only, 3 pages)", s.scanned_pdf, [0, 1, 2]),
        ("notice.png (0.8°, noise)", s.png, [0]),
        ("typhoon.jpg (-0.6°, noise, Traditional)", s.jpeg, [1]),
        ("mixed.pdf (typed, scan, typed)", s.mixed_pdf, [0, 1, 2]),
        ("typed.pdf (text layer only)", s.text_pdf, [0, 1, 2]),
    ], s.pages


def run(recogniser: str, denoise: bool, folder: Path) -> dict:
    files, truth = documents(folder)
    engine = OcrEngine(recogniser)
    use_engine(engine)
    startup = engine.start()  # now, so the first file's time is its own
    rows, total_pages, total_seconds, errors, characters = [], 0, 0.0, 0, 0
    for label, path, shows in files:
        before = engine.calls
        started = time.perf_counter()
        loaded = load_file(path, pages=PageOptions(denoise=denoise))
        seconds = time.perf_counter() - started
        ocr_pages = engine.calls - before
        cers, folded = [], []
        for page, index in zip(loaded.pages, shows):
            text, reference = loaded.text[page.start : page.end], truth[index].text
            cers.append(character_error_rate(reference, text))
            folded.append(character_error_rate(fold(reference), fold(text)))
            if page.ocr:
                length = len("".join(reference.split()))
                errors += round(cers[-1] * length)
                characters += length
        rows.append({
            "file": label, "pages": len(loaded.pages), "ocr_pages": ocr_pages, "seconds": round(seconds, 2),
            "pages_per_s": round(ocr_pages / seconds, 3) if ocr_pages else None,
            "cer": [round(c, 4) for c in cers], "cer_folded": [round(c, 4) for c in folded],
        })
        total_pages += ocr_pages
        total_seconds += seconds if ocr_pages else 0.0
    engine.close()
    return {
        "recogniser": recogniser, "denoise": denoise, "startup_s": round(startup, 2), "files": rows,
        "ocr_pages": total_pages, "ocr_pages_per_s": round(total_pages / total_seconds, 3),
        "cer_ocr_pages": round(errors / max(characters, 1), 4),
    }


def table(results: list[dict]) -> str:
    lines = ["| recogniser | denoise | file | pages (OCR) | s | pages/s | CER per page | CER folded |", "|---|---|---|---|---|---|---|---|"]
    for result in results:
        for row in result["files"]:
            rate = "—" if row["pages_per_s"] is None else f"{row['pages_per_s']:.2f}"
            lines.append(
                f"| {result['recogniser']} | {'yes' if result['denoise'] else 'no'} | {row['file']} | {row['pages']} ({row['ocr_pages']}) "
                f"| {row['seconds']:.1f} | {rate} | {' '.join(f'{c:.3f}' for c in row['cer'])} | {' '.join(f'{c:.3f}' for c in row['cer_folded'])} |"
            )
        lines.append(
            f"| {result['recogniser']} | {'yes' if result['denoise'] else 'no'} | **all OCR'd pages** | {result['ocr_pages']} "
            f"| start-up {result['startup_s']:.1f} | **{result['ocr_pages_per_s']:.2f}** | **{result['cer_ocr_pages']:.4f}** | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recognisers", default=RECOGNISERS[0], help=f"comma-separated: {', '.join(RECOGNISERS)}")
    parser.add_argument("--denoise", choices=["yes", "no", "both"], default="yes", help="3x3 median filter before OCR")
    args = parser.parse_args()
    denoise = {"yes": [True], "no": [False], "both": [True, False]}[args.denoise]
    results = []
    with tempfile.TemporaryDirectory(prefix="wendao-ocr-bench-") as folder:
        for recogniser in args.recognisers.split(","):
            for flag in denoise:
                results.append(run(recogniser.strip(), flag, Path(folder) / f"{recogniser}-{flag}"))
    report = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()], "results": results}
    print(json.dumps(report, ensure_ascii=False, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
