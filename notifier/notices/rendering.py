"""Notice templates, rendered strictly: a missing variable is an error, never a blank.

Layout of the templates directory::

    templates/<event_type>/<channel>.<lang>.j2       blocks: body; subject (email, push title)
    templates/<event_type>/<document>.<lang>.j2      blocks: subject (its title) and body
    templates/<event_type>/email.<lang>.html.j2      a whole HTML document, autoescaped
    templates/_<anything>/                           shared layouts, never rendered alone

Channels: sms, voice, email, push, postcard. Documents (:data:`DOCUMENTS`) are
printed by people rather than sent by a channel: ``notice``, the notice a field
agent leaves at the home (``escalation.visit``). ``render``, ``available`` and
``check_all`` take a document kind wherever they take a channel. A language with no template for
a channel falls back to zh-TW (``RenderedContent.language_fallback``); an HTML
email body is rendered in the language of the text body when that language
has one, otherwise the email goes out as text only.

The context (what the caller, the routing code, passes)::

    language: str                      # "zh-TW" | "en"
    level: int                         # dunning level, 1 or 2 (1 for non-dunning)
    account: {account_no: str (11 digits), account_no_masked: str (e.g. "012****7890"),
              name: str | None}
    today: date                        # the business date (Asia/Taipei) it is rendered on
    bill: {bill_no, period: "2026-09", kind, amount: int, paid: int, owed: int,
           due_date: date, overdue: bool} | None
          (the bill the event is about; None for usage.abnormal. ``amount`` is what was
          billed, ``paid`` what its payments add up to, ``owed`` what is left to pay)
    bills: list of bills as above      # all unpaid bills of the account, oldest first
    total: int                         # sum of what is owed on ``bills``
    overdue: list of bills             # the unpaid bills due before ``today``
    overdue_total: int                 # what is owed on them: the only "overdue" amount
    upcoming: list of bills            # the unpaid bills not yet due: never called overdue
    upcoming_total: int
    payment: {amount: int, paid_at: datetime, method: str | None} | None
          (bill.paid: the payment this notice is about)
    correction: {amount: int, due_date: date} | None
          (bill.corrected: the terms the earlier notice named)
    usage: {period_start: date, period_end: date, kwh: float, baseline_kwh: float,
            ratio: float (kwh/baseline - 1, e.g. 0.85), reason: str | None,
            urgent: bool (a suspected leak: say what to do now)} | None
    service_phone: str                 # e.g. "1911"
    utility: {name, name_en, sender_name, phone, website, website_host, logo_url}
          (who the notice is from: Settings.identity; ``phone`` is ``service_phone``,
          ``website_host`` the website as typed, "www.utility.example"; ``logo_url`` may be "")
    pay_url: str                       # e.g. "https://pay.utility.example/bill/B202609-01234567890"
    visit: {date: date, agent_name: str}   # escalation.visit only: the field agent's visit
    demand: {issued_on: date, deadline: date}
          (collection.final_demand only: the demand's date, and the last day to pay
          before the supply may be suspended)
    reconnection: {paid_on: date}      # collection.reconnected only: the payment's date

For ``bill.paid``, ``bill`` is the bill just paid and ``bills``/``total`` what
is still unpaid (often []); a partial payment leaves ``bill.owed`` above 0. When
``bills`` is empty, ``overdue``/``upcoming`` hold ``bill`` (a notice about one
bill always has it to name). Unpaid notices call overdue only what is in
``overdue`` and print a total only when a section has more than one bill. The renderer
overwrites ``language`` with the language actually used, so a zh-TW fallback
writes its dates the zh-TW way. Dates may be ``datetime.date`` or ISO strings.

Filters: ``money`` (1830 -> "NT$1,830"), ``date`` ("115年11月20日" in zh-TW with
Minguo years, "2026年11月20日" without, "20 Nov 2026" in en; ``date(spoken=True)``
spells the English month out), ``period`` ("2026-09" -> "115年9月" / "Sep 2026"),
``number`` (1234.5 -> "1,235"; ``number(1)`` -> "1,234.5"), ``spell_digits``
("1911" -> "1 9 1 1", for voice), ``cardinal`` (an amount a voice reads as a number,
see channels/speech.py) and ``percent`` (0.4567 -> "46%"). Test:
``gsm7`` (printable ASCII but the backtick, a safe subset of the GSM-7 alphabet: a
name that is not ``gsm7`` would turn an English SMS into UCS-2 and halve its
length) and ``latin`` (every letter in Latin script: a name an English voice can read;
a CJK name is not greeted by the en-US voice).

Every failure (no template, an undefined variable, a syntax error, a filter
given a bad value, an empty body) raises :class:`TemplateError` naming the
template file, its line and, for an undefined variable, the variable.
:meth:`Renderer.check_all` renders every template at start-up, so a broken
template stops the service instead of reaching a customer.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    pass_context,
    select_autoescape,
)
from jinja2.meta import find_referenced_templates
from jinja2.runtime import Context

from channels.base import CHANNEL_NAMES
from channels.speech import cardinal

__all__ = [
    "DOCUMENTS",
    "SAMPLE_UTILITY",
    "SAMPLE_VARIANTS",
    "RenderedContent",
    "Renderer",
    "TemplateError",
    "TemplateIdentity",
    "bill_entry",
    "format_date",
    "format_money",
    "format_number",
    "format_percent",
    "format_period",
    "is_gsm7",
    "sample_context",
    "spell_digits",
    "split_bills",
]

DOCUMENTS: tuple[str, ...] = ("notice",)
"""Document kinds rendered like a channel but printed, not sent; never in CHANNEL_NAMES."""
_KINDS: tuple[str, ...] = (*CHANNEL_NAMES, *DOCUMENTS)
_SUBJECT_CHANNELS = frozenset({"email", "push", "notice"})
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
_FILE_NAME = re.compile(
    r"(?P<channel>[a-z]+)\.(?P<language>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)(?P<html>\.html)?\.j2"
)
_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined|has no (?:attribute|element) '?([^']+)'?$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS_LONG = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MINGUO_OFFSET = 1911


@dataclass(frozen=True)
class RenderedContent:
    """One channel's notice text as the customer gets it."""

    body: str
    subject: str | None
    html: str | None
    language: str
    """The language actually used."""
    language_fallback: bool
    """True when the account's language had no template and zh-TW was used."""


