"""HMAC-SHA256 signing with timestamp and nonce (SPEC §6), end to end; written out independently."""
import hashlib
import hmac
import time
import uuid
from urllib.parse import quote

from support import wait_for


def hmac_params(app, params, timestamp=None, nonce=None):
    pairs = [("app_key", app["app_key"])] + list(params.items()) + [
        ("sign_method", "hmac-sha256"), ("timestamp", str(int(timestamp or time.time()))),
        ("nonce", nonce or uuid.uuid4().hex)]
    canonical = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(pairs, key=lambda p: p[0]))
    return pairs + [("sign", hmac.new(app["app_secret"].encode(), canonical.encode(), hashlib.sha256).hexdigest())]


def test_hmac_signed_calls_work_legacy_and_rest(api, server, app_):
    job = api.ok("/job/genId", hmac_params(app_, {"name": "a&b=c", "type": "t"}))["job_id"]
    assert api.ok("/job/stats", hmac_params(app_, {"job_id": str(job)}))["name"] == "a&b=c"
    response = api.http.post(server.base + "/manager/query_tags", data=hmac_params(app_, {}))
    assert response.json()["status"] == 1


def test_a_replayed_nonce_is_refused(api, app_):
    params = hmac_params(app_, {"name": "n", "type": "t"})
    api.ok("/job/genId", params)
    assert api.error("/job/genId", params) == (401, 1028)


def test_a_stale_or_future_timestamp_is_refused(api, app_):
    for skew in (-301, 301):
        assert api.error("/job/genId", hmac_params(app_, {"name": "n", "type": "t"},
                                                   timestamp=time.time() + skew)) == (401, 1028)


def test_md5_reading_of_a_split_value_does_not_pass_hmac(api, app_):
    """Under MD5, name='a&type=t' alone signs like name='a' plus type='t'; HMAC tells them apart."""
    good = hmac_params(app_, {"name": "a", "type": "t"})
    sign = dict(good)["sign"]
    forged = [(k, v) for k, v in good if k not in ("name", "type", "sign")] + [("name", "a&type=t"), ("sign", sign)]
    assert api.error("/job/genId", forged) == (401, 1028)


def test_an_app_can_refuse_md5(api, server, app_):
    server.cli("app-set", app_["app_key"], "--sign-policy", "hmac")
    api.ok("/job/genId", hmac_params(app_, {"name": "n", "type": "t"}))

    def md5_refused():
        response = api.call("/job/genId", {"name": "n", "type": "t"}, app_)
        return response.status_code == 401 and response.json()["error"] == 1028

    wait_for(md5_refused, message="MD5 refused once the app's policy reloads")
