"""`flask queue`: the queue and the workers, as the database has them."""
import click

from webapp.telemetry import overview


@click.command("queue")
@click.option("--next", "count", type=click.IntRange(1, 100), default=10, show_default=True,
              help="How many of the next jobs in line to show.")
def show_queue(count):
    """Show the queue and the workers.

    How many jobs wait and for how long, the next COUNT in line (in fair turns), and the running
    jobs by worker with their leases. Only leases name workers: one that holds no job is not
    shown."""
    from webapp.cli import tables  # rich: see webapp.cli.jobs.follow
    from webapp.cli.screen import duration

    out, names, heads = tables.console(), overview.key_names(), overview.queue_heads()
    summary, workers = overview.queue_summary(heads), overview.running_by_worker()
    oldest = f", the oldest for {duration(summary['oldest_wait_ms'])}" if summary["queued"] else ""
    out.print(f"{summary['queued']} queued{oldest}.", highlight=False)
    line = overview.next_in_line(heads, limit=count)
    if line:
        out.print(tables.line_table(line, names, out.width))
    running = sum(len(jobs) for jobs in workers.values())
    out.print(f"{running} running on {len(workers)} worker(s).", highlight=False)
    for worker_id, jobs in workers.items():
        out.print(tables.worker_table(worker_id, jobs, names, out.width))
