"""The operator console, /console: server-rendered pages over the services the CLI and the API use.

An operator logs in with a name and password (services/operators.py); the Flask session cookie (signed with
a key derived from HIPUSH_SECRET_KEY, path /console, HttpOnly, SameSite=Lax, Secure over TLS) then carries
their name and a CSRF token that every POST must repeat. Every change is written to the audit log.
Errors are answered as pages, not in the API's JSON envelope.
"""
import hashlib
import hmac
import secrets
from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from hipush_client.protocol import STATUS_WAITING

from .. import limits as L
from ..errors import ApiError, bad_param, not_found
from ..services import services
from ..clock import now_ms

bp = Blueprint("console", __name__, url_prefix="/console", static_folder="../static/console",
               static_url_path="/static")
PAGE_SIZE = 20
LOGIN_ATTEMPTS = 10  # per client IP per minute
SESSION_HOURS = 12
MAX_TEST_DELAY = 7 * 86400  # seconds a test message may be held back as a timer
OPEN_ENDPOINTS = ("console.login", "console.static")
CHART_WIDTH, CHART_HEIGHT = 600, 160


class ConsoleSessions(SecureCookieSessionInterface):
    """Secure cookies whenever the browser talks TLS: to us, or to the proxy in front (X-Forwarded-Proto)."""

    def get_cookie_secure(self, app) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return request.is_secure or forwarded == "https"

    def open_session(self, app, request):
        """Outside /console no browser sends the cookie (its path): no serializer to build, nothing to save."""
        if not request.path.startswith(bp.url_prefix):
            return None  # Flask gives the request a null session
        return super().open_session(app, request)


def init_app(app, secret_key: str) -> None:
    app.secret_key = hmac.new(secret_key.encode(), b"hipush console session", hashlib.sha256).hexdigest()
    app.session_interface = ConsoleSessions()
    app.config.update(SESSION_COOKIE_PATH="/console", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="hipush_console")
    app.jinja_env.filters["when"] = _when
    app.jinja_env.globals["csrf_token"] = csrf_token  # a global: the macros imported by templates see it
    app.register_blueprint(bp)


def _when(ms) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, services().config.timezone).strftime("%Y-%m-%d %H:%M:%S")


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.app_context_processor
def _template_values():
    return {"operator": session.get("operator")}


def render_error(error: ApiError):
    """An error of a console page, as a page."""
    return render_template("console/error.html", error=error), error.http_status, error.headers


@bp.before_request
def _guard():
    if request.method == "POST":
        sent = request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            raise bad_param("this form has expired or did not come from the console: reload the page")
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    since = session.get("since", 0)
    if not session.get("operator") or now_ms() - since > SESSION_HOURS * 3_600_000 \
            or not services().operators.still_valid(session["operator"], since):
        session.clear()
        return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))
    return None


@bp.after_request
def _protect(response):
    """Pages show app secrets: never cached, never framed by another site."""
    response.headers.update({"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                             "Content-Security-Policy": "frame-ancestors 'none'",
                             "X-Content-Type-Options": "nosniff"})
    return response


def _audit(action: str, detail: str) -> None:
    services().audit.record(session["operator"], action, detail)


def _page_number() -> int:
    return L.parse_int("page", request.args.get("page"), 1, 10**6, default=1)


