"""Scanned PDFs and images read offline by OCR, every character keeping its box on its page.

The documents are made here from known text (``scan_samples``): Chinese pages typeset with
reportlab's CJK font, "scanned" by pdfium to an image-only PDF and to a crooked, noisy PNG and
JPEG, plus a PDF mixing typed pages with a scanned one. They go through the real loaders, the
real OCR models and a real knowledge base with the real embedding model.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import scan_samples as samples_module
from rapidfuzz.distance import Levenshtein
from scan_samples import PAGE_H, PAGE_W, QUESTIONS, character_error_rate, visible

from corpus.errors import Fix, IngestError
from corpus.folding import fold
from corpus.layout import page_of
from corpus.loaders import load_file
from corpus.ocr import engine
from corpus.pages import PageOptions, text_layer_usable
from qa.service import Wendao
from ui.output import answer_json

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "ocr"
MIN_ACCURACY = 0.97


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return samples_module.make_samples(tmp_path_factory.mktemp("scans"))


@pytest.fixture(scope="module")
def ocr_kb(samples, embedder, tmp_path_factory):
    """A knowledge base of the scans (one batch), then the mixed PDF (a second ingest)."""
    service = Wendao(kb_dir=tmp_path_factory.mktemp("ocr-kb") / "kb", embedder=embedder)
    events: list[tuple[str, int, int]] = []
    before = engine().calls
    first = service.ingest([samples.scanned_pdf, samples.png, samples.jpeg], progress=lambda *e: events.append(e))
    scans_ocr = engine().calls - before
    before = engine().calls
    second = service.ingest([samples.mixed_pdf])
    mixed_ocr = engine().calls - before
    return {"service": service, "reports": [first, second], "events": events, "ocr_calls": (scans_ocr, mixed_ocr)}


def page_texts(service: Wendao, doc_id: str) -> list[str]:
    document = service.snapshot().documents[doc_id]
    return [document.text[p.start : p.end] for p in service.page_layout(doc_id)]


def test_every_file_is_read_and_every_scanned_page_ocrd(ocr_kb):
    results = [(r.doc_id, r.status) for report in ocr_kb["reports"] for r in report.results]
    assert results == [("scanned.pdf", "added"), ("notice.png", "added"), ("typhoon.jpg", "added"), ("mixed.pdf", "added")]
    assert ocr_kb["ocr_calls"] == (5, 1)  # 3 scanned pages + 2 images; the mixed PDF's one scanned page
    # the ingest progress counts pages, file by file
    pages = [e for e in ocr_kb["events"] if e[0] == "pages"]
    assert pages == [("pages", 1, 3), ("pages", 2, 3), ("pages", 3, 3), ("pages", 1, 1), ("pages", 1, 1)]


def test_character_accuracy_against_the_source_text(ocr_kb, samples):
    """CER of every OCR'd page against the text it was typeset from (whitespace ignored)."""
    service = ocr_kb["service"]
    truth = [page.text for page in samples.pages]
    cases = {
        "scanned.pdf": list(zip(page_texts(service, "scanned.pdf"), truth)),
        "notice.png (rotated 0.8°, noise)": [(page_texts(service, "notice.png")[0], truth[0])],
        "typhoon.jpg (rotated -0.6°, noise, Traditional)": [(page_texts(service, "typhoon.jpg")[0], truth[1])],
        "mixed.pdf page 2 (scan under a mojibake text layer)": [(page_texts(service, "mixed.pdf")[1], truth[1])],
    }
    report, errors, characters = {}, 0, 0
    for name, pairs in cases.items():
        for number, (hypothesis, reference) in enumerate(pairs, 1):
            distance = Levenshtein.distance(visible(reference), visible(hypothesis))
            report[f"{name} #{number}"] = {"cer": round(distance / len(visible(reference)), 4), "characters": len(visible(reference))}
            errors += distance
            characters += len(visible(reference))
    report["all"] = {"cer": round(errors / characters, 4), "characters": characters}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "cer.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print("\nOCR character error rate:", json.dumps(report, ensure_ascii=False, indent=1))
    assert 1 - report["all"]["cer"] >= MIN_ACCURACY, report
    assert all(1 - row["cer"] >= MIN_ACCURACY - 0.02 for row in report.values()), report


def test_each_page_answers_its_question_with_page_and_boxes(ocr_kb):
    service = ocr_kb["service"]
    for number, (question, expected) in enumerate(QUESTIONS, 1):
        answer = service.ask(question)
        assert not answer.abstained, question
        assert fold(expected) in fold(answer.text), (question, answer.text)
        shaped = answer_json(answer, service.page_layout)
        cited = [c for c in shaped["citations"] if any(fold(expected) in fold(c["text"][s["start"] - c["start"] : s["end"] - c["start"]]) for s in c["spans"])]
        assert cited, shaped
        for citation in cited:
            assert citation["page"] == (1 if citation["doc_id"] in ("notice.png", "typhoon.jpg") else number)
            assert citation["boxes"] and all(box["page"] == citation["page"] for box in citation["boxes"])
            assert all(0 <= box["x0"] < box["x1"] <= 1 and 0 <= box["y0"] < box["y1"] <= 1 for box in citation["boxes"])


def test_mixed_pdf_is_read_page_by_page(ocr_kb, samples):
    """Typed pages come from the text layer, exactly; only the scanned page is OCR'd, even
    though it has a text layer too (mojibake from a broken font map)."""
    service = ocr_kb["service"]
    layout = service.page_layout("mixed.pdf")
    assert [page.ocr for page in layout] == [False, True, False]
    texts = page_texts(service, "mixed.pdf")
    assert visible(texts[0]) == visible(samples.pages[0].text)
    assert visible(texts[2]) == visible(samples.pages[2].text)
    assert character_error_rate(samples.pages[1].text, texts[1]) <= 1 - MIN_ACCURACY
    # the scanned page's own text layer is there, and is garbage
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(samples.mixed_pdf))
    garbage = pdf[1].get_textpage().get_text_range()
    pdf.close()
    assert len(visible(garbage)) > 50 and character_error_rate(samples.pages[1].text, garbage) > 0.5
    assert not text_layer_usable(garbage, 0, 1.0)
    assert text_layer_usable(samples.pages[1].text, 0, 0.0)


