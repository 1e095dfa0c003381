"""The web side: `create_app` builds the core app and adds the routes, the error answers, the
security headers and the per-process watcher. Only the web process imports this package."""
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp import create_app as create_core_app
from webapp.web import (
    admin,
    api,
    batch_api,
    batch_pages,
    batch_stream,
    cookies,
    cors,
    errors,
    health,
    limits,
    metrics,
    openapi,
    origins,
    pages,
    security,
    streams,
    templating,
    watch,
    webhook_pages,
)


def create_app(config=None):
    """The web application (gunicorn's `wsgi:app`, `flask --app wsgi`, the tests)."""
    app = create_core_app(config)
    # A client's `//` or `%2F` in a job id must not be "fixed" by a redirect: it is a 404.
    app.url_map.merge_slashes = False
    register_blueprints(app)
    security.register(app)  # before errors: see errors.register
    errors.register(app)
    templating.register(app)
    cookies.register(app)
    limits.register(app)
    origins.register(app)
    cors.register(app)
    watch.init_app(app)
    # Flask adds its static route before any setting is read: PROVIDE_AUTOMATIC_OPTIONS missed it.
    for rule in app.url_map.iter_rules("static"):
        rule.methods.discard("OPTIONS")
        rule.provide_automatic_options = False
    if app.config["PROXY_HOPS"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_HOPS"], x_proto=1)
    return app


def register_blueprints(app):
    app.register_blueprint(batch_api.bp)  # before api: /batches is not a job id
    app.register_blueprint(batch_stream.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(batch_pages.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(webhook_pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(admin.bp)