@dataclass(frozen=True)
class TemplateIdentity:
    """Which templates a notice was rendered from, and which version of them."""

    files: tuple[str, ...]
    """The text template, the HTML one (email), then the layouts they extend or include."""
    sha256: str
    """SHA-256 over each file's name and source: an edited template is another version."""


class TemplateError(Exception):
    """A template that cannot be rendered; the message names the file and the variable."""

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        lineno: int | None = None,
        variable: str | None = None,
    ) -> None:
        super().__init__(message)
        self.template = template
        """Template name relative to the templates directory."""
        self.lineno = lineno
        self.variable = variable


# --- filters ---------------------------------------------------------------------------


def format_money(value: int | float | Decimal) -> str:
    """1830 -> "NT$1,830" (whole dollars, rounded half up)."""
    amount = int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    sign = "-" if amount < 0 else ""
    return f"{sign}NT${abs(amount):,}"


def format_number(value: int | float | Decimal, digits: int = 0) -> str:
    """1234.5 -> "1,235"; with ``digits=1`` -> "1,234.5"."""
    exponent = Decimal(1).scaleb(-digits)
    return f"{Decimal(str(value)).quantize(exponent, rounding=ROUND_HALF_UP):,}"


def format_percent(value: float | Decimal) -> str:
    """0.4567 -> "46%" (rounded half up)."""
    percent = (Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return f"{percent}%"


def spell_digits(value: object) -> str:
    """ "01234567890" -> "0 1 2 3 4 5 6 7 8 9 0", so text-to-speech reads digit by digit."""
    return " ".join(ch for ch in str(value) if not ch.isspace())


def is_gsm7(value: object) -> bool:
    """Printable ASCII but the backtick: text an SMS sends in GSM-7 (160/153 a part)."""
    return isinstance(value, str) and all(" " <= ch <= "~" and ch != "`" for ch in value)


def is_latin(value: object) -> bool:
    """A non-empty text whose letters are all Latin script (what an en-US voice can read)."""
    if not isinstance(value, str) or not value.strip():
        return False
    return all(unicodedata.name(ch, "").startswith("LATIN") for ch in value if ch.isalpha())


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return datetime.fromisoformat(value).date()
    raise TypeError(f"expected a date or an ISO date string, got {type(value).__name__}")


def _is_zh(language: str) -> bool:
    return language.lower().startswith("zh")


def _cjk_year(year: int, language: str, minguo: bool) -> int:
    if minguo and language.lower() == "zh-tw" and year > _MINGUO_OFFSET:
        return year - _MINGUO_OFFSET
    return year


def format_date(value: object, language: str, *, minguo: bool = True, spoken: bool = False) -> str:
    """A date in the reader's way: "115年11月20日", "2026年11月20日" or "20 Nov 2026"."""
    day = _as_date(value)
    if _is_zh(language):
        return f"{_cjk_year(day.year, language, minguo)}年{day.month}月{day.day}日"
    if language.lower().startswith("en"):
        month = (_MONTHS_LONG if spoken else _MONTHS)[day.month - 1]
        return f"{day.day} {month} {day.year}"
    return day.isoformat()


def format_period(
    value: object, language: str, *, minguo: bool = True, spoken: bool = False
) -> str:
    """A billing period "2026-09" (or a date in it): "115年9月", "Sep 2026"."""
    if isinstance(value, date):
        year, month = value.year, value.month
    else:
        match = re.fullmatch(r"(\d{4})-(\d{2})", str(value))
        if match is None:
            raise ValueError(f"expected a billing period like '2026-09', got {value!r}")
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ValueError(f"expected a billing period like '2026-09', got {value!r}")
    if _is_zh(language):
        return f"{_cjk_year(year, language, minguo)}年{month}月"
    if language.lower().startswith("en"):
        return f"{(_MONTHS_LONG if spoken else _MONTHS)[month - 1]} {year}"
    return f"{year:04d}-{month:02d}"


# --- the renderer ----------------------------------------------------------------------


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _NoticeEnvironment(Environment):
    """Jinja's environment, with ``bill.amount`` on a plain dict read as Jinja reads it but
    without raising an AttributeError first."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A context is dicts all through, and Jinja tries the attribute first: on a dict it
        # raises, then the item is taken, a tenth of each render. A plain dict has no
        # attributes but its type's (dir(dict)), so for any other name Jinja would end on
        # the item too; everything else goes Jinja's own way.
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


@dataclass(frozen=True)
class _TemplateFile:
    name: str
    channel: str
    language: str
    html: bool


class Renderer:
    """Renders notices from one templates directory; safe to share between threads."""

    def __init__(
        self,
        templates_dir: Path,
        *,
        minguo_dates: bool = True,
        default_language: str = "zh-TW",
    ) -> None:
        self._dir = Path(templates_dir).resolve()
        if not self._dir.is_dir():
            raise TemplateError(f"templates directory not found: {self._dir}")
        self._minguo = minguo_dates
        self._default_language = default_language
        self._loader = FileSystemLoader(self._dir)
        self._env = _NoticeEnvironment(
            loader=self._loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            # What check_all verified at start-up is what gets sent: no reloads behind it.
            auto_reload=False,
        )
        self._env.filters.update(
            money=format_money,
            number=format_number,
            percent=format_percent,
            spell_digits=spell_digits,
            cardinal=cardinal,
            date=self._date_filter(),
            period=self._period_filter(),
        )
        self._env.tests["gsm7"] = is_gsm7
        self._env.tests["latin"] = is_latin
        self._identities: dict[tuple[str, str, str], TemplateIdentity] = {}
        # As the templates are (auto_reload off): a file's presence is looked up once per
        # process, not with a stat per notice rendered.
        self._present: dict[str, bool] = {}

    @property
    def environment(self) -> Environment:
        """The one Jinja environment (for tests and tools; do not add loaders)."""
        return self._env

    @property
    def templates_dir(self) -> Path:
        """The resolved templates directory."""
        return self._dir

    def _context_language(self, context: Context) -> str:
        language = context.get("language", self._default_language)
        return language if isinstance(language, str) else self._default_language

    def _date_filter(self) -> Callable[..., str]:
        @pass_context
        def date_filter(context: Context, value: object, spoken: bool = False) -> str:
            language = self._context_language(context)
            return format_date(value, language, minguo=self._minguo, spoken=spoken)

        return date_filter

    def _period_filter(self) -> Callable[..., str]:
        @pass_context
        def period_filter(context: Context, value: object, spoken: bool = False) -> str:
            language = self._context_language(context)
            return format_period(value, language, minguo=self._minguo, spoken=spoken)

        return period_filter

    # --- public -------------------------------------------------------------------------

    def render(
        self, event_type: str, channel: str, language: str, context: Mapping[str, Any]
    ) -> RenderedContent:
        """Render one channel's notice in ``language``, falling back to zh-TW."""
        self._check_names(event_type, channel)
        used = language
        if not (_LANGUAGE.fullmatch(language) and self._exists(event_type, channel, language)):
            used = self._default_language
        if not self._exists(event_type, channel, used):
            raise TemplateError(
                f"{_text_name(event_type, channel, used)}: no template for {event_type} "
                f"by {channel} in {language!r} nor in {self._default_language!r}",
                template=_text_name(event_type, channel, used),
            )
        ctx = {**context, "language": used}
        body, subject = self._render_text(_text_name(event_type, channel, used), channel, ctx)
        html = None
        if channel == "email" and self._is_file(_html_name(event_type, used)):
            html = self._render_html(_html_name(event_type, used), ctx)
        return RenderedContent(
            body=body,
            subject=subject,
            html=html,
            language=used,
            language_fallback=used != language,
        )

    def identity(self, event_type: str, channel: str, language: str) -> TemplateIdentity:
        """The templates :meth:`render` uses for a notice in ``language``, and their version.

        Read once per process, as the environment compiles each template once
        (no reloads): the version is that of the templates this process renders.
        """
        key = (event_type, channel, language)
        found = self._identities.get(key)
        if found is not None:
            return found
        self._check_names(event_type, channel)
        used = language if self._exists(event_type, channel, language) else self._default_language
        pending = [_text_name(event_type, channel, used)]
        if channel == "email" and (self._dir / _html_name(event_type, used)).is_file():
            pending.append(_html_name(event_type, used))
        files: list[str] = []
        digest = hashlib.sha256()
        while pending:
            name = pending.pop(0)
            if name in files:
                continue
            with self._translate_errors(name):
                source = self._loader.get_source(self._env, name)[0]
                pending += [n for n in find_referenced_templates(self._env.parse(source)) if n]
            files.append(name)
            digest.update(f"{name}\0{source}\0".encode())
        identity = TemplateIdentity(files=tuple(files), sha256=digest.hexdigest())
        self._identities[key] = identity
        return identity

    def available(self, event_type: str, channel: str) -> bool:
        """Whether a zh-TW template exists for ``event_type`` by ``channel``."""
        try:
            self._check_names(event_type, channel)
        except TemplateError:
            return False
        return self._exists(event_type, channel, self._default_language)

    def check_all(self) -> int:
        """Render every template against the sample contexts; return how many renders."""
        count = 0
        for event_type, files in self._inventory().items():
            for file in files:
                for level in (1, 2):
                    for variant in SAMPLE_VARIANTS:
                        ctx = sample_context(event_type, level=level, variant=variant)
                        ctx["language"] = file.language
                        if file.html:
                            self._render_html(file.name, ctx)
                        else:
                            self._render_text(file.name, file.channel, ctx)
                        count += 1
        if count == 0:
            raise TemplateError(f"no templates in {self._dir}")
        return count

    # --- internals ----------------------------------------------------------------------

    def _check_names(self, event_type: str, channel: str) -> None:
        if not _EVENT_TYPE.fullmatch(event_type):
            raise TemplateError(f"not an event type: {event_type!r}")
        if channel not in _KINDS:
            raise TemplateError(f"unknown channel {channel!r}; known: {', '.join(_KINDS)}")

    def _exists(self, event_type: str, channel: str, language: str) -> bool:
        return self._is_file(_text_name(event_type, channel, language))

    def _is_file(self, name: str) -> bool:
        found = self._present.get(name)
        if found is None:
            found = self._present[name] = (self._dir / name).is_file()
        return found

    def _inventory(self) -> dict[str, list[_TemplateFile]]:
        """Every notice template, checked for names and for a zh-TW fallback."""
        inventory: dict[str, list[_TemplateFile]] = {}
        for event_dir in sorted(p for p in self._dir.iterdir() if p.is_dir()):
            if event_dir.name.startswith(("_", ".")):
                continue
            if not _EVENT_TYPE.fullmatch(event_dir.name):
                raise TemplateError(
                    f"{event_dir.name}/: not an event type (shared files go in a folder "
                    "starting with '_')",
                    template=event_dir.name,
                )
            files: list[_TemplateFile] = []
            for path in sorted(event_dir.glob("*.j2")):
                name = f"{event_dir.name}/{path.name}"
                match = _FILE_NAME.fullmatch(path.name)
                if match is None or match["channel"] not in _KINDS:
                    raise TemplateError(
                        f"{name}: expected <channel>.<lang>.j2 or email.<lang>.html.j2 "
                        f"with a channel or document among {', '.join(_KINDS)}",
                        template=name,
                    )
                html = match["html"] is not None
                if html and match["channel"] != "email":
                    raise TemplateError(f"{name}: only email has an HTML body", template=name)
                files.append(_TemplateFile(name, match["channel"], match["language"], html))
            texts = {(f.channel, f.language) for f in files if not f.html}
            for file in files:
                if (file.channel, self._default_language) not in texts:
                    raise TemplateError(
                        f"{file.name}: no {self._default_language} template "
                        f"{_text_name(event_dir.name, file.channel, self._default_language)} "
                        "to fall back on",
                        template=file.name,
                    )
                if file.html and (file.channel, file.language) not in texts:
                    raise TemplateError(
                        f"{file.name}: an HTML body without "
                        f"{_text_name(event_dir.name, file.channel, file.language)}",
                        template=file.name,
                    )
            if files:
                inventory[event_dir.name] = files
        return inventory

    def _load(self, name: str) -> Template:
        with self._translate_errors(name):
            return self._env.get_template(name)

    def _render_text(self, name: str, channel: str, ctx: dict[str, Any]) -> tuple[str, str | None]:
        template = self._load(name)
        # One context for both blocks, as Jinja's own render of a template passes its one
        # context to every block (a block's {% set %} stays in the block): building it
        # copies the whole context, a sixth of a render.
        with self._translate_errors(name):
            context = template.new_context(ctx)
        body = self._render_block(template, name, "body", context)
        subject = None
        if channel in _SUBJECT_CHANNELS:
            # One line: a newline in a name must not reach a mail header or a push title.
            subject = " ".join(self._render_block(template, name, "subject", context).split())
        return body, subject

    def _render_block(self, template: Template, name: str, block: str, context: Context) -> str:
        if block not in template.blocks:
            raise TemplateError(f"{name}: has no {{% block {block} %}}", template=name)
        with self._translate_errors(name):
            text = "".join(template.blocks[block](context)).strip()
        if not text:
            raise TemplateError(f"{name}: block {block!r} renders empty", template=name)
        return text

    def _render_html(self, name: str, ctx: dict[str, Any]) -> str:
        template = self._load(name)
        with self._translate_errors(name):
            html = "".join(template.root_render_func(template.new_context(ctx))).strip()
        if not html:
            raise TemplateError(f"{name}: renders empty", template=name)
        return html

    @contextmanager
    def _translate_errors(self, name: str) -> Iterator[None]:
        """Map Jinja's exceptions (and a filter's bad-value errors) to TemplateError."""
        try:
            yield
        except TemplateError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            where = exc.name or name
            raise TemplateError(
                f"{where}:{exc.lineno}: syntax error: {exc.message}",
                template=where,
                lineno=exc.lineno,
            ) from exc
        except jinja2.UndefinedError as exc:
            where, lineno = self._location(name, exc.__traceback__)
            message = exc.message or str(exc)
            match = _UNDEFINED_NAME.search(message)
            variable = (match[1] or match[2]) if match else None
            raise TemplateError(
                f"{where}: undefined variable {variable or '?'}: {message}",
                template=name,
                lineno=lineno,
                variable=variable,
            ) from exc
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            where, lineno = self._location(name, exc.__traceback__)
            raise TemplateError(
                f"{where}: {type(exc).__name__}: {exc}", template=name, lineno=lineno
            ) from exc

    def _location(self, name: str, tb: TracebackType | None) -> tuple[str, int | None]:
        """Where in the templates an exception happened: "name:line" and the line."""
        found: tuple[str, int] | None = None
        while tb is not None:
            filename = PurePath(tb.tb_frame.f_code.co_filename)
            if filename.suffix == ".j2" and filename.is_relative_to(self._dir):
                found = (filename.relative_to(self._dir).as_posix(), tb.tb_lineno)
            tb = tb.tb_next
        if found is None:
            return name, None
        inner, code_line = found
        try:
            lineno = self._env.get_template(inner).get_corresponding_lineno(code_line)
        except jinja2.TemplateError:
            return name, None
        if inner == name:
            return f"{name}:{lineno}", lineno
        return f"{name} (in {inner}:{lineno})", lineno


def _text_name(event_type: str, channel: str, language: str) -> str:
    return f"{event_type}/{channel}.{language}.j2"


def _html_name(event_type: str, language: str) -> str:
    return f"{event_type}/email.{language}.html.j2"


# --- the ledger in a context ----------------------------------------------------------


def bill_entry(
    *,
    bill_no: str,
    period: str,
    amount: int,
    due_date: date,
    today: date,
    paid: int = 0,
    kind: str = "regular",
) -> dict[str, Any]:
    """One bill as templates see it (the context's ``bill`` and the items of ``bills``)."""
    return {
        "bill_no": bill_no,
        "period": period,
        "kind": kind,
        "amount": amount,
        "paid": paid,
        "owed": max(0, amount - paid),
        "due_date": due_date,
        "overdue": due_date < today,
    }


def split_bills(bills: list[dict[str, Any]], bill: dict[str, Any] | None = None) -> dict[str, Any]:
    """``bills`` with their total, and apart: the overdue ones and the upcoming ones.

    With no unpaid bills, the sections hold ``bill`` (if any), so that a notice
    about one bill always has it to name.
    """
    named = bills or ([bill] if bill is not None else [])
    overdue = [b for b in named if b["overdue"]]
    upcoming = [b for b in named if not b["overdue"]]
    return {
        "bills": bills,
        "total": sum(b["owed"] for b in bills),
        "overdue": overdue,
        "overdue_total": sum(b["owed"] for b in overdue),
        "upcoming": upcoming,
        "upcoming_total": sum(b["owed"] for b in upcoming),
    }


# --- sample contexts -------------------------------------------------------------------

SAMPLE_VARIANTS: tuple[str, ...] = ("long", "english", "minimal", "upcoming")
"""check_all renders each of these: the longest values with a 4-character Chinese
name, the same with a long English name, the sparest (no name, one bill, no
remaining bills, usage below baseline, no reason), and the long values rendered
before the newest bill falls due (two bills overdue, one upcoming; a partial
payment of ``bill.paid``; a correction of ``bill.corrected``)."""

_SAMPLE_NAMES: dict[str, str | None] = {
    "long": "歐陽志明",
    "english": "Maximilian Alexander Montgomery-Featherstonehaugh",
    "minimal": None,
    "upcoming": "歐陽志明",
}
SAMPLE_UTILITY: Mapping[str, str] = {
    "name": "示範電力公司",
    "name_en": "Demo Power Company",
    "sender_name": "示範電力公司 客服中心",
    "phone": "1911",
    "website": "https://www.utility.example",
    "website_host": "www.utility.example",
    "logo_url": "",
}
"""The samples' ``utility``: the embedded demo's (Settings.identity's defaults)."""
_SAMPLE_TODAY = date(2026, 11, 27)
_SAMPLE_TODAY_UPCOMING = date(2026, 11, 10)


def _sample_bill(period: str, amount: int, due_date: date, today: date) -> dict[str, Any]:
    return bill_entry(
        bill_no=f"B{period.replace('-', '')}-01234567890",
        period=period,
        amount=amount,
        due_date=due_date,
        today=today,
    )


def sample_context(event_type: str, *, level: int = 1, variant: str = "long") -> dict[str, Any]:
    """A realistic context for ``event_type``; "long" has the longest values we expect."""
    if variant not in _SAMPLE_NAMES:
        raise ValueError(f"unknown sample variant {variant!r}; known: {SAMPLE_VARIANTS}")
    minimal = variant == "minimal"
    today = _SAMPLE_TODAY_UPCOMING if variant == "upcoming" else _SAMPLE_TODAY
    if minimal:
        bills = [_sample_bill("2026-09", 1830, date(2026, 11, 20), today)]
        usage: dict[str, Any] = {
            "period_start": date(2026, 9, 1),
            "period_end": date(2026, 10, 31),
            "kwh": 180.0,
            "baseline_kwh": 450.0,
            "ratio": -0.6,
            "reason": None,
            "urgent": False,
        }
    else:
        bills = [
            _sample_bill("2026-05", 286_450, date(2026, 7, 20), today),
            _sample_bill("2026-07", 312_880, date(2026, 9, 20), today),
            _sample_bill("2026-09", 398_765, date(2026, 11, 20), today),
        ]
        usage = {
            "period_start": date(2026, 9, 1),
            "period_end": date(2026, 10, 31),
            "kwh": 123_456.8,
            "baseline_kwh": 66_733.4,
            "ratio": 0.85,
            "reason": "本期用電度數較去年同期及近六期平均明顯增加，請留意是否有設備異常運轉",
            # The longest texts: an urgent alert adds what to do now.
            "urgent": True,
        }
    # A second reminder is about the oldest bill; a first one about the newest.
    bill: dict[str, Any] | None = bills[0] if level >= 2 else bills[-1]
    usage_or_none: dict[str, Any] | None = usage
    payment: dict[str, Any] | None = None
    correction: dict[str, Any] | None = None
    if event_type == "bill.paid":
        # The paid bill is settled; whatever else is unpaid stays listed. The
        # "upcoming" sample is a partial payment: the rest of the bill is still owed.
        bill, bills, usage_or_none = bills[-1], bills[:-1], None
        paid = 100_000 if variant == "upcoming" else bill["amount"]
        bill = {**bill, "paid": paid, "owed": bill["amount"] - paid}
        if bill["owed"]:
            bills = [*bills, bill]
        payment = {"amount": paid, "paid_at": datetime(2026, 11, 9, 10, 0), "method": "超商"}
    elif event_type == "bill.corrected":
        assert bill is not None
        usage_or_none = None
        correction = {
            "amount": bill["amount"] + (-1 if minimal else 123_456),
            "due_date": bill["due_date"] if variant == "upcoming" else date(2026, 11, 13),
        }
    elif event_type == "usage.abnormal":
        bill = None
        bills = [] if minimal else bills
    elif event_type == "collection.reconnected":
        # Paid in full: the bill the ladder was about is settled, nothing else is owed.
        assert bill is not None
        bill, bills, usage_or_none = {**bill, "paid": bill["amount"], "owed": 0}, [], None
    elif event_type.startswith(("bill.", "collection.")) or event_type == "escalation.visit":
        usage_or_none = None
    context: dict[str, Any] = {
        "language": "zh-TW",
        "level": level,
        "account": {
            "account_no": "01234567890",
            "account_no_masked": "012****7890",
            "name": _SAMPLE_NAMES[variant],
        },
        "today": today,
        "bill": bill,
        **split_bills(bills, bill),
        "payment": payment,
        "correction": correction,
        "usage": usage_or_none,
        "service_phone": "1911",
        "utility": dict(SAMPLE_UTILITY),
        "pay_url": (
            "https://pay.example.com/b/ABC"
            if minimal
            else "https://pay.utility.example/bill/B202609-01234567890"
        ),
    }
    if event_type == "escalation.visit":
        context["visit"] = {"date": date(2026, 12, 8), "agent_name": "林建宏"}
    if event_type == "collection.final_demand":
        context["demand"] = {"issued_on": today, "deadline": date(2026, 12, 11)}
    if event_type == "collection.reconnected":
        context["reconnection"] = {"paid_on": today}
    return context
