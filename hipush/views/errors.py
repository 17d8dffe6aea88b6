"""The one error handler: every failure becomes an ApiError rendered in SPEC §7's envelope."""
import logging

import sqlalchemy.exc
from flask import current_app, request
from werkzeug.exceptions import HTTPException

from .. import metrics
from ..errors import ApiError, bad_param, internal, method_not_allowed, not_found, too_large, unavailable
from ..storage.redis import UNAVAILABLE as REDIS_UNAVAILABLE
from . import console, rest
from .render import allow_any_origin, answer, legacy_error, to_json

log = logging.getLogger("hipush")

CLIENT_PATHS = ("/user/genId", "/user/token", "/user/location", "/service/", "/comet/")
METHODS = ("GET", "POST")  # SPEC: every other method is 405


def _method_not_allowed():
    """405 for this path, listing the methods among GET and POST that its route takes."""
    routed = current_app.create_url_adapter(request).allowed_methods()
    return method_not_allowed([method for method in METHODS if method in routed])


_HTTP = {404: lambda: not_found("no such path"), 405: _method_not_allowed,
         413: lambda: too_large("request body too large")}


def to_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        return _HTTP.get(exc.code, lambda: bad_param(exc.description or exc.name))()
    if isinstance(exc, REDIS_UNAVAILABLE):
        metrics.redis_error()
        log.warning("redis unavailable: %s", exc)
        return unavailable("redis is unavailable, try again shortly")
    if isinstance(exc, sqlalchemy.exc.OperationalError) or (
            isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated):
        metrics.db_error()
        log.warning("database unavailable: %s", exc)
        return unavailable("the database is unavailable, try again shortly")
    log.exception("internal error")
    return internal()


def init_app(app) -> None:
    @app.before_request
    def only_get_and_post():
        """SPEC: any method but GET and POST is 405 (Flask would answer HEAD and OPTIONS itself); a path
        that no route takes stays 404."""
        if request.method not in METHODS and request.url_rule is not None:
            raise _method_not_allowed()

    @app.errorhandler(Exception)
    def render(exc):
        error = to_api_error(exc)
        if request.path.startswith(console.bp.url_prefix):
            return console.render_error(error)
        if request.path.startswith(rest.PATH_PREFIXES):  # also for 404 / 405, which match no route
            return answer(to_json({"status": 0, "error_code": error.code, "error": error.reason}),
                          error.http_status, error.headers)
        response = legacy_error(error)
        if request.path.startswith(CLIENT_PATHS):
            allow_any_origin(response)  # so a page on another origin can tell a 401 from a network failure
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"  # and how long a 503 / 429 asks to wait
        return response
