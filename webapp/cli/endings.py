"""How a followed job ended, as an exit code: 0 completed, 1 failed, 2 cancelled."""
import click

from webapp import statuses

EXIT_CODES = {statuses.COMPLETED: 0, statuses.FAILED: 1, statuses.CANCELLED: 2}
NO_ENDING = 3  # no such job, a refusal, a mistyped option: nothing ended
INTERRUPTED = 130  # Ctrl-C: the watcher stopped, the job goes on


class EndingCommand(click.Command):
    """A command whose exit code says how a job ended. click exits 1 on an error and 2 on a
    usage error, which a script would read as "failed" and "cancelled": here both are 3."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            error.exit_code = NO_ENDING
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            error.exit_code = NO_ENDING
            raise