def _paged(total: int, page: int) -> dict:
    return {"page": page, "pages": max(1, -(-total // PAGE_SIZE)), "total": total}


def _app(app_key: str) -> dict:
    """The app as the database has it now (not a worker's cached copy: the page may show a secret just rotated)."""
    app = services().apps.by_key(app_key, fresh=True)
    if app is None:
        raise not_found("no such app")
    return app


def _safe_next(target) -> str:
    """Where to go after logging in: only a console path of this site."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/"):
        return url_for("console.apps")
    return target


# logging in and out

@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        csrf_token()
        return render_template("console/login.html", next=request.args.get("next", ""), name="")
    services().rate_limiter.hit(f"console-login:{request.remote_addr}", LOGIN_ATTEMPTS, window=60)
    name = request.form.get("name", "")
    operator = services().operators.authenticate(name, request.form.get("password", ""))
    if operator is None:
        return render_template("console/login.html", next=request.form.get("next", ""), name=name,
                               failed="wrong name or password"), 401
    session.clear()  # a new session (and CSRF token) at each login
    session.update(operator=operator["name"], since=now_ms())
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("console.login"))


@bp.route("/")
def home():
    return redirect(url_for("console.apps"))


# apps

@bp.route("/apps", methods=["GET", "POST"])
def apps():
    if request.method == "POST":
        app = services().apps.create(request.form.get("name", "").strip())
        _audit("create app", f"{app['app_key']} ({app['name']})")
        return redirect(url_for("console.app_page", app_key=app["app_key"]))
    return render_template("console/apps.html", apps=services().store.list_apps())


@bp.route("/apps/<app_key>", methods=["GET", "POST"])
def app_page(app_key):
    app = _app(app_key)
    if request.method == "POST":
        form = request.form
        rates = {name: form.get(name, "").strip() or "default" for name in ("publish_rate", "subscribe_rate")}
        services().apps.configure(app_key, form.get("sign_policy"), form.get("token_policy"),
                                  form.get("allowed_origins", ""), rates["publish_rate"], rates["subscribe_rate"],
                                  form.get("jsonp"))
        _audit("change app", f"{app_key}: sign {form.get('sign_policy')}, token {form.get('token_policy')}, "
                             f"origins {form.get('allowed_origins')}, jsonp {form.get('jsonp')}, "
                             f"publish rate {rates['publish_rate']}, subscribe rate {rates['subscribe_rate']}")
        return redirect(url_for("console.app_page", app_key=app_key, saved=1))
    return render_template("console/app.html", app=app, saved=request.args.get("saved"),
                           rotated=request.args.get("rotated"))


@bp.route("/apps/<app_key>/rotate", methods=["POST"])
def rotate(app_key):
    services().apps.rotate_secret(_app(app_key)["app_key"])
    _audit("rotate secret", app_key)
    return redirect(url_for("console.app_page", app_key=app_key, rotated=1))


# jobs, pushes, tags

@bp.route("/apps/<app_key>/jobs")
def jobs(app_key):
    app, page = _app(app_key), _page_number()
    total, rows = services().reports.jobs(app, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return render_template("console/jobs.html", app=app, jobs=rows, **_paged(total, page))


@bp.route("/apps/<app_key>/jobs/<int:job_id>")
def job(app_key, job_id):
    app = _app(app_key)
    job = services().reports.with_counts("job", services().jobs.get(app, job_id))
    return render_template("console/job.html", app=app, job=job, chart=_chart(services().reports.arrivals(job_id)))


def _chart(points: list):
    """Bars of an SVG chart of (unix minute, arrivals), scaled to CHART_WIDTH x CHART_HEIGHT; None for no data."""
    if not points:
        return None
    top = max(n for _, n in points) or 1
    width = CHART_WIDTH / len(points)
    bars = [{"x": round(i * width, 2), "w": round(max(width - 1, 0.5), 2), "h": round(CHART_HEIGHT * n / top, 2),
             "n": n, "at": _when(minute * 60_000)[:16]} for i, (minute, n) in enumerate(points)]
    return {"bars": bars, "top": top, "width": CHART_WIDTH, "height": CHART_HEIGHT,
            "first": bars[0]["at"], "last": bars[-1]["at"]}


@bp.route("/apps/<app_key>/pushes")
def pushes(app_key):
    app, page = _app(app_key), _page_number()
    total, rows = services().reports.pushes(app, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return render_template("console/pushes.html", app=app, pushes=rows, waiting=STATUS_WAITING, **_paged(total, page))


@bp.route("/apps/<app_key>/pushes/<int:message_id>/cancel", methods=["POST"])
def cancel_timer(app_key, message_id):
    services().timers.cancel(_app(app_key), message_id)
    _audit("cancel timer", f"{app_key}: message {message_id}")
    return redirect(url_for("console.pushes", app_key=app_key))


@bp.route("/apps/<app_key>/tags")
def tags(app_key):
    app, page = _app(app_key), _page_number()
    total, rows = services().topics.page(app, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    counted = [{**row, "subscribers": services().topics.count(app, row["name"])} for row in rows]
    return render_template("console/tags.html", app=app, tags=counted, **_paged(total, page))


# a test message

@bp.route("/apps/<app_key>/send", methods=["GET", "POST"])
def send(app_key):
    app = _app(app_key)
    if request.method == "GET":
        return render_template("console/send.html", app=app, form={})
    form = request.form
    content = form.get("content", "")
    L.check_bytes("content", content, services().config.limits.content_bytes)
    L.require("content", content)
    if form.get("kind") == "tag":
        target = {"kind": "tags", "tags": [L.parse_topic("tag", form.get("to", "").strip())]}
    else:
        target = {"kind": "clients", "ids": [L.parse_client_id(form.get("to", "").strip(), "client id")]}
    delay = L.parse_int("delay", form.get("delay", "").strip(), 0, MAX_TEST_DELAY, default=0)
    topic_ids = services().targets.check(app, target)
    job_field = form.get("job_id", "").strip()
    job_id = L.parse_id("job", job_field) if job_field else services().jobs.create(app, "console test", "test")
    publisher = services().publisher
    message = publisher.new_message(app, job_id, 0, content)
    if delay:
        publisher.create(app, message, target, topic_ids, False, STATUS_WAITING, now_ms() + 1000 * delay)
    else:
        publisher.publish_now(app, message, target, topic_ids, False)
    _audit("send test message", f"{app_key}: job {job_id}, message {message['id']} to {form.get('kind')} "
                                f"{form.get('to')}" + (f" in {delay} s" if delay else ""))
    if delay:
        return redirect(url_for("console.pushes", app_key=app_key))
    return redirect(url_for("console.job", app_key=app_key, job_id=job_id))


# nodes, terminals, the audit log

@bp.route("/nodes")
def nodes():
    return render_template("console/nodes.html", nodes=services().nodes.live_with_figures())


@bp.route("/terminals")
def terminals():
    app_key, query = request.args.get("app", ""), request.args.get("q", "").strip()
    found = None
    if app_key and query:
        L.check_length("client or device id", query, 128)
        found = services().terminals.find(_app(app_key), query)
    return render_template("console/terminals.html", apps=services().store.list_apps(), app_key=app_key,
                           query=query, terminal=found, grace=services().config.presence_grace)


@bp.route("/audit")
def audit():
    page = _page_number()
    total, rows = services().audit.page((page - 1) * PAGE_SIZE, PAGE_SIZE)
    return render_template("console/audit.html", entries=rows, **_paged(total, page))

