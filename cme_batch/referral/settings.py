"""The [referral] section: where referrals go and how they are protected on the way.

Two ways to encrypt, chosen by ``method``:

- ``smime``: the bundle is enveloped (AES-256) to the LA's certificate and to the school's own
  archive certificate, optionally signed first with the school's certificate and key;
- ``pdf-passphrase``: one AES-256-encrypted PDF, the passphrase agreed with the LA read from the
  secret store and never written into any message.

``auto`` (the default) picks S/MIME when an LA certificate is configured, else the passphrase
PDF when a passphrase is configured, else nothing: the referral is then held and the DSL is told
why. Certificates are only located here; their dates and keys are checked at use
(``cme_batch.referral.certs``), since a certificate valid today may expire before the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cme_batch.settings import SecretRef, Table

METHODS = ("auto", "smime", "pdf-passphrase")

DEFAULT_LA_EMAIL = "missingpupils@gloucestershire.gov.uk"
DEFAULT_LA_NAME = "Access to Education Team, Gloucestershire County Council"
DEFAULT_LA_ADDRESS = ("Shire Hall", "Westgate Street", "Gloucester GL1 2TP")
DEFAULT_LA_PHONE = "01452 426015"
DEFAULT_SHARING = "agreed by phone with the Access to Education Team"


@dataclass(frozen=True)
class ReferralConfig:
    la_email: str = DEFAULT_LA_EMAIL
    la_name: str = DEFAULT_LA_NAME
    la_address: tuple[str, ...] = DEFAULT_LA_ADDRESS
    la_phone: str = DEFAULT_LA_PHONE
    method: str = "auto"
    la_certificate: Path | None = None
    archive_certificate: Path | None = None
    signing_certificate: Path | None = None
    #: The signing key: a PEM file path (must not be readable by group or others) or a secret.
    signing_key: Path | SecretRef | None = None
    signing_key_password: SecretRef | None = None
    passphrase: SecretRef | None = None
    passphrase_sharing: str = DEFAULT_SHARING

    def chosen_method(self) -> str | None:
        """The method that will be used, or None when referrals must be held (nothing configured)."""
        if self.method != "auto":
            return self.method
        if self.la_certificate is not None:
            return "smime"
        if self.passphrase is not None:
            return "pdf-passphrase"
        return None

    @property
    def signs(self) -> bool:
        return self.signing_certificate is not None and self.signing_key is not None


def _signing_key(t: Table, base: Path) -> Path | SecretRef | None:
    """A plain string is a path to a PEM file; a table is a secret reference."""
    raw = t.data.get("signing_key")
    if isinstance(raw, str):
        return t.path("signing_key", base)
    return t.secret("signing_key")


def parse_referral(t: Table, base: Path) -> ReferralConfig:
    d = ReferralConfig()
    address = t.str_list("la_address") or d.la_address
    sharing = t.str("passphrase_sharing", d.passphrase_sharing)
    if sharing is not None and not sharing.strip():
        t.problems.add(t.key("passphrase_sharing"), "is empty",
                       "a sentence saying how the passphrase reaches the LA")
        sharing = d.passphrase_sharing
    cfg = ReferralConfig(
        la_email=t.email("la_email") or d.la_email,
        la_name=t.str("la_name", d.la_name) or d.la_name,
        la_address=address,
        la_phone=t.str("la_phone", d.la_phone) or d.la_phone,
        method=t.str("method", "auto", choices=METHODS) or "auto",
        la_certificate=t.path("la_certificate", base),
        archive_certificate=t.path("archive_certificate", base),
        signing_certificate=t.path("signing_certificate", base),
        signing_key=_signing_key(t, base),
        signing_key_password=t.secret("signing_key_password"),
        passphrase=t.secret("passphrase"),
        passphrase_sharing=sharing or d.passphrase_sharing,
    )
    _check_combinations(t, cfg)
    t.unknown_keys()
    return cfg


def _check_combinations(t: Table, cfg: ReferralConfig) -> None:
    """Report settings that cannot work together, so the first referral does not fail at night."""
    method = cfg.chosen_method()
    if method == "smime":
        if cfg.la_certificate is None:
            t.problems.add(t.key("la_certificate"), "is missing while method is 'smime'",
                           "the path of the LA's S/MIME certificate (PEM, DER or a .p7b export)")
        if cfg.archive_certificate is None:
            t.problems.add(t.key("archive_certificate"), "is missing while referrals are sent by S/MIME",
                           "the path of the school's own archive certificate, so the school can read what it sent")
    if method == "pdf-passphrase" and cfg.passphrase is None:
        t.problems.add(t.key("passphrase"), "is missing while method is 'pdf-passphrase'",
                       'a secret reference such as { credential = "la-passphrase" }')
    if (cfg.signing_certificate is None) != (cfg.signing_key is None):
        missing = "signing_key" if cfg.signing_key is None else "signing_certificate"
        t.problems.add(t.key(missing), "is missing (signing needs both a certificate and its key)",
                       "both signing_certificate and signing_key, or neither")
    for name in ("la_certificate", "archive_certificate", "signing_certificate"):
        path = getattr(cfg, name)
        if path is not None and not path.is_file():
            t.problems.add(t.key(name), f"names {path}, which is not a readable file", "an existing file")
    if isinstance(cfg.signing_key, Path) and not cfg.signing_key.is_file():
        t.problems.add(t.key("signing_key"), f"names {cfg.signing_key}, which is not a readable file",
                       "an existing PEM file, or a secret reference")
