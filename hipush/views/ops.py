"""For operators and load balancers: /healthz (the process serves), /readyz (send it requests),
/metrics (Prometheus), and the timing of every request by its route. None is signed or rate limited."""
import hmac
import time

from flask import Blueprint, Response, g, request

from .. import metrics
from ..errors import auth_failed
from ..services import services
from .render import answer

bp = Blueprint("ops", __name__)


@bp.route("/healthz", methods=["GET"])
def healthz():
    """No I/O: it answers while the worker serves requests at all."""
    return answer('{"ok":true}')


@bp.route("/readyz", methods=["GET"])
def readyz():
    services().readiness.check()
    return answer('{"ok":true}')


@bp.route("/metrics", methods=["GET"])
def metrics_text():
    token = services().config.metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                         f"Bearer {token}".encode()):
        raise auth_failed("a valid bearer token is required (HIPUSH_METRICS_TOKEN)",
                          {"WWW-Authenticate": 'Bearer realm="hipush metrics"'})
    return Response(metrics.exposition(), mimetype=None, content_type=metrics.CONTENT_TYPE)


def init_app(app) -> None:
    """Times every request by its route's rule (never the raw URL: ids in paths would make a label each)."""
    @app.before_request
    def start_timing():
        g.started = time.perf_counter()

    @app.teardown_request
    def record_timing(_exc):
        started = g.pop("started", None)
        if started is not None:
            rule = request.url_rule
            metrics.request_done(rule.rule if rule is not None else metrics.UNMATCHED, time.perf_counter() - started)
