"""Marks of clicked deliveries, one key per (delivery, client), so that each pair counts one click."""
from . import keys


class ClickMarks:
    def __init__(self, pools):
        self.commands = pools.commands

    def first(self, push_id: int, client_id: str, ttl_seconds: int) -> bool:
        """True for the first click of this client on this delivery while its mark lives."""
        return bool(self.commands.set(keys.clicked(push_id, client_id), 1, nx=True, ex=ttl_seconds))
