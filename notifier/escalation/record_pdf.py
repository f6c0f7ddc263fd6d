"""The service record printed for a dispute: A4 pages, in zh-TW or English.

The same facts as the JSON record (:mod:`notifier.escalation.record`): each
notice with whether it was served and how, every channel tried with its
provider id, its receipts and their times, the template and the SHA-256 of
the content sent, and the account's cases with each outcome and agent. Times
are on the utility's wall clock, its zone named. The font is the Traditional
Chinese one the visit notices and postcards embed (channels/print_layout.py),
cut down to the characters printed; tables break across pages by themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import FontFace

from channels.print_layout import find_cjk_font, missing_glyphs, open_font, subset_font_file
from notifier.escalation.record import (
    CaseRecord,
    ChannelRecord,
    NoticeRecord,
    ProofOut,
    ServiceRecord,
)
from notifier.policy.local_time import local, shown

__all__ = ["LANGUAGES", "service_record_pdf"]

MARGIN = 15.0
FONT = "cjk"
_WORDS: dict[str, dict[str, str]] = {
    "zh-TW": {
        "title": "通知送達紀錄", "colon": "：", "times": "時間均為", "account": "電號", "generated": "製表時間",
        "notices": "通知", "cases": "催收案件", "notice": "通知", "level": "第 {level} 級",
        "created": "建立", "served": "已證明送達", "not served": "未證明送達",
        "bills": "所載帳單", "due": "繳費期限", "overdue": "已逾期", "paid": "已繳",
        "channel": "管道／供應商編號", "receipts": "狀態與回執", "template": "範本及版本",
        "content": "送出內容 SHA-256", "none": "（無）", "case": "案件", "opened": "開立",
        "outcomes": "結果", "by": "記錄者", "page": "第 {page} 頁", "no notices": "無通知",
        "how.delivered": "回執：已送達", "how.posted": "已列入印製批次", "how.notice_delivered": "外勤人員面交",
        "kind.call": "電話", "kind.visit": "外訪",
        "legend": "SHA-256 為送交管道之內容（簡訊、語音稿全文；電子郵件、推播為其各部分之 JSON）"
                  "的雜湊值；個人資料不列於本紀錄。",
    },
    "en": {
        "title": "Service record", "colon": ": ", "times": "all times", "account": "Account", "generated": "Generated",
        "notices": "Notices", "cases": "Collection cases", "notice": "Notice",
        "level": "level {level}", "created": "created", "served": "Served",
        "not served": "Not proven served", "bills": "Bills stated", "due": "due",
        "overdue": "overdue", "paid": "paid", "channel": "Channel / provider id",
        "receipts": "Status and receipts", "template": "Template and version",
        "content": "SHA-256 of the content sent", "none": "(none)", "case": "Case",
        "opened": "opened", "outcomes": "Outcomes", "by": "recorded by", "page": "page {page}",
        "no notices": "No notices", "how.delivered": "delivery receipt",
        "how.posted": "in a print batch", "how.notice_delivered": "handed over by a field agent",
        "kind.call": "call", "kind.visit": "visit",
        "legend": "SHA-256 of the content handed to the channel (an SMS's or a call's text; "
                  "the JSON of an email's or a push's parts). No personal data is printed.",
    },
}  # fmt: skip
_CODES: dict[str, dict[str, str]] = {
    "zh-TW": {
        "sms": "簡訊", "email": "電子郵件", "voice": "語音", "push": "推播", "postcard": "明信片",
        "queued": "排隊", "sending": "傳送中", "deferred": "延後", "sent": "已送出",
        "delivered": "已送達", "failed": "失敗", "undelivered": "未送達", "cancelled": "取消",
        "suppressed": "重複未送", "unknown": "無回執", "active": "有效", "unreachable": "無法聯繫",
        "skipped": "略過", "open": "處理中", "done": "結案", "notice_delivered": "已面交通知",
        "nobody_home": "無人在家", "refused": "拒絕", "promised": "承諾繳費",
        "no_answer": "無人接聽", "wrong_number": "號碼錯誤", "paid_before_trigger": "先前已繳",
    },
    "en": {"sms": "SMS"},
}  # fmt: skip
LANGUAGES: tuple[str, ...] = tuple(_WORDS)


def service_record_pdf(record: ServiceRecord, *, language: str, tz: ZoneInfo) -> bytes:
    """The record as a PDF in ``language`` (``zh-TW`` or ``en``), times on ``tz``'s clock."""
    if language not in _WORDS:
        raise ValueError(f"language {language!r} is not one of {', '.join(_WORDS)}")
    layout = _Layout(record, language, tz)
    font_path = find_cjk_font()
    font = open_font(font_path)
    text = "".join(layout.all_text())
    missing = missing_glyphs(font, text)
    if missing:
        raise ValueError(f"the font {font_path.name} has no glyph for {missing}")
    with subset_font_file(font, text) as font_file:
        return layout.draw(font_file)


