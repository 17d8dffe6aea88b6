"""The OpenAPI 3.1 description of every HTTP call, built from one table (served at /openapi.json)."""

STR, INT = {"type": "string"}, {"type": "integer"}


def text(max_chars: int) -> dict:
    return {"type": "string", "maxLength": max_chars}


def comma_list(item_pattern: str, max_items: int) -> dict:
    return {"type": "string", "pattern": f"^{item_pattern}(,{item_pattern}){{0,{max_items - 1}}}$"}


BOOL_TEXT = {"type": "string", "enum": ["true", "false", "1", "0"]}
CLIENT_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
TERMINAL_IDS = comma_list("[0-9a-f]{32}", 1000)
TOPIC_ITEM = "[A-Za-z0-9_.:@-]{1,64}"
TOPIC = {"type": "string", "pattern": f"^{TOPIC_ITEM}$"}
CONTENT = {"type": "string", "maxLength": 4096, "description": "at most 4,096 bytes of UTF-8"}
ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}
SIGNED = {"app_key": STR, "sign": STR, "sign_method": {"type": "string", "enum": ["md5", "hmac-sha256"]},
          "timestamp": STR, "nonce": text(64)}
CALLBACK = {"callback": {"type": "string", "pattern": "^[A-Za-z_$][0-9A-Za-z_$.]{0,63}$"}}
PUSH = {"msg_type": {"type": "string", "enum": ["0", "1"]}, "msg": CONTENT, "push_time": STR, "expires_time": STR,
        "job_id": ID, "online": BOOL_TEXT, "idempotency_key": text(64)}
BATCH_FIELDS = ("msg_type", "msg", "expires_time", "job_id", "online")  # of an entry of /push/batch, with terminal_ids
PAGE = {"start": STR, "limit": STR}
TERMINAL = {"terminal_type": {"type": "string", "enum": ["web", "android", "ios", "weixin", "qq", "email", "sms"]},
            "org": text(64), "address": text(255), "lat": STR, "lng": STR}

