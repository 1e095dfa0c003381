"""`/metrics` for Prometheus: stub, built by the metrics work."""
from flask import Blueprint

bp = Blueprint("metrics", __name__)
