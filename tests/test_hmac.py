"""HMAC-SHA256 signing with timestamp and nonce (SPEC §6), end to end; written out independently.

The signed string is the request path, a newline, then the percent-encoded sorted parameters, so a
signature is good for the call it was made for only. A replay to another path is sent with a nonce
never used before (as an attacker holding a captured, undelivered request would): only the path can
refuse it, and the request is then still good for its own call.
"""
import hashlib
import hmac
import time
import uuid
from urllib.parse import quote

from support import wait_for

AUTH_FAILED = (401, 1028)


def hmac_params(app, path, params, timestamp=None, nonce=None):
    pairs = [("app_key", app["app_key"])] + list(params.items()) + [
        ("sign_method", "hmac-sha256"), ("timestamp", str(int(timestamp or time.time()))),
        ("nonce", nonce or uuid.uuid4().hex)]
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(pairs, key=lambda p: p[0]))
    canonical = path + "\n" + query
    return pairs + [("sign", hmac.new(app["app_secret"].encode(), canonical.encode(), hashlib.sha256).hexdigest())]


def rest_answer(response):
    """(http status, error code or None) of a REST answer."""
    return response.status_code, response.json().get("error_code")


def test_hmac_signed_calls_work_legacy_and_rest(api, server, app_):
    job = api.ok("/job/genId", hmac_params(app_, "/job/genId", {"name": "a&b=c", "type": "t"}))["job_id"]
    assert api.ok("/job/stats", hmac_params(app_, "/job/stats", {"job_id": str(job)}))["name"] == "a&b=c"
    response = api.http.post(server.base + "/manager/query_tags", data=hmac_params(app_, "/manager/query_tags", {}))
    assert response.json()["status"] == 1


def test_the_signed_string_of_one_call_written_out_by_hand(api, server, app_):
    """/manager/create_tag with tag=t-1 and info "a b&c": the exact string a backend signs."""
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    canonical = (f"/manager/create_tag\n"
                 f"app_key={app_['app_key']}&info=a%20b%26c&nonce={nonce}&sign_method=hmac-sha256"
                 f"&tag=t-1&timestamp={timestamp}")
    sign = hmac.new(app_["app_secret"].encode(), canonical.encode(), hashlib.sha256).hexdigest()
    body = {"tag": "t-1", "info": "a b&c", "app_key": app_["app_key"], "sign_method": "hmac-sha256",
            "timestamp": timestamp, "nonce": nonce, "sign": sign}
    assert rest_answer(api.http.post(server.base + "/manager/create_tag", data=body)) == (200, None)
    tags = api.http.post(server.base + "/manager/query_tags", auth=(app_["app_key"], app_["app_secret"])).json()
    assert [(t["tag"], t["info"]) for t in tags["data"]] == [("t-1", "a b&c")]


def test_a_signed_tag_count_replayed_to_del_tag_is_refused_and_the_tag_survives(api, server, app_):
    basic = (app_["app_key"], app_["app_secret"])
    assert api.http.post(server.base + "/manager/create_tag", data={"tag": "keep"}, auth=basic).status_code == 200
    count = hmac_params(app_, "/manager/terminal_num_with_tag", {"tag": "keep"})

    assert rest_answer(api.http.post(server.base + "/manager/del_tag", data=count)) == AUTH_FAILED
    answer = api.http.get(server.base + "/manager/terminal_num_with_tag", params=count)
    assert answer.status_code == 200 and answer.json() == {"status": 1, "num": 0}, answer.text


def test_a_revoke_signature_replayed_to_user_token_gets_no_token(api, server, app_):
    server.cli("app-set", app_["app_key"], "--token-policy", "signed")  # before the server has seen this app
    client_id = api.ok("/user/genId", {"device_id": "revoked", "app_key": app_["app_key"]})["client_id"]
    revoke = hmac_params(app_, "/user/revoke", {"client_id": client_id})

    assert api.error("/user/token", revoke) == AUTH_FAILED
    assert api.ok("/user/revoke", revoke) == "OK"
    token = api.ok("/user/token", hmac_params(app_, "/user/token", {"client_id": client_id}))
    assert token["client_id"] == client_id


def test_a_status_query_replayed_to_cancel_timer_is_refused_and_the_timer_stays(api, server, app_):
    basic = (app_["app_key"], app_["app_secret"])
    timed = {"msg_type": "0", "msg": "later", "push_time": str(int(time.time()) + 3600)}
    msg_id = api.http.post(server.base + "/push/all", data=timed, auth=basic).json()["msg_id"]
    query = hmac_params(app_, "/manager/query_msg_status", {"msg_id": str(msg_id)})

    assert rest_answer(api.http.post(server.base + "/manager/cancel_timer", data=query)) == AUTH_FAILED
    timers = api.http.post(server.base + "/manager/query_timers", auth=basic).json()
    assert [t["msg_id"] for t in timers["data"]] == [msg_id]
    assert rest_answer(api.http.post(server.base + "/manager/query_msg_status", data=query)) == (200, None)


def test_a_replayed_nonce_is_refused(api, app_):
    params = hmac_params(app_, "/job/genId", {"name": "n", "type": "t"})
    api.ok("/job/genId", params)
    assert api.error("/job/genId", params) == AUTH_FAILED


def test_a_stale_or_future_timestamp_is_refused(api, app_):
    for skew in (-301, 301):
        assert api.error("/job/genId", hmac_params(app_, "/job/genId", {"name": "n", "type": "t"},
                                                   timestamp=time.time() + skew)) == AUTH_FAILED


def test_md5_reading_of_a_split_value_does_not_pass_hmac(api, app_):
    """Under MD5, name='a&type=t' alone signs like name='a' plus type='t'; HMAC tells them apart."""
    good = hmac_params(app_, "/job/genId", {"name": "a", "type": "t"})
    sign = dict(good)["sign"]
    forged = [(k, v) for k, v in good if k not in ("name", "type", "sign")] + [("name", "a&type=t"), ("sign", sign)]
    assert api.error("/job/genId", forged) == AUTH_FAILED


def test_an_app_can_refuse_md5(api, server, app_):
    server.cli("app-set", app_["app_key"], "--sign-policy", "hmac")
    api.ok("/job/genId", hmac_params(app_, "/job/genId", {"name": "n", "type": "t"}))

    def md5_refused():
        response = api.call("/job/genId", {"name": "n", "type": "t"}, app_)
        return response.status_code == 401 and response.json()["error"] == 1028

    wait_for(md5_refused, message="MD5 refused once the app's policy reloads")
