"""Renderers: our human log lines, the live dashboard, the JSON summary and the matplotlib/HTML report.

Renderers only draw what rules and parsers produced; nothing here judges a run."""
