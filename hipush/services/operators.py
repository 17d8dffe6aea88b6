"""Operators of the console: accounts with a name and a password, stored as a salted scrypt hash."""
import functools
import re

from werkzeug.security import check_password_hash, generate_password_hash

from ..config import MIN_PASSWORD
from ..errors import bad_param

NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
ADMIN = "admin"  # the operator HIPUSH_CONSOLE_PASSWORD creates or updates
HASH_METHOD = "scrypt"


@functools.cache
def _unknown_operator_hash() -> str:
    """Checked against when the name is unknown, so that a wrong name costs as long as a wrong password."""
    return generate_password_hash("no operator has this password", method=HASH_METHOD)


class Operators:
    def __init__(self, store, audit):
        self.store = store
        self.audit = audit

    def set_password(self, name: str, password: str, by: str) -> bool:
        """Creates the operator or changes its password (audited as done `by`); True when it was created."""
        if not NAME.fullmatch(name or ""):
            raise bad_param("an operator name is 1-64 letters, digits or _ . @ -")
        if len(password or "") < MIN_PASSWORD:
            raise bad_param(f"a password has at least {MIN_PASSWORD} characters")
        created = self.store.put_operator(name, generate_password_hash(password, method=HASH_METHOD))
        self.audit.record(by, "create operator" if created else "set password", name)
        return created

    def ensure(self, name: str, password: str, by: str) -> None:
        """Gives the operator this password unless it has it already (each worker starting checks, one writes)."""
        operator = self.store.get_operator(name)
        if operator is None or not check_password_hash(operator["password_hash"], password):
            self.set_password(name, password, by)

    def still_valid(self, name: str, logged_in_ms: int) -> bool:
        """Whether a session that logged in at `logged_in_ms` still stands: the operator exists and its
        password has not changed since (a new password ends every session of the old one)."""
        operator = self.store.get_operator(name)
        return operator is not None and operator["updated_at"] <= logged_in_ms

    def authenticate(self, name: str, password: str):
        """The operator's row when the password is theirs, else None."""
        operator = self.store.get_operator(name) if NAME.fullmatch(name or "") else None
        if not check_password_hash(operator["password_hash"] if operator else _unknown_operator_hash(), password or ""):
            return None
        return operator


def ensure_admin() -> None:
    """HIPUSH_CONSOLE_PASSWORD, when set, becomes the password of the operator admin: gunicorn's master has a
    child process run this once per start, before any worker (a worker never needs the database to boot)."""
    from .. import config
    from ..storage.db import make_engine
    from ..storage.store import Store
    from .audit import Audit

    settings = config.load()
    if settings.console_password:
        store = Store(make_engine(settings.database_url))
        Operators(store, Audit(store)).ensure(ADMIN, settings.console_password, by="HIPUSH_CONSOLE_PASSWORD")
