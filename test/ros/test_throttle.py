"""ProblemLog: one line per kind per period, every case counted."""

from kos_audio.ros.throttle import ProblemLog


class Lines:
    """A logger that keeps what it is given, by level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))

    def error(self, text: str) -> None:
        self.lines.append(("error", text))


def test_repeats_of_a_kind_are_held_back_and_then_counted() -> None:
    now = [100.0]
    lines = Lines()
    problems = ProblemLog(lines, 5.0, clock=lambda: now[0])
    for _ in range(3):
        problems.warning("overflow", "queue full")
    problems.warning("format", "bad format")  # another kind is not held back
    now[0] += 5.0
    problems.warning("overflow", "queue full")
    assert lines.lines == [("warning", "queue full"), ("warning", "bad format"),
                           ("warning", "queue full (2 more like it not logged)")]


def test_errors_are_counted_even_when_not_logged() -> None:
    lines = Lines()
    problems = ProblemLog(lines, 5.0, clock=lambda: 0.0)
    problems.error("sink failed", kind="sink")
    problems.error("sink failed again", kind="sink")
    problems.error("disk full", kind="disk")
    assert problems.errors == 3
    assert problems.last_error == "disk full"
    assert lines.lines == [("error", "sink failed"), ("error", "disk full")]
