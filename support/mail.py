"""Outbound e-mail over SMTP (aiosmtplib): the message a customer gets, and sending it.

:func:`reply_message` is pure: it builds the e-mail of one agent reply to one ticket, from that ticket's
data only. Header values are built by the standard library's ``email`` package with the default policy,
which refuses a line break in a header (so nothing a customer typed can add a header), and the recipient is
given to SMTP explicitly (``RCPT TO`` is exactly the one address, whatever the headers say).
:class:`Mailer` sends; one connection per message (replies are rare, and a job retries a failed send).
"""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

import aiosmtplib

from support.settings import MailSettings

SUBJECT_CHARS = 120  # a subject line people can read in a list


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (every run of whitespace, line breaks included, as one space), shortened."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def reply_message(
    *,
    settings: MailSettings,
    to: str,
    customer_name: str | None,
    subject: str,
    reply_text: str,
    agent_name: str | None,
    ticket_id: str,
    question: str,
    now: datetime,
) -> EmailMessage:
    """The e-mail of an agent's reply: ``Re: <subject>``, the reply, and what the customer asked."""
    message = EmailMessage()
    message["From"] = formataddr((settings.from_name, settings.from_address))
    message["To"] = to
    message["Subject"] = f"Re: {one_line(subject, SUBJECT_CHARS)}" if subject.strip() else "Your question"
    message["Date"] = format_datetime(now)
    domain = settings.from_address.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(idstring=f"ticket-{ticket_id}", domain=domain)
    message["X-Switchboard-Ticket"] = ticket_id
    named = customer_name and customer_name.strip()
    greeting = f"Hello {one_line(customer_name, 80)}," if customer_name and named else "Hello,"
    signature = f"{one_line(agent_name, 80)}, {settings.from_name}" if agent_name else settings.from_name
    quoted = "\n".join(f"> {line}" for line in question.strip().splitlines())
    body = (
        f"{greeting}\n\n{reply_text.strip()}\n\n-- \n{signature}\n\n"
        "You can also read this reply in the chat on our site.\n\n"
        f"You wrote:\n{quoted}\n"
    )
    message.set_content(body)
    return message


class Mailer:
    """Sends e-mail through the configured SMTP server."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    @property
    def enabled(self) -> bool:
        """An SMTP host is configured."""
        return self.settings.enabled

    async def send(self, message: EmailMessage, recipient: str) -> None:
        """Send ``message`` to exactly ``recipient``; raises ``aiosmtplib.SMTPException`` or ``OSError`` on
        failure (the job retries)."""
        s = self.settings
        if not s.host:
            raise RuntimeError("no SMTP host configured")
        await aiosmtplib.send(
            message,
            sender=s.from_address,
            recipients=[recipient],
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            timeout=s.timeout_s,
        )
