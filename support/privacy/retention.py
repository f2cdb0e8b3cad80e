"""The retention sweep: erase conversations last active more than ``SWITCHBOARD_RETENTION_DAYS`` ago.

Started by the runtime in every process when retention is on. A Redis lock held for most of an interval
makes one process sweep per interval, whichever gets there first; each sweep erases at most ``batch``
conversations and the next sweep takes the rest, so a large backlog never blocks a process for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta

from support import keys
from support.privacy.customer_data import CustomerDataService
from support.redis_client import RedisClient
from support.settings import RetentionSettings

log = logging.getLogger(__name__)

LOCK_SHARE_OF_INTERVAL = 0.9  # the lock lapses just before the next sweep is due anywhere


async def sweep_once(
    service: CustomerDataService, settings: RetentionSettings, *, now: datetime | None = None
) -> dict[str, int]:
    """One bounded sweep (whoever calls it; the loop below adds the one-process-at-a-time lock)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.days)
    return await service.sweep_retention(cutoff, settings.batch)


async def retention_forever(
    service: CustomerDataService, redis: RedisClient, settings: RetentionSettings
) -> None:
    """The sweep loop owned by the runtime; errors are logged and the loop goes on."""
    lock_ms = max(1, int(settings.interval_s * 1000 * LOCK_SHARE_OF_INTERVAL))
    while True:
        try:
            if await redis.set(keys.retention_lock(), str(os.getpid()), nx=True, px=lock_ms):
                counts = await sweep_once(service, settings)
                if counts["conversations"]:
                    log.info("retention: erased %s", counts)
        except Exception:
            log.exception("retention sweep failed; retrying next interval")
        await asyncio.sleep(settings.interval_s)
