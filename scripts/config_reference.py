"""Writes docs/configuration.md, the configuration reference, from the ``Settings`` model.

Every field of :class:`notifier.settings.Settings`, and of its nested groups, becomes one
row: the environment variable, the type as the code writes it, the default and the
description (the field's docstring, else its ``Field(description=...)``). Run
``python scripts/config_reference.py`` after changing a setting; ``--check`` exits 1 when the
committed page differs (tests/unit/test_docs_config_reference.py runs it that way).
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from notifier import settings as settings_module
from notifier.settings import PROJECT_ROOT, Settings

PAGE = PROJECT_ROOT / "docs" / "configuration.md"
PREFIX = Settings.model_config.get("env_prefix", "")
NESTED = Settings.model_config.get("env_nested_delimiter") or "__"

INTRO = f"""# Configuration reference

<!-- Written by scripts/config_reference.py from notifier/settings.py: do not edit by hand. -->

Each process reads its settings once, when it starts, from the environment: the
variable `{PREFIX}<FIELD>` overrides a field's default, and `{NESTED}` reaches into a group
(`{PREFIX}SMTP{NESTED}HOST`). Lists, maps and groups also take JSON
(`NOTIFIER_PROVIDERS='{{"sms": "mitake,twilio"}}'`). Unknown variables are ignored;
relative paths are taken from the folder the process starts in. Any setting may instead
be a file named like its variable (lower or upper case) in `NOTIFIER_SECRETS_DIR`
(default `/run/secrets` when it exists; empty: none); a variable wins over a file
([secret files](policy.md#secrets-as-files)). Deployed (`NOTIFIER_MODE=deployed`), the
service refuses to start while a secret is still `change-me`. The routing policy is a
file of its own: [routing policy](policy.md). Postcards and printed notices embed the font
file `NOTIFIER_CJK_FONT` names (read by the print layout itself; default: Noto Sans TC from
PyPI, then Debian's Noto CJK or AR PL fonts).
"""


def _docstrings(cls: type) -> dict[str, str]:
    """``field → docstring`` of the attribute docstrings in ``cls``'s source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    found: dict[str, str] = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[node.target.id] = inspect.cleandoc(after.value.value)
    return found


def _annotations(cls: type) -> dict[str, str]:
    """``field → annotation`` as the source writes it (``Literal["embedded", "deployed"]``)."""
    source = inspect.getsource(cls)
    tree = ast.parse(source)
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    return {
        node.target.id: ast.get_source_segment(source, node.annotation) or ""
        for node in body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _default(value: Any) -> str:
    if isinstance(value, SecretStr):
        # A default secret is shown by what it is, never by its value.
        return "empty" if not value.get_secret_value() else "a placeholder (embedded only)"
    if isinstance(value, Path):
        if value.is_absolute() and value.is_relative_to(PROJECT_ROOT):
            return f"`{value.relative_to(PROJECT_ROOT).as_posix()}` of the project"
        return f"`{value.as_posix()}`"
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list | tuple | BaseModel):
        return f"`{json.dumps(_plain(value), ensure_ascii=False)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """One table cell: one line, reST's ``code`` as Markdown's, pipes escaped."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def rows(model: type[BaseModel] = Settings, prefix: str = PREFIX) -> list[tuple[str, ...]]:
    """``(variable, type, default, description)`` of every field, groups expanded."""
    docs = _docstrings(model)
    types = _annotations(model)
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            found.extend(rows(group, variable + NESTED))
            continue
        if field.default is not PydanticUndefined:
            default = field.default
        elif field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        else:
            default = "required"
        description = docs.get(name) or field.description or ""
        found.append(
            (f"`{variable}`", f"`{types.get(name, '')}`", _default(default), _cell(description))
        )
    return found


def render() -> str:
    """The whole page."""
    sections = [INTRO]
    groups: dict[str, list[tuple[str, ...]]] = {}
    for row in rows():
        variable = row[0].strip("`")[len(PREFIX) :]
        group = variable.split(NESTED)[0] if NESTED in variable else ""
        groups.setdefault(group, []).append(row)
    for group, members in groups.items():
        if group:
            model = Settings.model_fields[group.lower()].annotation
            doc = inspect.cleandoc(model.__doc__ or "") if model is not None else ""
            sections.append(f"## {group.lower()}\n\n{_cell(doc)}\n")
        else:
            sections.append("## General\n")
        table = ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
        table += ["| " + " | ".join(row) + " |" for row in members]
        sections.append("\n".join(table) + "\n")
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if PAGE.read_text(encoding="utf-8") != text:
            print(
                f"{PAGE.relative_to(PROJECT_ROOT)} is stale: run python scripts/config_reference.py"
            )
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(PROJECT_ROOT)} ({len(rows())} settings)")
    return 0


if __name__ == "__main__":
    assert settings_module  # the module whose source the docstrings are read from
    sys.exit(main(sys.argv[1:]))
