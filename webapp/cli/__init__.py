"""The operator's commands: `flask jobs …`, `flask queue` and `flask keys …`. They run where the
app runs, with its settings and its database; `watch` also reads the web server's stream."""
from webapp.cli import jobs, keys, queue


def register(app):
    app.cli.add_command(jobs.group)
    app.cli.add_command(queue.show_queue)
    app.cli.add_command(keys.group)
