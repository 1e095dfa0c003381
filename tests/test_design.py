"""The arrows of DESIGN.md, held on the real import graph: the shared core imports neither side,
the worker process reaches no route, the pure parts use only the standard library."""
import ast
import pathlib
import re
import sys

import pytest

from webapp import queue, statuses
from webapp.extensions import db
from webapp.web.pages import SSE_FRESH_MS
from webapp.web.templating import STALLED_AFTER_MS

from servers import ROOT

PACKAGE = pathlib.Path(ROOT, "webapp")
STDLIB = set(sys.stdlib_module_names)


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Every module `path` imports, at the top or inside a function, as absolute names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import mod`
    return names


def module_path(name):
    base = pathlib.Path(ROOT, *name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def reachable(start):
    """The project modules `start` can import, following imports inside functions too."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        path = module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo += [n for n in imports_of(path) if n.split(".")[0] in ("webapp", "worker")]
        todo += [name.rsplit(".", 1)[0]] if "." in name else []  # a package's __init__ runs first
    return seen


def defines_a_route(path):
    """A Blueprint, a route decorator or add_url_rule in this module."""
    text = path.read_text()
    return any(marker in text for marker in ("Blueprint(", ".route(", ".get(\"/", ".post(\"/", "add_url_rule"))


def test_no_module_the_worker_process_can_import_defines_a_route():
    reached = reachable("worker")
    assert "webapp.worker.run" in reached and "webapp.queue" in reached
    routes = [name for name in reached if defines_a_route(module_path(name))]
    assert routes == [], f"the worker process can import routes: {routes}"
    assert not any(side(name) == "web" for name in reached)


def test_a_route_is_seen_by_the_check():
    """The check above would notice: the web side reaches its blueprints."""
    assert defines_a_route(module_path("webapp.web.api"))
    assert "webapp.web.api" in reachable("wsgi")


def side(name):
    """'web', 'worker' or None (the shared core) for a module name (`webapp.webhooks` is core)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "webapp" and parts[1] in ("web", "worker") else None


def core_modules():
    """The shared core's modules: the top of webapp/ and its rooms other than web/ and worker/."""
    return [path for path in PACKAGE.rglob("*.py") if side(module_name(path)) is None]


def test_the_shared_core_imports_neither_side():
    core = {module_name(path) for path in core_modules()}
    assert {"webapp.queue", "webapp.webhooks.outbox", "webapp.batches.store"} <= core
    for path in core_modules():
        sides = {n for n in imports_of(path) if side(n)}
        assert not sides, f"{path.name} imports {sides}"


PURE = ("webapp.progress", "webapp.estimates", "webapp.web.sse", "webapp.web.events", "webapp.statuses",
        "webapp.logs")


@pytest.mark.parametrize("module", PURE)
def test_the_pure_parts_use_only_the_standard_library(module):
    """Each imports the standard library, or another pure part (itself checked here)."""
    def allowed(name):
        return name.split(".")[0] in STDLIB or any(name == pure or name.startswith(pure + ".") for pure in PURE)

    names = imports_of(module_path(module))
    parents = {name.rsplit(".", 1)[0] for name in names if allowed(name)}  # `from webapp import statuses`
    outside = {name for name in names if not allowed(name)} - parents
    assert outside == set(), f"{module} imports {outside}"


def test_the_streaming_client_knows_neither_flask_nor_the_database():
    names = {n.split(".")[0] for n in imports_of(PACKAGE / "ollama.py")}
    assert not names & {"flask", "sqlalchemy", "flask_sqlalchemy"} and "webapp" not in names


def test_the_queue_knows_neither_flask_requests_nor_ollama():
    for module in ("queue.py", "models.py", "snapshots.py"):
        names = imports_of(PACKAGE / module)
        assert not {n.split(".")[0] for n in names} & {"flask", "requests"}, module
        assert "webapp.ollama" not in names, module


@pytest.mark.parametrize("path", ["/api/v1/ai/generation/{}/progress", "/jobs/stream?jobs={}"])
def test_an_open_stream_holds_no_database_connection(app, client, path):
    job_id = queue.enqueue(prompt="hold nothing", model="llama3.2").job_id
    db.session.remove()
    response = client.get(path.format(job_id), buffered=False)
    frames = iter(response.response)
    assert next(frames).startswith(b"retry:") and next(frames).startswith(b"id: ")  # the snapshot
    assert db.engine.pool.checkedout() == 0
    response.close()


PAGES = [*pathlib.Path(ROOT, "templates").glob("*.html"), *pathlib.Path(ROOT, "static").glob("*.js")]


@pytest.mark.parametrize("path", PAGES, ids=lambda path: path.name)
def test_templates_and_scripts_take_statuses_and_timings_from_the_server(path):
    """One vocabulary: a status word in quotes, a timing the server owns written as a number, or a
    second start-up path beside htmx.onLoad would drift from the Python that defines them."""
    text = path.read_text()
    quoted = {word for word in statuses.ALL for quote in "'\"" if f"{quote}{word}{quote}" in text}
    assert not quoted, f"{path.name} spells statuses {quoted}: use statuses.* or a data- attribute"
    for value in (SSE_FRESH_MS, STALLED_AFTER_MS):
        assert not {str(value), f"{value:_}"} & set(re.findall(r"[\d_]+", text)), f"{path.name} repeats {value}"
    assert "DOMContentLoaded" not in text
