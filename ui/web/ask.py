"""问答 tab: a question in, the cited answer, one card per citation, and the source viewer."""
from __future__ import annotations

import gradio as gr

from corpus.errors import WendaoError
from corpus.pipeline import sample_queries_path
from qa.answer import Answer
from qa.service import Wendao
from qa.testsets import load_queries
from ui.web import concurrency, judge, render

EMPTY_QUESTION = "请输入问题：问题不能为空。"
EXAMPLES = 6


def example_questions(limit: int = EXAMPLES) -> list[str]:
    """Answerable questions from the bundled sample query file (none when it is missing)."""
    path = sample_queries_path()
    if not path.is_file():
        return []
    return [q.question for q in load_queries(path) if not q.off_topic][:limit]


def _answer(service: Wendao, question: str) -> tuple[str, str, Answer | None]:
    if not (question or "").strip():
        return render.message_html(EMPTY_QUESTION), "", None
    try:
        answer = service.ask(question)
    except WendaoError as error:
        return render.error_html("无法回答：", error), "", None
    head = render.answer_html(answer) + render.timings_html(answer.timings_ms)
    return head, render.cards_html(answer), answer


def ask(service: Wendao, question: str) -> tuple[str, str]:
    """(answer + timings HTML, citation cards HTML); errors become a visible message."""
    return _answer(service, question)[:2]


def ask_and_offer_judging(service: Wendao, question: str) -> tuple:
    """``ask``, plus the cited passages offered for judging (none when it failed or abstained)."""
    head, cards, answer = _answer(service, question)
    cited = [(f"[{c.n}]", c.hit) for c in answer.citations] if answer else []
    state, picker = judge.shown((question or "").strip(), cited)
    return head, cards, state, picker


def build(service: Wendao) -> None:
    """The tab's components and events (call inside a ``gr.Tab``)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            question = gr.Textbox(
                label="问题", placeholder="用中文提问，例如：崇州职教中心与多少家企业合作？", lines=2, elem_id="wd-question"
            )
            submit = gr.Button("提问", variant="primary", elem_id="wd-ask")
            examples = example_questions()
            if examples:
                gr.Examples(examples=[[q] for q in examples], inputs=[question], label="示例问题")
            answer = gr.HTML(elem_id="wd-answer")
            shown = gr.Textbox(visible=False)  # what is shown, for judging (ui.web.judge)
            picker = judge.build(service, "wd-judge", "ask", shown, abstain=True)
            cards = gr.HTML(elem_id="wd-cards")
        with gr.Column(scale=4):
            gr.HTML(render.viewer_frame_html(render.ASK_FRAME), elem_id="wd-viewer")
    gr.on(
        [submit.click, question.submit],
        lambda text: ask_and_offer_judging(service, text),
        inputs=[question],
        outputs=[answer, cards, shown, picker],
        api_visibility="private",
        **concurrency.QUESTIONS,
    )
