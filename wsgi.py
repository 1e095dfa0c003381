"""The WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` and `flask --app wsgi ...`."""
import sys

from webapp.config import SettingError
from webapp.web import create_app

try:
    app = create_app()
except SettingError as error:  # a bad setting names itself, not a traceback
    sys.exit(f"livegen: {error}")
