"""The rubric's late policy applied to one submission.

    rubric `late:` {deadline, percent_per_day, grace_minutes, whole_days, max_days, cap_percent}
    lateness = late.assess(policy, deadline, submission_info)    # -> Lateness or None
    lateness.points(earned)                                     # what it costs

The penalty is a percentage of the points earned (after item overrides), `percent_per_day`
for each day late (each started day when `whole_days`), at most `cap_percent`; later than
`max_days`, everything.  Within `grace_minutes` of the deadline a submission is on time.
A submission Canvas marked late whose time is unknown (its files' times are not after the
deadline, or there is no deadline) counts as one day late, and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime

from grader.errors import GraderError

DAY_S = 86400.0


class DeadlineError(GraderError):
    """A --deadline that is not an ISO time."""


def parse_time(text: str, what: str = "--deadline") -> datetime:
    """An ISO time; without a zone it is this machine's local time."""
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise DeadlineError(f"{what} {text!r} is not an ISO time such as 2026-03-01T23:59 or "
                            "2026-03-01T23:59:00+01:00") from None
    return value if value.tzinfo else value.astimezone()


@dataclass
class Lateness:
    submitted: str | None
    deadline: str | None
    days: float  # days late as the policy counts them
    percent: float  # of the earned points
    note: str  # one line for the student and the instructor

    def points(self, earned: float) -> float:
        return round(earned * self.percent / 100, 4)

    def to_dict(self) -> dict:
        return asdict(self)


def assess(policy, deadline: datetime | None, info: dict) -> Lateness | None:
    """How late the submission is and what percentage that costs; None when on time or unknown."""
    if policy is None:
        return None
    submitted = parse_time(info["time"], "submission time") if info.get("time") else None
    marked = bool(info.get("late_marker"))
    if deadline is not None and submitted is not None and submitted > deadline:
        seconds = (submitted - deadline).total_seconds()
        if seconds <= policy.grace_minutes * 60:
            return None
        days = math.ceil(seconds / DAY_S) if policy.whole_days else round(seconds / DAY_S, 4)
        source = info.get("time_source") or "submission time"
        how = f"submitted {_duration(seconds)} after the deadline ({source})"
    elif marked:
        days = 1.0
        how = ("marked late by the LMS; its time is unknown here (pass --deadline, or correct it in "
               "overrides.yaml), so it counts as 1 day late")
    else:
        return None
    if policy.max_days is not None and days > policy.max_days:
        percent = 100.0
        how += f": more than {policy.max_days:g} days late, no points"
    else:
        percent = min(100.0, days * policy.percent_per_day)
        if policy.cap_percent is not None:
            percent = min(percent, policy.cap_percent)
        how += f": {days:g} day{'s' * (days != 1)} x {policy.percent_per_day:g}% = {percent:g}% of the points"
    return Lateness(submitted.isoformat() if submitted else None, deadline.isoformat() if deadline else None,
                    float(days), round(percent, 4), how)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)} min"
    if seconds < DAY_S:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_S:.1f} days"