# path: (summary, methods, {param: schema}, required params, kind) — kind: client | legacy | rest
CALLS = {
    "/user/genId": ("A client id for a device of an app (one registered before keeps its attributes)", "GET POST",
                    {"device_id": text(128), "app_key": STR, **TERMINAL, **CALLBACK}, ["device_id", "app_key"], "client"),
    "/user/token": ("A one-week token for a client", "GET POST",
                    {"client_id": CLIENT_ID, "app_key": STR, "sign": STR, **CALLBACK}, ["client_id"], "client"),
    "/user/location": ("Set a client's last known location", "GET POST",
                       {"client_id": CLIENT_ID, "token": STR, "lat": STR, "lng": STR, **CALLBACK},
                       ["client_id", "token", "lat", "lng"], "client"),
    "/service/hash": ("The comet node for a client", "GET POST", {"client_id": CLIENT_ID, **CALLBACK},
                      ["client_id"], "client"),
    "/service/random": ("A random live comet node", "GET POST", {**CALLBACK}, [], "client"),
    "/comet/poll": ("Long-poll a client's messages, acknowledging up to `ack`", "GET",
                    {"client_id": CLIENT_ID, "token": STR, "ack": ID, "timeout": STR, **CALLBACK},
                    ["client_id", "token"], "client"),
    "/comet/stream": ("Server-sent events of a client's messages (id: delivery id); acknowledge by /comet/ack",
                      "GET", {"client_id": CLIENT_ID, "token": STR}, ["client_id", "token"], "client"),
    "/comet/ack": ("Acknowledge a stream's messages up to and including `ack`", "POST",
                   {"client_id": CLIENT_ID, "token": STR, "ack": ID}, ["client_id", "token", "ack"], "client"),
    "/job/genId": ("Create a job", "GET POST", {**SIGNED, "name": text(64), "type": text(64)}, ["app_key", "sign", "name",
                                                                                       "type"], "legacy"),
    "/publish/private": ("Push to one client", "GET POST",
                         {**SIGNED, "job_id": ID, "client_id": CLIENT_ID, "msg_type": {"type": "string", "enum": [
                             "0", "1"]}, "content": CONTENT, "online": BOOL_TEXT, "idempotency_key": text(64)},
                         ["app_key", "sign", "job_id", "client_id", "msg_type", "content"], "legacy"),
    "/message/save": ("Save a message to publish to topics", "GET POST",
                      {**SIGNED, "job_id": ID, "msg_type": {"type": "string", "enum": ["0", "1"]}, "content": CONTENT},
                      ["app_key", "sign", "job_id", "msg_type", "content"], "legacy"),
    "/publish/multi": ("Push a saved message to a topic (`*`: every client)", "GET POST",
                       {**SIGNED, "topic": text(64), "msg_id": ID, "online": BOOL_TEXT, "idempotency_key": text(64)},
                       ["app_key", "sign", "topic", "msg_id"], "legacy"),
    "/topic/subscribe": ("Subscribe 1-100 clients to a topic", "GET POST",
                         {**SIGNED, "appkey": STR, "client_id": {"type": "array", "items": CLIENT_ID, "minItems": 1,
                                                                 "maxItems": 100}, "topic": TOPIC},
                         ["sign", "client_id", "topic"], "legacy"),
    "/topic/unsubscribe": ("Unsubscribe 1-100 clients from a topic", "GET POST",
                           {**SIGNED, "appkey": STR, "client_id": {"type": "array", "items": CLIENT_ID,
                                                                   "minItems": 1, "maxItems": 100}, "topic": TOPIC},
                           ["sign", "client_id", "topic"], "legacy"),
    "/job/stats": ("A job's sent, arrived and expired counts", "GET POST", {**SIGNED, "job_id": ID},
                   ["app_key", "sign", "job_id"], "legacy"),
    "/user/revoke": ("End every token of a client", "GET POST", {**SIGNED, "client_id": CLIENT_ID},
                     ["app_key", "sign", "client_id"], "legacy"),
    "/push/terminal": ("Push to clients by id", "POST", {**SIGNED, "terminal_ids": TERMINAL_IDS, **PUSH},
                       ["terminal_ids", "msg_type", "msg"], "rest"),
    "/push/batch": ("Push up to 1,000 messages to clients by id in one call (ids answered in entry order)", "POST",
                    {**SIGNED, "messages": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
                        "type": "object", "required": ["terminal_ids", "msg_type", "msg"],
                        "properties": {"terminal_ids": TERMINAL_IDS, **{k: v for k, v in PUSH.items()
                                                                         if k in BATCH_FIELDS}}}}},
                    ["messages"], "rest"),
    "/push/all": ("Push to every client of the app", "POST", {**SIGNED, **PUSH}, ["msg_type", "msg"], "rest"),
    "/push/tags": ("Push to the union of tags", "POST", {**SIGNED, "tags": comma_list(TOPIC_ITEM, 100), **PUSH},
                   ["tags", "msg_type", "msg"], "rest"),
    "/push/org": ("Push to organisations, optionally by terminal type", "POST",
                  {**SIGNED, "orgs": comma_list(r"[^,\x00-\x1f\x7f]{1,64}", 100), "terminal_types": STR, **PUSH}, ["orgs", "msg_type", "msg"], "rest"),
    "/push/geo": ("Push to clients within a radius (metres) of a point", "POST",
                  {**SIGNED, "lat": STR, "lng": STR, "radius": STR, **PUSH},
                  ["lat", "lng", "radius", "msg_type", "msg"], "rest"),
    "/manager/query_msg_status": ("Status and counts of a message's pushes", "GET POST", {**SIGNED, "msg_id": ID},
                                  ["msg_id"], "rest"),
    "/manager/query_tag_msgs": ("A tag's push history", "GET POST",
                                {**SIGNED, "tag": TOPIC, "range_start": STR, "range_end": STR, **PAGE}, ["tag"],
                                "rest"),
    "/manager/query_tags": ("The app's tags", "GET POST", {**SIGNED, **PAGE}, [], "rest"),
    "/manager/create_tag": ("Create a tag (or set its info)", "POST", {**SIGNED, "tag": TOPIC, "info": text(255)},
                            ["tag"], "rest"),
    "/manager/del_tag": ("Delete a tag", "POST", {**SIGNED, "tag": TOPIC}, ["tag"], "rest"),
    "/manager/terminal_add_tag": ("Add clients to a tag", "POST", {**SIGNED, "tag": TOPIC, "terminal_ids": TERMINAL_IDS},
                                  ["tag", "terminal_ids"], "rest"),
    "/manager/terminal_del_tag": ("Remove clients from a tag", "POST", {**SIGNED, "tag": TOPIC, "terminal_ids": TERMINAL_IDS},
                                  ["tag", "terminal_ids"], "rest"),
    "/manager/terminal_num_with_tag": ("How many clients a tag has", "GET POST", {**SIGNED, "tag": TOPIC}, ["tag"],
                                       "rest"),
    "/manager/query_timers": ("Pending timed pushes", "GET POST", {**SIGNED, **PAGE}, [], "rest"),
    "/manager/cancel_timer": ("Cancel a pending timed push", "POST", {**SIGNED, "msg_id": ID}, ["msg_id"], "rest"),
    "/manager/query_terminal": ("A terminal (client) and its live state", "GET POST",
                                {**SIGNED, "terminal_id": CLIENT_ID}, ["terminal_id"], "rest"),
    "/manager/query_terminals": ("The app's terminals, optionally by tag, org or type", "GET POST",
                                 {**SIGNED, **PAGE, "tag": TOPIC, "org": text(64), "terminal_type": STR}, [], "rest"),
    "/manager/update_terminal": ("Change a terminal's type, address, org or location", "POST",
                                 {**SIGNED, "terminal_id": CLIENT_ID, **TERMINAL}, ["terminal_id"], "rest"),
    "/manager/del_terminal": ("Delete terminals with their tags, tokens and waiting messages", "POST",
                              {**SIGNED, "terminal_ids": TERMINAL_IDS}, ["terminal_ids"], "rest"),
}

