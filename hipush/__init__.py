"""hipush: a self-hosted push service. `create_app()` builds the Flask app.

Nothing is imported at package level, so gunicorn's master can read the
configuration without pulling in Flask, redis-py or ssl before gevent patches.
"""


def create_app(config=None):
    import logging

    from flask import Flask

    from . import config as config_module
    from .services import Services
    from .views import admin, comet, console, docs, errors, landing, ops, rest, sdk, web

    config = config or config_module.load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.limits.body_bytes
    services = Services(config)
    app.extensions["hipush"] = services
    for role, blueprint in (("web", web.bp), ("web", sdk.bp), ("admin", admin.bp), ("admin", rest.bp),
                             ("comet", comet.bp)):
        if role in config.roles:
            app.register_blueprint(blueprint)
    app.register_blueprint(docs.bp)
    app.register_blueprint(ops.bp)
    ops.init_app(app)  # first: its timing starts before any other hook can refuse the request
    app.register_blueprint(landing.bp)
    if "admin" in config.roles:
        console.init_app(app, config.secret_key)
    errors.init_app(app)
    if config.background:
        services.start_background()
    return app
