"""Batches: many prompts as one piece of work, its items ordinary jobs of the queue."""
