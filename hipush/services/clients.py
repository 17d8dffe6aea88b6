"""Clients: ids, tokens, revocation, locations (SPEC §3, §6)."""
import secrets
import time

from .. import identity
from ..errors import auth_failed, not_found

META_TTL = 86400  # seconds a client's token epoch stays cached in Redis
GEO_MAX_LATITUDE = 85.05112878
FIRST_EPOCHS = 2**30  # a new client's first token epoch is drawn from so many (the column is a 32-bit INT)


class Clients:
    def __init__(self, store, meta, geo, queue_ops, secret_key: str, token_lifetime: int):
        """meta, geo: storage.clients.ClientMeta and GeoIndex."""
        self.store = store
        self.meta = meta
        self.geo = geo
        self.queue_ops = queue_ops
        self.secret_key = secret_key
        self.token_lifetime = token_lifetime

    def register(self, app: dict, device_id: str, **fields) -> str:
        """The client id of a device. A new one is registered with the fields given; one registered before keeps
        its own, whatever is given (changing them is for the app's backend: /manager/update_terminal).
        A new client's first token epoch is random: the tokens of a deleted client of the same device carry
        that one's epochs, which it matches with a chance of about one in a billion, so they stay dead."""
        client_id = identity.client_id_for(self.secret_key, app["app_key"], device_id)
        epoch = secrets.randbelow(FIRST_EPOCHS)
        if self.store.add_client(client_id, app["id"], device_id, token_epoch=epoch, **fields):
            self.queue_ops.revive(client_id)
            if fields.get("lat") is not None:
                self._locate(app["id"], client_id, fields["lat"], fields["lng"])
        return client_id

    def get(self, app_id, client_id: str) -> dict:
        """A client of this app (app_id None: of any app), else 404 / 1026: another app's client looks missing."""
        client = self.store.get_client(client_id)
        if client is None or (app_id is not None and client["app_id"] != app_id):
            raise not_found("no such client")
        return client

    def issue_token(self, client: dict) -> dict:
        expires_at = int(time.time()) + self.token_lifetime
        token = identity.issue_token(self.secret_key, client["client_id"], client["token_epoch"], expires_at)
        return {"client_id": client["client_id"], "token": token, "expires_in": self.token_lifetime}

    def revoke(self, app: dict, client_id: str) -> None:
        client = self.get(app["id"], client_id)
        self.meta.cache(client_id, client["app_id"], self.store.bump_token_epoch(client_id))
        self.queue_ops.wake(client_id)  # a stream of the revoked token ends now, not at its max age

    def set_location(self, app_id: int, client_id: str, lat, lng) -> None:
        """lat and lng None: the client has no known location any more."""
        self.store.update_client(client_id, lat=lat, lng=lng)
        if lat is None:
            self.forget_locations(app_id, [client_id])
        else:
            self._locate(app_id, client_id, lat, lng)

    def forget_locations(self, app_id: int, client_ids) -> None:
        self.geo.remove(app_id, client_ids)

    def _locate(self, app_id: int, client_id: str, lat: float, lng: float) -> None:
        """The SQL row keeps the location; the app's Redis geo index answers /push/geo.
        Redis indexes latitudes up to ±85.05112878 (Web Mercator): the poles are clamped to that."""
        lat = max(-GEO_MAX_LATITUDE, min(GEO_MAX_LATITUDE, lat))
        self.geo.add(app_id, client_id, lat, lng)

    def token_epoch(self, client_id: str, token: str) -> int:
        """The epoch of a valid, unexpired token of this client, else 401 / 1028 (revocation is checked
        against it: by `authenticate`, or by the poll's first script)."""
        epoch = identity.token_epoch(self.secret_key, client_id, token, time.time())
        if epoch is None:
            raise auth_failed("bad or expired token")
        return epoch

    def authenticate(self, client_id: str, token: str) -> int:
        """The app id of a client whose token is valid, else 401 / 1028."""
        epoch = self.token_epoch(client_id, token)
        meta = self._meta(client_id)
        if meta is None or meta["epoch"] != epoch:
            raise auth_failed("token revoked")
        return meta["app_id"]

    def cache_meta(self, client_id: str) -> bool:
        """Caches the client's token epoch and app from SQL; False for an unknown client."""
        return self._meta(client_id, cached=False) is not None

    def _meta(self, client_id: str, cached: bool = True):
        """The token epoch and app of a client: Redis cache first, SQL when it misses."""
        found = self.meta.get(client_id) if cached else None
        if found:
            return found
        client = self.store.get_client(client_id)
        if client is None:
            return None
        self.meta.cache(client_id, client["app_id"], client["token_epoch"])
        return {"app_id": client["app_id"], "epoch": client["token_epoch"]}
