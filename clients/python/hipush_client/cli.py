"""The `hipush` command: `hipush publish` pushes a message, `hipush subscribe` receives them.

Settings come from flags or HIPUSH_SERVER, HIPUSH_APP_KEY, HIPUSH_APP_SECRET and HIPUSH_DEVICE_ID.
"""
import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading

from . import protocol
from .admin import Admin
from .client import TRANSPORTS, Client
from .errors import HipushError

DEFAULT_SERVER = "http://127.0.0.1:8080"


def _add_app_arguments(parser, secret_help: str, secret_required: bool) -> None:
    """--server, --app-key and --app-secret, which HIPUSH_SERVER, HIPUSH_APP_KEY and HIPUSH_APP_SECRET may give
    instead."""
    parser.add_argument("--server", default=os.environ.get("HIPUSH_SERVER", DEFAULT_SERVER),
                        help=f"the hipush to call (default: $HIPUSH_SERVER, else {DEFAULT_SERVER})")
    for flag, variable, required, what in (("--app-key", "HIPUSH_APP_KEY", True, "the app's key"),
                                           ("--app-secret", "HIPUSH_APP_SECRET", secret_required, secret_help)):
        parser.add_argument(flag, default=os.environ.get(variable), required=required and variable not in os.environ,
                            help=f"{what} (default: ${variable})")


def add_publish_arguments(parser) -> None:
    """The flags of `hipush publish` (and of the server's `python app.py push`)."""
    _add_app_arguments(parser, "the app's secret", secret_required=True)
    parser.add_argument("--sign-method", choices=["hmac-sha256", "md5", "basic"], default=protocol.HMAC_METHOD)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--client", action="append", help="a client_id (repeat or comma-separate for several)")
    target.add_argument("--topic", action="append", help="a topic (= tag); repeat for several")
    target.add_argument("--tag", action="append", help="a tag (= topic); repeat for several")
    target.add_argument("--all", action="store_true", help="every client of the app")
    parser.add_argument("--notification", action="store_true", help="msg_type 1: shown to the user")
    parser.add_argument("--title", help="the notification's title (implies --notification)")
    parser.add_argument("--online", action="store_true", help="only clients online now")
    parser.add_argument("--expires", type=int, help="seconds until the message expires (default 86400)")
    parser.add_argument("--push-time", help="send later: 'YYYY-MM-DD HH:MM:SS', ISO 8601 or unix seconds")
    parser.add_argument("--job-id", type=int)
    parser.add_argument("--idempotency-key", help="a repeat with the same key sends nothing again")
    parser.add_argument("message")


def publish(args) -> int:
    """Pushes args.message through the REST API; prints {"msg_id": ID}. Exit status 1 on failure."""
    notification = args.notification or args.title is not None
    msg = {"body": args.message, **({"title": args.title} if args.title is not None else {})} \
        if notification else args.message
    options = {"msg_type": 1 if notification else 0, "push_time": args.push_time, "expires_time": args.expires,
               "job_id": args.job_id, "online": True if args.online else None,
               "idempotency_key": args.idempotency_key}
    try:
        with Admin(args.server, args.app_key, args.app_secret, args.sign_method) as admin:
            if args.client:
                msg_id = admin.push_terminal([c for arg in args.client for c in arg.split(",") if c], msg, **options)
            elif args.topic or args.tag:
                msg_id = admin.push_tags((args.topic or []) + (args.tag or []), msg, **options)
            else:
                msg_id = admin.push_all(msg, **options)
    except HipushError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"msg_id": msg_id}))
    return 0


