"""The portal's part of the settings (declared with every other setting in tollway/settings/model.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tollway.settings import Settings


@dataclass(frozen=True)
class PortalSettings:
    """The developer portal's addresses, public URL, TLS, secret, outbox, and the admin port it calls."""

    web_addr: str
    grpc_addr: str
    public_url: str
    tls_cert_file: str
    tls_key_file: str
    secret: str
    outbox_dir: Path
    admin_addr: str
    admin_token: str
    gateway_url: str  # where consumers call the APIs, for the pages' examples

    @classmethod
    def of(cls, settings: Settings) -> PortalSettings:
        """Call with resolved settings (the secret and the outbox directory have defaults by then)."""
        if settings.portal_outbox_dir is None or not settings.portal_secret:
            raise ValueError("portal settings need resolved() settings")
        return cls(
            web_addr=settings.portal_addr,
            grpc_addr=settings.portal_grpc_addr,
            public_url=settings.portal_url.rstrip("/"),
            tls_cert_file=settings.portal_tls_cert_file,
            tls_key_file=settings.portal_tls_key_file,
            secret=settings.portal_secret,
            outbox_dir=settings.portal_outbox_dir,
            admin_addr=settings.admin_addr,
            admin_token=settings.admin_token,
            gateway_url=f"http://{settings.gateway_addr}",
        )
