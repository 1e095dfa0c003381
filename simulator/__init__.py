"""A stdlib-only fake Ollama HTTP server for tests and for `make run` without a real Ollama."""

from simulator.faults import FAULTS
from simulator.records import RequestRecord
from simulator.sim import Simulator

__all__ = ["FAULTS", "RequestRecord", "Simulator"]
