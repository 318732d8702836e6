"""Reading replies: the first unquoted line, the command grammar, refusals, Authentication-Results."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import given
from hypothesis import strategies as st

from cme_batch.replies import authres
from cme_batch.replies import parse as p
from tests.replies_support import DSL, MX, reply, trusted_pass


def command(raw: bytes) -> tuple[p.Command | None, str | None]:
    return p.command_of(p.read_message(raw))


def test_a_top_posted_reply_is_read_from_its_first_line() -> None:
    raw = reply(DSL, "Re: x", "\n\n  CONFIRM CME-2026-0007  \n\nDee\n\nOn Monday cme-batch wrote:\n> HOLD CME-2026-0007 x\n")
    assert command(raw) == (p.Command("CONFIRM", "CME-2026-0007"), None)


def test_quoted_lines_are_skipped_and_never_acted_on() -> None:
    bottom_posted = "> Reply CONFIRM CME-2026-0007 to send it.\n>\n\nCLOSE CME-2026-0007 family moved, LA told\n"
    assert command(reply(DSL, "Re: x", bottom_posted)) == (
        p.Command("CLOSE", "CME-2026-0007", "family moved, LA told"), None)
    only_quoted = "> CONFIRM CME-2026-0007\n>> CONFIRM CME-2026-0007\n"
    assert command(reply(DSL, "Re: x", only_quoted)) == (None, p.EMPTY)
    signature_first = "Thanks\n> CONFIRM CME-2026-0007\n"
    assert command(reply(DSL, "Re: x", signature_first)) == (None, p.NOT_COMMAND)


def test_the_command_grammar() -> None:
    assert p.parse_command("confirm cme-2026-0007") == (p.Command("CONFIRM", "CME-2026-0007"), None)
    assert p.parse_command("CONFIRM CME-2026-0007 yes please") == (None, p.CONFIRM_ONLY_REF)
    assert p.parse_command("HOLD CME-2026-0007") == (None, p.NEEDS_TEXT)
    assert p.parse_command("HOLD CME-2026-0007 waiting for the social worker") == (
        p.Command("HOLD", "CME-2026-0007", "waiting for the social worker"), None)
    assert p.parse_command("NOTE CME-2026-0007 first-day-call: no answer") == (
        p.Command("NOTE", "CME-2026-0007", "first-day-call: no answer"), None)
    assert p.parse_command("APPROVE CME-2026-0007") == (None, p.NOT_COMMAND)
    assert p.parse_command("CONFIRM") == (None, p.NOT_COMMAND)
    assert p.parse_command("NOTE CME-2026-0007 " + "x" * 1001) == (None, p.TOO_LONG)


def test_html_only_and_attachments_are_refused() -> None:
    html_only = reply(DSL, "Re: x", None, html="<p>CONFIRM CME-2026-0007</p>")
    assert command(html_only) == (None, p.HTML_ONLY)
    both = reply(DSL, "Re: x", "CONFIRM CME-2026-0007\n", html="<p>CONFIRM CME-2026-0007</p>")
    assert command(both) == (p.Command("CONFIRM", "CME-2026-0007"), None)
    with_pdf = reply(DSL, "Re: x", "CONFIRM CME-2026-0007\n", attachment=b"%PDF-1.4")
    assert command(with_pdf) == (None, p.ATTACHMENTS)


def test_the_sender_is_the_one_from_address() -> None:
    assert p.sender_of(p.read_message(reply("DSL@School.Example", "s", "x"))) == DSL
    two = reply(DSL, "s", "x").replace(b"From: Staff Member <dsl@school.example>",
                                       b"From: dsl@school.example, evil@else.example")
    assert p.sender_of(p.read_message(two)) is None


def test_a_note_records_a_known_action_or_free_text() -> None:
    assert p.note_detail("home-visit: nobody home, card left", DSL) == (
        "action", {"action": "home_visit", "outcome": "nobody home, card left", "by": DSL})
    assert p.note_detail("First-Day-Call no answer", DSL)[1]["action"] == "first_day_call"
    assert p.note_detail("spoke to the aunt", DSL) == ("note", {"action": "note", "text": "spoke to the aunt",
                                                                 "by": DSL})


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=8))
def test_the_first_unquoted_line_is_never_quoted_or_blank(lines: list[str]) -> None:
    line = p.first_unquoted_line("\n".join(lines))
    if line is not None:
        assert line.strip() and not line.startswith(">")


def test_authentication_results_parsing() -> None:
    ar = authres.parse('MX.School.Example 1; dkim = pass (good signature) header.d=school.example '
                       'header.s="sel 1"; spf=softfail smtp.mailfrom=x.example; dmarc=pass header.from=school.example')
    assert ar is not None and ar.authserv_id == "mx.school.example"
    assert [(r.method, r.result) for r in ar.results] == [("dkim", "pass"), ("spf", "softfail"), ("dmarc", "pass")]
    assert ar.results[0].props == {"header.d": "school.example", "header.s": "sel 1"}
    assert authres.parse("mx.school.example; none") == authres.AuthResults("mx.school.example", ())


def check(raw: bytes, required: bool = True, trusted: tuple[str, ...] = (MX,)) -> str | None:
    return authres.check(p.read_message(raw), "school.example", trusted, required)


def test_only_the_topmost_header_from_a_trusted_server_counts() -> None:
    forged = "evil.example; dkim=pass header.d=school.example; dmarc=pass header.from=school.example"
    assert check(reply(DSL, "s", "x", auth_results=[trusted_pass()])) is None
    assert check(reply(DSL, "s", "x", auth_results=[forged])) == authres.NO_TRUSTED
    assert check(reply(DSL, "s", "x")) == authres.NO_TRUSTED
    # a header claiming our id but below our own (added before the message reached us) is not read
    ours_fail = f"{MX}; dkim=none; spf=fail; dmarc=fail header.from=school.example"
    assert check(reply(DSL, "s", "x", auth_results=[ours_fail, trusted_pass()])) == authres.DMARC_FAIL


def test_a_dkim_pass_counts_only_for_the_senders_domain() -> None:
    other = f"{MX}; dkim=pass header.d=mailer.example; dmarc=none"
    assert check(reply(DSL, "s", "x", auth_results=[other])) == authres.NO_PASS
    parent = f"{MX}; dkim=pass header.i=@school.example"
    assert authres.check(p.read_message(reply(DSL, "s", "x", auth_results=[parent])), "staff.school.example",
                         (MX,), True) is None
    dmarc_other = f"{MX}; dmarc=pass header.from=else.example"
    assert check(reply(DSL, "s", "x", auth_results=[dmarc_other])) == authres.NO_PASS


def test_when_not_required_only_an_explicit_dmarc_fail_holds_a_reply() -> None:
    assert check(reply(DSL, "s", "x"), required=False) is None
    assert check(reply(DSL, "s", "x", auth_results=[f"{MX}; dkim=fail; dmarc=none"]), required=False) is None
    assert check(reply(DSL, "s", "x", auth_results=[f"{MX}; dmarc=fail"]), required=False) == authres.DMARC_FAIL
    assert check(reply(DSL, "s", "x", auth_results=[f"{MX}; dmarc=fail"]), trusted=()) is None


def with_attached_email(outer: bytes, inner_body: str) -> bytes:
    """``outer`` with an e-mail attached to it (message/rfc822), as "forward as attachment" does."""
    inner = EmailMessage()
    inner["From"] = "teacher@school.example"
    inner["Subject"] = "draft"
    inner.set_content(inner_body)
    msg = p.read_message(outer)
    msg.add_attachment(inner)
    return msg.as_bytes()


def test_an_attached_email_is_an_attachment_and_its_command_is_never_read() -> None:
    inner = "CONFIRM CME-2026-0007\n\n(my suggestion - your call)\n"
    html_only = reply(DSL, "Re: x", None, html="<p>HOLD CME-2026-0007 not yet, I disagree</p>")
    assert command(with_attached_email(html_only, inner)) == (None, p.ATTACHMENTS)
    plain = reply(DSL, "Re: x", "HOLD CME-2026-0007 not yet, I disagree\n")
    assert command(with_attached_email(plain, inner)) == (None, p.ATTACHMENTS)


# What Exchange Online writes: no authserv-id, the first ';'-segment is already a result.
M365 = ("spf=pass (sender IP is 203.0.113.9) smtp.mailfrom=school.example; dkim=pass (signature was verified) "
        "header.d=school.example;dmarc=pass action=none header.from=school.example;compauth=pass reason=100")
M365_SPOOF = ("spf=fail (sender IP is 198.51.100.7) smtp.mailfrom=school.example; dkim=none (message not signed) "
              "header.d=none;dmarc=fail action=none header.from=school.example;compauth=fail reason=000")
FORGED_PASS = "dkim=pass header.d=school.example; dmarc=pass header.from=school.example"  # the sender wrote it


def test_a_header_without_an_authserv_id_is_recognised_as_such() -> None:
    ar = authres.parse(M365_SPOOF)
    assert ar.authserv_id is None
    assert [(r.method, r.result) for r in ar.results] == [
        ("spf", "fail"), ("dkim", "none"), ("dmarc", "fail"), ("compauth", "fail")]
    assert authres.parse('"a=b"; dkim=pass').authserv_id == "a=b"  # a quoted id may hold '='
    assert authres.parse("").authserv_id is None


def m365(*headers: str, required: bool = True, microsoft365: bool = True, trusted: tuple[str, ...] = ()) -> str | None:
    return authres.check(p.read_message(reply(DSL, "s", "x", auth_results=list(headers))), "school.example",
                         trusted, required, microsoft365)


def test_microsoft_365s_own_header_is_believed_only_as_the_topmost() -> None:
    assert m365(M365) is None  # the genuine reply: Exchange Online saw DMARC pass
    assert m365(M365_SPOOF, required=False) == authres.DMARC_FAIL  # a spoof is held back
    assert m365(M365_SPOOF, FORGED_PASS) == authres.DMARC_FAIL  # the sender's own pass, below, is not read
    assert m365(M365_SPOOF, f"{MX}; {FORGED_PASS}", trusted=(MX,)) == authres.DMARC_FAIL
    # a header without an id that is not the topmost was written before the message reached us
    assert m365(f"{MX}; dkim=none", FORGED_PASS) == authres.NO_TRUSTED
    # without the setting a header that names no server is nobody's: never believed
    assert m365(M365, microsoft365=False, trusted=(MX,)) == authres.NO_TRUSTED
    assert m365(M365_SPOOF, required=False, microsoft365=False, trusted=(MX,)) is None


def test_a_reason_the_mail_client_wrapped_onto_more_lines_is_read_whole() -> None:
    """Outlook's plain-text replies (and others not sending ``format=flowed``) break a long line at
    about 76 characters. Only the command's first line was read: the rest of the DSL's reason was
    lost from the case's history, and **a CLOSE asked as a question on its second line ("has the
    new school confirmed the place?") closed the case**. A command's text now runs on to the end of
    its paragraph (a blank line, the quoted original, or another command ends it); CONFIRM takes
    nothing after it, so a "Thanks" under it changes nothing."""
    wrapped = ("CLOSE CME-2026-0007 family moved to Bristol, the new school is St Mary's and\n"
               "they confirmed the place on the phone today\n\nDee\n\nOn Monday cme-batch wrote:\n> x\n")
    assert command(reply(DSL, "Re: x", wrapped)) == (p.Command(
        "CLOSE", "CME-2026-0007", "family moved to Bristol, the new school is St Mary's and they confirmed the "
        "place on the phone today"), None)
    asked = "CLOSE CME-2026-0007 family moved to Bristol, has the new school\nconfirmed the place?\n\nDee\n"
    assert command(reply(DSL, "Re: x", asked)) == (p.Command(
        "CLOSE", "CME-2026-0007", "family moved to Bristol, has the new school confirmed the place?"),
        p.CONDITIONAL_CLOSE)
    held = "HOLD CME-2026-0007 the social worker is visiting the family\ntomorrow morning\nFrom: cme-batch\n> x\n"
    assert command(reply(DSL, "Re: x", held)) == (p.Command(
        "HOLD", "CME-2026-0007", "the social worker is visiting the family tomorrow morning"), None)
    assert command(reply(DSL, "Re: x", "CONFIRM CME-2026-0007\nThanks\nDee\n")) == (
        p.Command("CONFIRM", "CME-2026-0007"), None)
