"""Streamlit station UI for line operators and quality engineers (``inspect-app ui``).

``app.py`` is the Streamlit script; each page is one module in ``pages/``; the work behind the
pages (uploads, inspection, background jobs) lives in plain modules beside them so it can be
tested without a browser.
"""
