"""Reading order, paragraphs and character boxes of a page (no OCR: lines placed by hand)."""
from __future__ import annotations

from corpus.folding import fold
from corpus.layout import Line, Page, join_pages, page_from_lines, page_of, span_rects

H = 10.0  # character height and width


def line(text: str, x: float, y: float) -> Line:
    """A line of square characters starting at (x, y); spaces take room but have no box."""
    boxes = [None if ch == " " else (x + i * H, y, x + (i + 1) * H, y + H) for i, ch in enumerate(text)]
    return Line(list(text), boxes)


def assemble(lines: list[Line], ordered: bool = False, number: int = 1) -> tuple[str, Page]:
    return page_from_lines(number, 400.0, 600.0, lines, ocr=not ordered, ordered=ordered)


def test_wrapped_lines_join_and_paragraph_boundaries_break():
    lines = [
        line("第一条为了规范管理，制定", 20, 10),  # full width: continues
        line("本办法，自公布之日起施行", 20, 25),  # full width, but the next opens an article
        line("第二条本办法由市政府负责", 20, 40),
        line("解释。", 20, 55),  # short: ends the paragraph
        line("一、总体要求各地区", 40, 70),  # indented: a new paragraph
        line("要加强组织领导确保落实到", 20, 85),
    ]
    text, page = assemble(lines)
    assert text.split("\n") == [
        "第一条为了规范管理，制定本办法，自公布之日起施行",
        "第二条本办法由市政府负责解释。",
        "一、总体要求各地区要加强组织领导确保落实到",
    ]
    assert len(page.boxes) == len(text)
    assert [i for i, box in enumerate(page.boxes) if box is None] == [i for i, ch in enumerate(text) if ch == "\n"]


def test_reading_order_and_table_cells():
    lines = [
        line("金额", 200, 50),  # detected before 项目, on the same row
        line("项目", 20, 51),
        line("实训基地建设          1,000", 20, 70),  # one detection over two cells: cut at the gap
    ]
    text, page = assemble(lines)
    assert text == "项目\t金额\n实训基地建设\t1,000"
    assert len(page.boxes) == len(text)


def test_wrapped_latin_words_keep_a_space():
    text, page = assemble([line("The plan covers smart", 20, 10), line("farming.", 20, 25)])
    assert text == "The plan covers smart farming."
    assert page.boxes[text.index(" farming")] is None


def test_text_layer_lines_keep_their_order():
    text, page = assemble([line("标题在下", 20, 300), line("正文在上。", 20, 10)], ordered=True)
    assert text == "标题在下\n正文在上。"
    assert not page.ocr


def test_span_rectangles_one_per_line_and_pages_round_trip():
    first = assemble([line("甲乙丙丁戊己庚辛壬癸子丑", 20, 10), line("寅卯辰巳", 20, 25)])
    second = assemble([line("第二页的文字。", 20, 10)], number=2)
    paged = join_pages([first, second])
    assert paged.text == "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳\n\n第二页的文字。"
    start = paged.text.index("子")
    rects = span_rects(paged.pages, start, start + 4)  # 子丑 | 寅卯: two lines
    assert [(r.page, round(r.x0 * 400), round(r.y0 * 600), round(r.x1 * 400), round(r.y1 * 600)) for r in rects] == [
        (1, 120, 10, 140, 20),
        (1, 20, 25, 40, 35),
    ]
    assert page_of(paged.pages, paged.text.index("第")).number == 2
    assert page_of(paged.pages, paged.pages[0].end).number == 2  # the blank line between belongs to the next page
    for page in paged.pages:
        assert Page.from_json(page.to_json()) == page


def test_ocr_look_alikes_fold_for_matching_only():
    read, typed = "青禾政发[2024]12号，预算2O24万元，占比12。5%", "青禾政发〔2024〕12号，预算2024万元，占比12.5%"
    assert fold(read) == fold(typed)
    assert len(fold(read)) == len(read)
    assert fold("Office 第I章") == "office 第i章"  # letters outside numbers stay letters