def _centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def _matched_boxes(text: str, boxes: list, drawn: list) -> list[tuple]:
    """(found box, drawn box) for the characters the text shares with what was drawn."""
    found = [(ch, box) for ch, box in zip(text, boxes) if not ch.isspace()]
    reference = [(ch, box) for ch, box in drawn if not ch.isspace()]
    pairs = []
    for tag, i1, i2, j1, _ in Levenshtein.opcodes("".join(c for c, _ in reference), "".join(c for c, _ in found)):
        if tag == "equal":
            pairs += [(found[j1 + k][1], reference[i1 + k][1]) for k in range(i2 - i1)]
    return pairs


def test_character_boxes_are_where_the_text_was_drawn(ocr_kb, samples):
    """Text layer (typed pages) and OCR (the scan): each character's box centre lies on the
    glyph that was drawn there (PDF points, top-left origin)."""
    service = ocr_kb["service"]
    document = service.snapshot().documents["mixed.pdf"]
    for page, drawn in zip(service.page_layout("mixed.pdf"), [samples.pages[0], samples.pages[1], samples.pages[2]]):
        assert (round(page.width), round(page.height)) == (round(PAGE_W), round(PAGE_H))
        pairs = _matched_boxes(document.text[page.start : page.end], page.boxes, drawn.chars)
        assert len(pairs) >= 0.95 * len(visible(drawn.text))
        for found, truth in pairs:
            (fx, fy), (tx, ty) = _centre(found), _centre(truth)
            size = truth[3] - truth[1]
            tolerance = 0.15 * size if not page.ocr else 0.6 * size
            assert abs(fx - tx) <= tolerance and abs(fy - ty) <= tolerance, (page.number, found, truth)


def test_knowledge_base_keeps_each_original_once_and_boxes_per_generation(ocr_kb):
    service = ocr_kb["service"]
    snapshot = service.snapshot()
    originals = sorted(p.name for p in (service.kb_dir / "originals").iterdir())
    assert originals == sorted({d.sha256 for d in snapshot.documents.values()})
    assert snapshot.records.layout_line("mixed.pdf")  # committed with the document's record
    for doc_id in ("scanned.pdf", "mixed.pdf"):
        assert service.original(doc_id)[:5] == b"%PDF-"
    assert page_of(service.page_layout("scanned.pdf"), 0).number == 1


def test_removing_a_document_drops_its_original(ocr_kb, tmp_path, embedder):
    kb = tmp_path / "kb"
    shutil.copytree(ocr_kb["service"].kb_dir, kb, ignore=shutil.ignore_patterns("write.lock"))
    service = Wendao(kb_dir=kb, embedder=embedder)
    png = service.snapshot().documents["notice.png"].sha256
    service.remove(["notice.png"])
    assert (kb / "originals" / png).is_file()  # the previous generation still refers to it
    service.remove(["typhoon.jpg"])
    assert not (kb / "originals" / png).exists()
    layout = service.page_layout("mixed.pdf")
    assert service.page_layout("scanned.pdf") and layout  # carried over from generation to generation
    service.reindex()  # re-chunks the stored text: the boxes still index into it
    assert service.page_layout("mixed.pdf") == layout
    assert sorted(p.name for p in (kb / "originals").iterdir()) == sorted(d.sha256 for d in service.snapshot().documents.values())


def test_damaged_images_fail_alone(tmp_path, embedder, samples):
    good = tmp_path / "note.txt"
    good.write_text("云溪市农业技术推广站于2024年5月成立，共有技术人员21名。\n", encoding="utf-8")
    data = samples.png.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20)
    text_as_image = tmp_path / "notes.webp"
    text_as_image.write_text("这不是图片", encoding="utf-8")
    from PIL import Image

    huge = tmp_path / "huge.png"  # 90 megapixels of nothing: a few hundred KB, refused before decoding
    Image.new("L", (10_000, 9_000), 255).save(huge)
    report = Wendao(kb_dir=tmp_path / "kb", embedder=embedder).ingest([good, truncated, garbage, text_as_image, huge])
    outcome = {Path(r.source).name: (r.status, r.reason) for r in report.results}
    assert outcome["note.txt"][0] == "added"
    for name in ("truncated.png", "garbage.jpg", "notes.webp"):
        status, reason = outcome[name]
        assert status == "failed" and "corrupt or unreadable image" in reason and "\n" not in reason, (name, reason)
    assert outcome["huge.png"] == ("failed", "image too large: over 80 megapixels")


def test_page_limit_and_per_page_time_limit(samples):
    with pytest.raises(IngestError) as caught:
        load_file(samples.scanned_pdf, pages=PageOptions(max_pages=2))
    assert caught.value.reason == "3 pages is over the 2-page limit"
    assert caught.value.fix == Fix("raise_page_limit")
    with pytest.raises(IngestError) as caught:
        load_file(samples.png, pages=PageOptions(ocr_timeout=0.05))
    assert caught.value.source == str(samples.png)
    assert caught.value.reason.startswith("page 1: OCR stopped after ")
    assert caught.value.reason.endswith("over the 0.05 s per-page limit")
    assert caught.value.fix == Fix("raise_ocr_timeout")
    # the stopped OCR process is replaced: the next page is read as usual
    assert "148" in load_file(samples.png).text
