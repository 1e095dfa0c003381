"""One logging set-up for every process: time, level, logger name, then the message."""
import logging.config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_problem(level):
    """What is wrong with a LOG_LEVEL value, or None."""
    if level not in LEVELS:
        return f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {level!r}"
    return None


def dict_config(level="INFO"):
    """A `logging.config.dictConfig` mapping: the root logger and gunicorn's error and access
    logs write to stderr in one shape (gunicorn takes it as `logconfig_dict`)."""
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # gunicorn's own loggers: same handler, and not twice through the root.
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
    }


def configure(level="INFO"):
    logging.config.dictConfig(dict_config(level))