_LEGACY_ERROR = {"type": "object", "required": ["error", "reason"],
                 "properties": {"error": INT, "reason": STR}}
_REST_ERROR = {"type": "object", "required": ["status", "error_code", "error"],
               "properties": {"status": {"const": 0}, "error_code": INT, "error": STR}}
_ERRORS = {"401": "authentication failed (1028)", "403": "bad parameter (1024)", "404": "no such object (1026)",
           "405": "method not allowed (1027)", "408": "the request body came too slowly (1024)",
           "413": "too large (1030)", "429": "rate limited (1029)",
           "503": "Redis or the database is unavailable, or the node is stopping (1031)"}


def _responses(kind: str) -> dict:
    if kind == "rest":
        ok = {"type": "object", "required": ["status"], "properties": {"status": {"const": 1}}}
        error = _REST_ERROR
    else:
        ok = {"type": "object", "required": ["ok", "result"], "properties": {"ok": {"const": True}, "result": {}}}
        error = _LEGACY_ERROR
    def content(schema):
        media = {"application/json": {"schema": schema}}
        if kind == "client":
            media["application/javascript"] = {"schema": STR}  # JSONP, when `callback` is given
        return media

    responses = {"200": {"description": "success", "content": content(ok)}}
    for status, description in _ERRORS.items():
        responses[status] = {"description": description, "content": content(error)}
    return responses


def _operation(path, summary, params, required, kind, method) -> dict:
    operation = {"summary": summary, "operationId": f"{method}{path.replace('/', '_')}",
                 "tags": [{"client": "client", "legacy": "legacy admin", "rest": "REST"}[kind]],
                 "responses": _responses(kind)}
    if kind != "client":
        operation["security"] = [{"signature": []}, {"basic": []}] if kind == "rest" else [{"signature": []}]
    if method == "get":
        operation["parameters"] = [
            {"name": name, "in": "query", "required": name in required, "schema": schema,
             **({"style": "form", "explode": True} if schema.get("type") == "array" else {})}
            for name, schema in params.items()]
    else:
        body = {"type": "object", "properties": params, "required": required}
        media = {"application/x-www-form-urlencoded": {"schema": body}}
        if kind == "rest":
            media["application/json"] = {"schema": body}
        operation["requestBody"] = {"required": bool(required), "content": media}
    return operation


def document() -> dict:
    paths = {}
    for path, (summary, methods, params, required, kind) in CALLS.items():
        paths[path] = {m.lower(): _operation(path, summary, params, required, kind, m.lower())
                       for m in methods.split()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "hipush", "version": "1.0.0",
                 "description": "Self-hosted push service: legacy Web API, REST API and comet long-poll."},
        "paths": paths,
        "components": {"securitySchemes": {
            "signature": {"type": "apiKey", "in": "query", "name": "sign",
                          "description": "MD5 over the sorted parameters, or HMAC-SHA256 over the request "
                                         "path and the encoded sorted parameters (see README, Signing)"},
            "basic": {"type": "http", "scheme": "basic", "description": "app_key:app_secret"}}},
    }