def add_subscribe_arguments(parser) -> None:
    """The flags of `hipush subscribe`."""
    _add_app_arguments(parser, "only for apps with the signed token policy: tokens are then fetched with "
                               "signed calls", secret_required=False)
    parser.add_argument("--device-id",
                        default=os.environ.get("HIPUSH_DEVICE_ID") or f"hipush-cli@{socket.gethostname()}",
                        help="this subscriber's device id: the same id is the same client, so give each subscriber "
                             "its own (default: $HIPUSH_DEVICE_ID, else hipush-cli@HOSTNAME)")
    parser.add_argument("--terminal-type", choices=protocol.TERMINAL_TYPES, help="registered with the client id")
    parser.add_argument("--poll-timeout", type=int, default=30, help="seconds a poll waits on the server (0-60)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="poll",
                        help="poll: the long poll; sse: one server-sent event stream (fewer requests)")
    parser.add_argument("--no-discover", dest="discover", action="store_false",
                        help="always poll --server (e.g. behind a load balancer), not the node /service/hash names")
    parser.add_argument("--exec", dest="command", metavar="CMD",
                        help="run CMD (with sh) per message instead of printing it: the message's JSON on its stdin "
                             "and in $HIPUSH_MESSAGE, its content in $HIPUSH_CONTENT (text, or a notification's "
                             "JSON), $HIPUSH_ID, $HIPUSH_MSG_ID and $HIPUSH_MSG_TYPE")
    parser.add_argument("--quiet", action="store_true", help="no connection notes on stderr")


def _content_text(content) -> str:
    return content if isinstance(content, str) else protocol.json_value_text(content)


def _run_command(command: str, line: str, message) -> None:
    """Runs `command` for one message; a failing command is reported and the message counts as handled
    (processing it again would most likely fail again)."""
    env = {**os.environ, "HIPUSH_MESSAGE": line, "HIPUSH_CONTENT": _content_text(message.content),
           "HIPUSH_ID": str(message.id), "HIPUSH_MSG_ID": str(message.msg_id), "HIPUSH_MSG_TYPE": str(message.msg_type)}
    status = subprocess.run(command, shell=True, input=line + "\n", text=True, env=env).returncode
    if status != 0:
        print(f"hipush: command exited with status {status} for message {message.id}", file=sys.stderr)


def subscribe(args) -> int:
    """Receives until SIGINT/SIGTERM: one JSON line per message on stdout (or --exec per message), each
    acknowledged once printed (or once the command returned); reconnects by itself."""
    def on_state(state, error):
        if not args.quiet:
            note = f"connected to {client.node or client.server} as {client.client_id}" if state == "connected" \
                else f"disconnected ({error.reason if error else 'closed'}); reconnecting"
            print(f"hipush: {note}", file=sys.stderr, flush=True)

    token_fetcher = None
    if args.app_secret:
        token_fetcher = Admin(args.server, args.app_key, args.app_secret, protocol.HMAC_METHOD).client_token
    client = Client(args.server, app_key=args.app_key, device_id=args.device_id, token_fetcher=token_fetcher,
                    terminal_type=args.terminal_type, poll_timeout=args.poll_timeout, discover=args.discover,
                    on_state=on_state, transport=args.transport)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def on_message(message):
        line = json.dumps(message.to_json(), ensure_ascii=False, separators=(",", ":"))
        if args.command:
            _run_command(args.command, line, message)
        else:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()  # printed before acknowledged: run() acknowledges once this returns

    try:
        client.run(on_message, stop_event=stop)
    except HipushError as exc:  # refused for good (bad app key, device id, token): retrying cannot help
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head -1`): the unprinted message comes again next time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
    finally:
        client.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hipush", description="Push and receive hipush messages.")
    commands = parser.add_subparsers(dest="command_name", required=True)
    add_publish_arguments(commands.add_parser(
        "publish", help="push a message (REST API); prints {\"msg_id\": ID}",
        description="Push MESSAGE through the hipush at --server (HMAC-SHA256 signed by default)."))
    add_subscribe_arguments(commands.add_parser(
        "subscribe", help="receive messages: one JSON line each on stdout, or a command run per message",
        description="Receive the messages of one client (registered from --app-key and --device-id) until "
                    "interrupted; each is acknowledged after it is printed (or its --exec command returned), "
                    "and the connection is retried with backoff when it fails."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="hipush: %(message)s")
    return publish(args) if args.command_name == "publish" else subscribe(args)
