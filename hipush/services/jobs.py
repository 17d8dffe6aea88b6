"""Jobs group messages for statistics (the seed's 发送量 / 到达量 per job)."""
from ..errors import not_found


class Jobs:
    def __init__(self, store, stats):
        self.store = store
        self.stats = stats

    def create(self, app: dict, name: str, job_type: str) -> int:
        return self.store.create_job(app["id"], name, job_type)

    def get(self, app: dict, job_id: int) -> dict:
        job = self.store.get_job(app["id"], job_id)
        if job is None:
            raise not_found("no such job")
        return job

    def stats_of(self, app: dict, job_id: int) -> dict:
        job = self.get(app, job_id)
        return {"job_id": job["id"], "name": job["name"], "type": job["type"], "created_at": job["created_at"],
                **self.stats.totals("job", job["id"])}
