"""An email backend whose server is down (tests of notifications only)."""

from smtplib import SMTPServerDisconnected

from django.core.mail.backends.base import BaseEmailBackend


class Backend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise SMTPServerDisconnected("connection unexpectedly closed")
