"""hipush command line: run `python app.py --help`."""
import argparse
import json
import sys

from hipush import config as config_module
from hipush.errors import ApiError


def _store(settings):
    from hipush.storage.db import ensure_schema, make_engine
    from hipush.storage.store import Store

    engine = make_engine(settings.database_url)
    ensure_schema(engine)
    return Store(engine)


def _apps():
    from hipush.services.apps import Apps

    return Apps(_store(config_module.load()), nonces=None)


def _reset_redis(args) -> int:
    """Deletes hipush's keys from the Redis this node is set to use, after a confirmation, and gives the
    Redis to this node's database."""
    import redis

    from hipush.storage import redis as redis_pools
    from hipush.storage.embedded import EmbeddedRedis
    from hipush.storage.installation import Installation

    settings = config_module.load()
    store = _store(settings)
    embedded = EmbeddedRedis(settings.data_dir) if settings.embedded_redis else None
    if embedded and not embedded.alive():
        embedded.ensure_running(detach=False)  # the node is stopped: its redis-server runs just for this
    try:
        pools = redis_pools.connect(settings.effective_redis_url, settings.redis_cluster_nodes, 1, 0)
        installation = Installation(pools.commands, store, settings.redis_location, settings.database_url)
        held = installation.held()
        print(f"Redis {installation.redis_url} belongs to {f'installation {held}' if held else 'no installation'}; "
              f"database {installation.database_url} is installation {installation.identity}.")
        if not (args.yes or _confirmed(installation.identity)):
            print("nothing deleted", file=sys.stderr)
            return 1
        deleted = installation.reset()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        print(f"error: Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded and embedded.process is not None:  # only a redis-server started here
            embedded.stop()
    print(f"deleted {deleted} keys; Redis {installation.redis_url} now belongs to installation {installation.identity}")
    return 0


def _confirmed(identity: str) -> bool:
    print("This deletes every hipush key (hp:*) of that Redis: the messages queued there, the counts not yet in "
          "the database, stored idempotency answers. Stop the nodes that use it first.")
    try:
        return input(f"Type this installation's id ({identity}) or 'yes' to go on: ").strip() in (identity, "yes")
    except EOFError:
        return False


def _create_operator(name: str) -> str:
    """Asks for the password (twice on a terminal; one line of stdin otherwise, for scripts) and stores it."""
    import getpass

    from hipush.services.audit import Audit
    from hipush.services.operators import Operators

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for operator {name}: ")
        if getpass.getpass("again: ") != password:
            raise config_module.ConfigError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    store = _store(config_module.load())
    created = Operators(store, Audit(store)).set_password(name, password, by="python app.py create-operator")
    return f"operator {name} {'created' if created else 'has a new password'}"


def _public(app: dict) -> dict:
    return {k: app[k] for k in ("app_key", "app_secret", "name", "sign_policy", "token_policy", "allowed_origins",
                                "jsonp", "publish_rate", "subscribe_rate")}


def _add_push_command(commands) -> None:
    """`push` is the Python kit's `hipush publish` (same flags, same code)."""
    from hipush_client.cli import add_publish_arguments

    add_publish_arguments(commands.add_parser(
        "push", help="push a message through a running hipush (REST API); prints {\"msg_id\": ID}",
        description="Push MESSAGE through the hipush at --server; key and secret may come from "
                    "HIPUSH_SERVER, HIPUSH_APP_KEY and HIPUSH_APP_SECRET instead. Same as `hipush publish`."))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python app.py", description="Administer a hipush installation.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-app", help="register an app; prints its app_key and app_secret as JSON")
    create.add_argument("name")
    commands.add_parser("list-apps", help="list registered apps as JSON lines")
    rotate = commands.add_parser("rotate-secret", help="give an app a new app_secret; the old one stops working")
    rotate.add_argument("app_key")
    settings = commands.add_parser("app-set", help="change an app's sign policy, token policy, allowed origins, "
                                                   "JSONP or rate limits")
    settings.add_argument("app_key")
    settings.add_argument("--sign-policy", choices=["md5", "hmac"],
                          help="md5: MD5 and HMAC signatures accepted; hmac: HMAC-SHA256 only")
    settings.add_argument("--token-policy", choices=["open", "signed"],
                          help="signed: /user/token needs app_key + sign, so only the app's backend gets tokens")
    settings.add_argument("--allowed-origins", help="comma list of origins allowed by CORS, or * (default)")
    settings.add_argument("--jsonp", choices=["on", "off"],
                          help="off: client calls with callback are refused (JSONP answers any page, CORS or not)")
    settings.add_argument("--publish-rate", help="publish calls per second (0: unlimited; default: the server's)")
    settings.add_argument("--subscribe-rate", help="subscribe calls per second (0: unlimited; default: the server's)")
    operator = commands.add_parser(
        "create-operator", help="create an operator of the console (/console), or set its password; asks for "
                                "the password (read from stdin when it is not a terminal)")
    operator.add_argument("name")
    _add_push_command(commands)
    reset = commands.add_parser(
        "reset-redis", help="delete hipush's keys (hp:*) from the Redis, after a confirmation, and give it to "
                            "this database's installation (see README: Installation identity)")
    reset.add_argument("--yes", action="store_true", help="no confirmation asked (for scripts)")
    args = parser.parse_args(argv)
    if args.command == "push":
        from hipush_client.cli import publish

        return publish(args)
    try:
        if args.command == "reset-redis":
            return _reset_redis(args)
        if args.command == "create-operator":
            print(_create_operator(args.name))
            return 0
        apps = _apps()
        if args.command == "create-app":
            print(json.dumps(_public(apps.create(args.name))))
        elif args.command == "list-apps":
            for app in apps.store.list_apps():
                print(json.dumps(_public(app)))
        elif args.command == "rotate-secret":
            print(json.dumps(apps.rotate_secret(args.app_key)))
        elif args.command == "app-set":
            print(json.dumps(_public(apps.configure(
                args.app_key, args.sign_policy, args.token_policy, args.allowed_origins,
                args.publish_rate, args.subscribe_rate, args.jsonp))))
    except (ApiError, config_module.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
