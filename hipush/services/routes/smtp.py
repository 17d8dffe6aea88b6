"""The e-mail route: one message per delivery, by SMTP (plain, STARTTLS or implicit TLS).

smtplib uses the socket module, which gunicorn's gevent workers have patched:
a slow mail server holds one greenlet, never the worker.
"""
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from .base import Delivery, Permanent, Retry

DEFAULT_SUBJECT = "hipush message"
SUBJECT_CHARS = 200
_ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+$")


def valid_address(address) -> bool:
    return bool(address) and len(address) <= 254 and bool(_ADDRESS.match(address))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:SUBJECT_CHARS]


def subject_and_text(content) -> tuple:
    """A notification's title and body (and url); a plain message's first line and whole text."""
    if isinstance(content, dict):
        title = str(content.get("title") or "")
        text = str(content.get("body") or "")
        url = str(content.get("url") or "")
    else:
        title, text, url = "", str(content), ""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    subject = _one_line(title) or _one_line(first_line) or DEFAULT_SUBJECT
    text = "\n\n".join(part for part in (text, url) if part)
    return subject, text


def compose(delivery: Delivery, sender: str) -> EmailMessage:
    subject, text = subject_and_text(delivery.message.get("content"))
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = sender
    mail["To"] = delivery.address
    mail["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "hipush"
    # the same for every attempt: a mailbox that gets a repeat (at-least-once delivery) can tell
    mail["Message-ID"] = f"<hipush.{delivery.push_id}.{delivery.client_id}@{domain}>"
    mail["X-Hipush-Delivery"] = str(delivery.push_id)
    mail.set_content(text + "\n", charset="utf-8")
    return mail


class SmtpRoute:
    def __init__(self, host: str, port: int, tls: str, user: str, password: str, sender: str, timeout: float):
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password = user, password
        self.sender = sender
        self.envelope_from = parseaddr(sender)[1]
        self.timeout = timeout

    def accepts(self, address) -> bool:
        return valid_address(address)

    def _connect(self) -> smtplib.SMTP:
        if self.tls == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.tls == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, delivery: Delivery) -> None:
        try:
            mail = compose(delivery, self.sender)
        except (ValueError, TypeError) as exc:  # e.g. an address the e-mail library cannot put in a header
            raise Permanent(f"cannot write this message as e-mail: {exc}") from None
        try:
            smtp = self._connect()
            try:
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(mail, self.envelope_from, [delivery.address])
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            _raise_for(code, f"recipient refused: {code} {_text(reply)}")
        except smtplib.SMTPResponseException as exc:
            _raise_for(exc.smtp_code, f"{exc.smtp_code} {_text(exc.smtp_error)}")
        except smtplib.SMTPNotSupportedError as exc:
            raise Permanent(f"the mail server cannot take this message: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections, TLS errors
            raise Retry(f"{type(exc).__name__}: {exc}") from None


def _text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _raise_for(code: int, reason: str):
    if 500 <= code < 600:
        raise Permanent(reason)
    raise Retry(reason)
