"""Self-contained HTML reports of study directories (``advqa report``)."""

from advqa.report.html import SECTION_IDS, render_report, write_report

__all__ = ["SECTION_IDS", "render_report", "write_report"]
