"""The Jinja environment of the HTML report; templates, CSS and script live in ``leaderboard/templates/``."""

from __future__ import annotations

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
