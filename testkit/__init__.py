"""Test support that starts the real services — above every layer of the source tree, imported only
by ``tests/``: :mod:`testkit.ecosystem` (the in-process ecosystem built from ``services/registry``)
and :mod:`testkit.reliability_lab` (real gunicorn processes through the runtime, to break them).
The low-level helpers every layer's tests share (free ports, a live WSGI server, Chromium, the stock
validator) stay in :mod:`shared.testing`."""
