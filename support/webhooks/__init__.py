"""Outbound webhooks (Standard Webhooks): the event sink that records deliveries, and the jobs that send
them. See :mod:`support.webhooks.service` and, for where a webhook may point, :mod:`support.webhooks.urls`."""

from support.webhooks.service import WebhookService
from support.webhooks.urls import UnsafeWebhookUrl, check_webhook_url

__all__ = ["UnsafeWebhookUrl", "WebhookService", "check_webhook_url"]
