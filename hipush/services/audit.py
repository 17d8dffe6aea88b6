"""The audit log: every change made through the console, and to operators, with who made it and when."""


class Audit:
    def __init__(self, store):
        self.store = store

    def record(self, operator: str, action: str, detail: str) -> None:
        self.store.add_audit(operator, action, detail)

    def page(self, start: int, limit: int):
        """(total, rows) newest first."""
        return self.store.list_audit(start, limit)
