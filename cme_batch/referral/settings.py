"""The [referral] section: where referrals go and how they are encrypted (filled in by the referral work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cme_batch.settings import Table


@dataclass(frozen=True)
class ReferralConfig:
    la_email: str = "missingpupils@gloucestershire.gov.uk"


def parse_referral(t: Table, base: Path) -> ReferralConfig:
    return ReferralConfig(la_email=t.email("la_email") or ReferralConfig.la_email)
