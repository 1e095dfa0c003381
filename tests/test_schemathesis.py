"""Schemathesis fuzzes a real gunicorn from its own document: no 5xx, and no answer (SSE included) off it."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from servers import ROOT, Gunicorn

OUTPUT = Path(ROOT) / "test-output" / "schemathesis"  # the run's report and its console output, kept

SEED = 20261127  # fixed: the same cases on every run, so a failure in CI replays on a laptop
# Per operation, in the fuzzing phase; the coverage phase adds each schema's edge cases (most of
# the ~1,000 cases), and the stateful phase follows the document's links from real jobs and batches.
MAX_EXAMPLES = 10
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance")
SERVER = {
    # A stream of a live job (the stateful phase follows real jobs) ends after this, so
    # schemathesis reads whole streams and checks every event against the document.
    "SSE_MAX_DURATION": "0.3",
    # Webhooks on, without DNS: private targets skip the lookup; nothing is sent (no worker runs).
    "WEBHOOK_SECRET": "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "WEBHOOK_ALLOW_PRIVATE": "1",
    "RATE_LIMIT_PER_MINUTE": "0",  # the fuzz creates jobs far faster than 60 a minute
}


def fuzz(url):
    """`schemathesis run` on the document at `url`: its console output and its JSON report, both
    also left in OUTPUT. One worker: SQLite takes one writer at a time."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    command = [sys.executable, "-m", "schemathesis.cli", "run", url, "--checks", ",".join(CHECKS),
               "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
               "--seed", str(SEED), "--generation-database", "none", "--suppress-health-check", "too_slow",
               "--workers", "1", "--request-timeout", "10", "--no-color",
               "--report", "json", "--report-json-path", str(OUTPUT / "report.json")]
    run = subprocess.run(command, cwd=OUTPUT, capture_output=True, text=True, timeout=600)
    (OUTPUT / "output.txt").write_text(run.stdout + run.stderr)
    assert (OUTPUT / "report.json").exists(), f"no report (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    return run, json.loads((OUTPUT / "report.json").read_text())


def test_fuzz_finds_no_5xx_and_no_answer_off_the_document(database_url):
    with Gunicorn(database_url, **SERVER) as server:
        run, report = fuzz(server.url + "/api/v1/openapi.json")
        log = server.output()
    summary = run.stdout[-8000:]
    assert report["complete"] and report["exit_code"] == 0, summary
    assert report["failures"] == [] and report["errors"] == [], summary
    operations = report["operations"]
    assert operations["tested"] == operations["total"] == operations["selected"], operations
    assert report["test_cases"]["with_failures"] == 0 and report["test_cases"]["generated"] > 500
    warnings = report["warnings"]
    for kind in ("missing_deserializer", "unsupported_regex", "unresolvable_reference", "validation_mismatch"):
        assert warnings[kind] == [], (kind, warnings[kind])
    assert "unhandled error" not in log and "Traceback" not in log, log[-4000:]
    print(f"schemathesis: {report['test_cases']['generated']} cases on {operations['tested']} operations, "
          f"0 failures, in {report['running_time']:.0f} s")