class _Pdf(FPDF):
    """A4 portrait with the account and page on every page's foot."""

    foot = ""

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FONT, size=7)
        self.cell(0, 4, self.foot.format(page=self.page_no()), align="R")


class _Layout:
    """The record as lines and tables; drawn twice over: once for its characters, once to print."""

    def __init__(self, record: ServiceRecord, language: str, tz: ZoneInfo) -> None:
        self.record, self.language, self.tz = record, language, tz
        self.w = _WORDS[language]

    def word(self, code: str) -> str:
        return _CODES[self.language].get(code, code)

    def at(self, when: datetime) -> str:
        return local(when, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    # -- the content -----------------------------------------------------------------------

    def heading(self) -> list[str]:
        w, r = self.w, self.record
        return [
            w["title"],
            f"{w['account']} {r.account_no} · {w['generated']} {shown(r.generated_at, self.tz)}"
            f" · {w['times']} {self.tz.key}",
        ]

    def notice_lines(self, notice: NoticeRecord) -> list[str]:
        w = self.w
        about = notice.bill_no or notice.usage_period or ""
        head = (
            f"{w['notice']} #{notice.notification_id} · {notice.type} "
            f"{w['level'].format(level=notice.level)} · {about} · "
            f"{w['created']} {self.at(notice.created_at)} · {self.word(notice.status)}"
        )
        return [head, self.proof(notice.served), self.bills(notice)]

    def proof(self, proof: ProofOut | None) -> str:
        w = self.w
        if proof is None:
            return w["not served"]
        channel = f" · {self.word(proof.channel)}" if proof.channel else ""
        reference = f" · {proof.reference}" if proof.reference else ""
        return (
            f"{w['served']}{w['colon']}{w['how.' + proof.how]}{channel} · {self.at(proof.at)}"
            f"{reference}"
        )

    def bills(self, notice: NoticeRecord) -> str:
        w = self.w
        seen: dict[str, str] = {}
        for channel in notice.channels:
            for bill in channel.stated:
                state = f" {w['overdue']}" if bill.overdue else ""
                paid = f" {w['paid']} NT${bill.paid:,}" if bill.paid else ""
                seen.setdefault(
                    bill.bill_no,
                    f"{bill.bill_no} NT${bill.amount:,}{paid} {w['due']} {bill.due_date}{state}",
                )
        return f"{w['bills']}{w['colon']}{'; '.join(seen.values()) or w['none']}"

    def channel_row(self, channel: ChannelRecord) -> tuple[str, str, str, str]:
        provider = " · ".join(p for p in (channel.provider, channel.provider_id) if p)
        receipts = "\n".join(
            f"{self.at(entry.at)} {self.word(entry.status)}"
            + (f" ({entry.code})" if entry.code else "")
            for entry in channel.timeline
        )
        template = (
            f"{channel.template}\n{_halves(channel.template_sha256)}"
            if channel.template and channel.template_sha256
            else self.w["none"]
        )
        content = _halves(channel.content_sha256) if channel.content_sha256 else self.w["none"]
        return (
            f"#{channel.delivery_id} {self.word(channel.channel)} ({channel.language})\n{provider}",
            receipts,
            template,
            content,
        )

    def case_lines(self, case: CaseRecord) -> list[str]:
        w = self.w
        head = (
            f"{w['case']} #{case.case_id} · {w['kind.' + case.kind]} · {self.word(case.status)} · "
            f"{w['opened']} {case.opened_on} · {', '.join(case.bills)}"
        )
        outcomes = [
            f"{self.at(o.at)} {self.word(o.outcome)}"
            + (f" · {o.agent}" if o.agent else "")
            + f" · {w['by']} {o.recorded_by}"
            for o in case.outcomes
        ]
        return [head, self.proof(case.notice_served) if case.kind == "visit" else "", *outcomes]

    def table_head(self) -> tuple[str, str, str, str]:
        w = self.w
        return (w["channel"], w["receipts"], w["template"], w["content"])

    def all_text(self) -> Iterator[str]:
        w = self.w
        yield from self.heading()
        yield from (w["notices"], w["cases"], w["legend"], w["no notices"], "0123456789#")
        yield self.foot()
        yield from self.table_head()
        for notice in self.record.notices:
            yield from self.notice_lines(notice)
            for channel in notice.channels:
                yield from self.channel_row(channel)
        for case in self.record.cases:
            yield from self.case_lines(case)

    def foot(self) -> str:
        return f"{self.w['title']} · {self.record.account_no} · {self.w['page']}"

    # -- the drawing -----------------------------------------------------------------------

    def draw(self, font_file: Path) -> bytes:
        pdf = _Pdf(orientation="P", unit="mm", format="A4")
        pdf.foot = self.foot()
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(True, margin=MARGIN)
        pdf.set_creator("notifier")
        pdf.set_title(f"{self.w['title']} {self.record.account_no}")
        pdf.set_lang(self.language)
        pdf.add_font(FONT, "", str(font_file))
        pdf.add_page()
        title, sub = self.heading()
        pdf.set_font(FONT, size=16)
        pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, size=9)
        pdf.multi_cell(0, 5, sub, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, size=7)
        pdf.multi_cell(0, 3.5, self.w["legend"], new_x="LMARGIN", new_y="NEXT")
        self._section(pdf, self.w["notices"])
        if not self.record.notices:
            pdf.set_font(FONT, size=9)
            pdf.cell(0, 5, self.w["no notices"], new_x="LMARGIN", new_y="NEXT")
        for notice in self.record.notices:
            self._notice(pdf, notice)
        if self.record.cases:
            self._section(pdf, self.w["cases"])
        for case in self.record.cases:
            pdf.set_font(FONT, size=9)
            for line in filter(None, self.case_lines(case)):
                pdf.multi_cell(0, 4.5, line, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        return bytes(pdf.output())

    def _section(self, pdf: FPDF, title: str) -> None:
        pdf.ln(3)
        pdf.set_font(FONT, size=12)
        pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_line_width(0.3)
        pdf.line(MARGIN, pdf.get_y(), pdf.w - MARGIN, pdf.get_y())
        pdf.ln(2)

    def _notice(self, pdf: FPDF, notice: NoticeRecord) -> None:
        head, proof, bills = self.notice_lines(notice)
        if pdf.will_page_break(30):
            pdf.add_page()
        pdf.set_font(FONT, size=10)
        pdf.multi_cell(0, 5, head, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, size=9)
        pdf.multi_cell(0, 4.5, proof, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 4.5, bills, new_x="LMARGIN", new_y="NEXT")
        if notice.channels:
            pdf.ln(1)
            pdf.set_font(FONT, size=7)
            with pdf.table(
                col_widths=(38, 44, 49, 49),
                line_height=3.4,
                headings_style=FontFace(emphasis=None, fill_color=(230, 230, 230)),
                first_row_as_headings=True,
                text_align="LEFT",
            ) as table:
                for cells in (self.table_head(), *map(self.channel_row, notice.channels)):
                    row = table.row()
                    for cell in cells:
                        row.cell(cell)
        pdf.ln(4)


def _halves(digest: str | None) -> str:
    """A hex digest on two lines of 32, so that it fits a column and reads in pairs."""
    if not digest:
        return ""
    return f"{digest[:32]}\n{digest[32:]}"
