"""Periodic jobs that one worker across all nodes runs per round: a Redis mark claimed for the round."""
from . import keys


class RunMarks:
    def __init__(self, pools):
        self.commands = pools.commands

    def claim(self, job: str, round_seconds: int) -> bool:
        """True for the one caller that runs `job` this round; the mark keeps every other off until it expires."""
        return bool(self.commands.set(keys.run_mark(job), 1, nx=True, ex=round_seconds))
