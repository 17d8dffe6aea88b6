"""hipush command line: run `python app.py --help`."""
import argparse
import json
import sys

from hipush import config as config_module
from hipush.errors import ApiError


def _apps():
    from hipush.services.apps import Apps
    from hipush.storage.db import ensure_schema, make_engine
    from hipush.storage.store import Store

    engine = make_engine(config_module.load().database_url)
    ensure_schema(engine)
    return Apps(Store(engine), commands=None)


def _public(app: dict) -> dict:
    return {k: app[k] for k in ("app_key", "app_secret", "name", "sign_policy", "token_policy", "allowed_origins",
                                "publish_rate", "subscribe_rate")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python app.py", description="Administer a hipush installation.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-app", help="register an app; prints its app_key and app_secret as JSON")
    create.add_argument("name")
    commands.add_parser("list-apps", help="list registered apps as JSON lines")
    rotate = commands.add_parser("rotate-secret", help="give an app a new app_secret; the old one stops working")
    rotate.add_argument("app_key")
    settings = commands.add_parser("app-set", help="change an app's sign policy, token policy or allowed origins")
    settings.add_argument("app_key")
    settings.add_argument("--sign-policy", choices=["md5", "hmac"],
                          help="md5: MD5 and HMAC signatures accepted; hmac: HMAC-SHA256 only")
    settings.add_argument("--token-policy", choices=["open", "signed"],
                          help="signed: /user/token needs app_key + sign, so only the app's backend gets tokens")
    settings.add_argument("--allowed-origins", help="comma list of origins allowed by CORS, or * (default)")
    settings.add_argument("--publish-rate", help="publish calls per second (0: unlimited; default: the server's)")
    settings.add_argument("--subscribe-rate", help="subscribe calls per second (0: unlimited; default: the server's)")
    args = parser.parse_args(argv)
    try:
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
                args.publish_rate, args.subscribe_rate))))
    except (ApiError, config_module.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
