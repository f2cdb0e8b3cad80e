"""The retention sweep: erase conversations last active more than ``SWITCHBOARD_RETENTION_DAYS`` ago.

A periodic job when retention is on (``support.runtime``): the job engine runs each interval's sweep on one
worker. Each sweep erases at most ``batch`` conversations and the next sweep takes the rest, so a large
backlog never blocks a worker for long.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from support.privacy.customer_data import CustomerDataService
from support.settings import RetentionSettings

log = logging.getLogger(__name__)


async def sweep_once(
    service: CustomerDataService, settings: RetentionSettings, *, now: datetime | None = None
) -> dict[str, int]:
    """One bounded sweep."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.days)
    return await service.sweep_retention(cutoff, settings.batch)
