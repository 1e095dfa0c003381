"""The arrows of DESIGN.md: which part may know which, checked on the real import graph."""
import ast
import pathlib
import subprocess
import sys

import pytest

from servers import ROOT
from webapp import jobs
from webapp.extensions import db

ROUTES = {"webapp.api", "webapp.pages", "webapp.stream", "webapp.errors"}


def imports_of(module_path):
    tree = ast.parse(pathlib.Path(ROOT, module_path).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {name.split(".")[0] if not name.startswith("webapp") else name for name in names}


def test_the_worker_process_loads_no_route():
    code = ("import worker, sys; from webapp import create_app; create_app(routes=False); "
            "print(sorted(m for m in sys.modules if m.startswith('webapp')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))
    assert "webapp.runner" in loaded and not loaded & ROUTES


def test_the_streaming_client_knows_neither_flask_nor_the_database():
    assert not imports_of("webapp/ollama.py") & {"flask", "sqlalchemy", "flask_sqlalchemy", "webapp.extensions"}


def test_the_queue_knows_neither_requests_nor_ollama():
    for module in ("webapp/jobs.py", "webapp/models.py"):
        assert not imports_of(module) & {"flask", "requests", "webapp.ollama"}, module


def test_the_progress_arithmetic_is_standard_library_only():
    assert imports_of("webapp/progress.py") <= {"collections", "dataclasses", "statistics", "math"}


@pytest.mark.parametrize("path", ["/api/v1/ai/generation/{}/progress", "/jobs/stream?jobs={}"])
def test_an_open_stream_holds_no_database_connection(app, client, path):
    job_id = jobs.enqueue(prompt="hold nothing", model="llama3.2").job_id
    db.session.remove()
    response = client.get(path.format(job_id), buffered=False)
    frames = iter(response.response)
    assert next(frames).startswith(b"retry:") and next(frames).startswith(b"id: ")  # the snapshot
    assert db.engine.pool.checkedout() == 0
    response.close()
