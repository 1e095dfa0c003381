"""'ours' for the SSE benchmark: the product's `wsgi:app`, unchanged, plus the benchmark's counters
(bench/sse_counters.py: a SELECT counter and `GET /sse-bench/stats`), so its database reads can be
counted apart from whatever else the shared database server is doing.

    PYTHONPATH=. gunicorn -c gunicorn.conf.py bench.sse_ours_app:app
"""
from bench.sse_counters import instrument
from wsgi import app

instrument(app)
