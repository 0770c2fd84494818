"""The Jinja environment of the HTML report; templates, CSS and script live in ``leaderboard/templates/``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jinja2
from markupsafe import Markup

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("leaderboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_template(name: str, **values: Any) -> Markup:
    """Render ``templates/<name>`` with ``values`` (autoescaped) as HTML safe to embed in another template."""
    return Markup(ENVIRONMENT.get_template(name).render(**values))


def table_cell(
    text: str, *, sort_value: str = "", css_class: str = "", badge: str = "", title: str = ""
) -> dict[str, str]:
    """One cell of a report table (``table.html.j2``)."""
    return {"text": text, "sort_value": sort_value, "css_class": css_class, "badge": badge, "title": title}


def render_table(
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    table_class: str,
    header_help: dict[str, str] | None = None,
) -> Markup:
    """A table of ``rows`` (``{"cells": [...], "classes": str}``); ``header_help`` maps a header to a tooltip."""
    return render_template(
        "table.html.j2", columns=columns, rows=rows, table_class=table_class, header_help=header_help or {}
    )
