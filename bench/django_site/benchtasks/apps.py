from django.apps import AppConfig


class BenchTasksConfig(AppConfig):
    name = "benchtasks"

    def ready(self) -> None:
        # Every worker imports the tasks at start, before it forks or takes a task (rq's
        # performance advice: import before the fork, not in each job's child).
        from . import tasks  # noqa: F401
