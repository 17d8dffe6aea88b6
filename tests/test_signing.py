"""Signatures and client credentials: pure functions, checked against the seed's formula written out by hand."""
import hashlib
import hmac

from hipush_client import protocol

from hipush import identity, signing
from support import seed_sign


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def test_md5_sign_matches_the_seed_example_for_job_gen_id():
    pairs = [("app_key", "k1"), ("name", "daily"), ("type", "news")]
    assert protocol.md5_sign(pairs, "s3cret") == md5("app_key=k1&name=daily&type=news" + "s3cret")


def test_md5_sign_sorts_by_name_and_ignores_sign_and_request_order():
    pairs = [("online", "false"), ("msg_type", "0"), ("sign", "x"), ("app_key", "k"), ("content", "hi there")]
    assert protocol.md5_canonical(pairs) == "app_key=k&content=hi there&msg_type=0&online=false"


def test_repeated_names_keep_request_order_and_appkey_counts_as_app_key():
    pairs = [("appkey", "k"), ("client_id", "c2"), ("topic", "t"), ("client_id", "c1")]
    assert protocol.md5_canonical(pairs) == "app_key=k&client_id=c2&client_id=c1&topic=t"
    assert protocol.md5_sign(pairs, "s") == seed_sign(pairs, "s")


def test_values_are_signed_raw_including_utf8():
    pairs = [("app_key", "k"), ("content", "你好 & =")]
    assert protocol.md5_sign(pairs, "s") == md5("app_key=k&content=你好 & =s")


def test_signature_matches_is_case_insensitive_and_rejects_others():
    pairs = [("app_key", "k"), ("x", "1")]
    good = protocol.md5_sign(pairs, "s")
    assert signing.signature_matches("/p", pairs, "s", good.upper())
    assert not signing.signature_matches("/p", pairs, "other", good)
    assert not signing.signature_matches("/p", pairs, "s", "")
    assert not signing.signature_matches("/p", pairs, "s", None)


def test_hmac_scheme_closes_the_md5_value_splitting_ambiguity():
    one_value = [("a", "1&b=2")]
    two_params = [("a", "1"), ("b", "2")]
    assert protocol.md5_canonical(one_value) == protocol.md5_canonical(two_params)
    assert protocol.hmac_canonical("/p", one_value) != protocol.hmac_canonical("/p", two_params)
    assert protocol.hmac_sign("/p", one_value, "s") != protocol.hmac_sign("/p", two_params, "s")


def test_hmac_canonical_string_is_the_path_a_newline_then_the_encoded_sorted_parameters():
    pairs = [("tag", "a b&c"), ("sign", "x"), ("appkey", "k"), ("nonce", "n")]
    assert protocol.hmac_canonical("/manager/del_tag", pairs) == "/manager/del_tag\napp_key=k&nonce=n&tag=a%20b%26c"
    expected = hmac.new(b"s", b"/manager/del_tag\napp_key=k&nonce=n&tag=a%20b%26c", hashlib.sha256).hexdigest()
    assert protocol.hmac_sign("/manager/del_tag", pairs, "s") == expected


def test_hmac_sign_is_chosen_by_sign_method_and_bound_to_its_path():
    pairs = [("app_key", "k"), ("sign_method", protocol.HMAC_METHOD), ("timestamp", "1"), ("nonce", "n")]
    sign = protocol.hmac_sign("/job/genId", pairs, "s")
    assert len(sign) == 64
    assert signing.signature_matches("/job/genId", pairs, "s", sign)
    assert not signing.signature_matches("/job/stats", pairs, "s", sign)
    assert not signing.signature_matches("/job/genId", pairs, "s", protocol.md5_sign(pairs, "s"))


def test_md5_signs_the_parameters_only_as_the_seed_defines_it():
    pairs = [("app_key", "k"), ("tag", "t")]
    sign = protocol.md5_sign(pairs, "s")
    assert signing.signature_matches("/manager/terminal_num_with_tag", pairs, "s", sign)
    assert signing.signature_matches("/manager/del_tag", pairs, "s", sign)


def test_json_values_are_signed_as_compact_sorted_json():
    assert protocol.json_value_text("text") == "text"
    assert protocol.json_value_text({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert [protocol.json_value_text(v) for v in (True, 1, None)] == ["true", "1", "null"]


def test_client_id_is_stable_per_app_and_device_and_needs_the_secret():
    cid = identity.client_id_for("secret", "app", "device")
    assert cid == identity.client_id_for("secret", "app", "device")
    assert len(cid) == 32 and int(cid, 16) >= 0
    assert cid != identity.client_id_for("secret", "app2", "device")
    assert cid != identity.client_id_for("secret", "app", "device2")
    assert cid != identity.client_id_for("other-secret", "app", "device")


def test_token_is_valid_only_for_its_client_until_it_expires():
    token = identity.issue_token("secret", "c1", epoch=3, expires_at=2000)
    assert identity.token_epoch("secret", "c1", token, now=1000) == 3
    assert identity.token_epoch("secret", "c2", token, now=1000) is None
    assert identity.token_epoch("secret", "c1", token, now=2000) is None
    assert identity.token_epoch("other", "c1", token, now=1000) is None


def test_tampered_or_malformed_tokens_are_refused():
    token = identity.issue_token("secret", "c1", epoch=0, expires_at=2000)
    expires, epoch, mac = token.split(".")
    for bad in (f"9999.{epoch}.{mac}", f"{expires}.1.{mac}", f"{expires}.{epoch}.{mac[:-1]}A", "", "a.b.c",
                "1.2", token + ".x", f"{'9' * 40}.0.{mac}"):
        assert identity.token_epoch("secret", "c1", bad, now=1000) is None, bad
