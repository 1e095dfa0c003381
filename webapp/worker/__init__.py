"""The worker side: claims queued jobs, streams them from Ollama, writes progress. Only the
worker process imports this package; it never imports the web side."""
from webapp.worker.loop import Worker

__all__ = ["Worker"]
