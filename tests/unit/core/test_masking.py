"""Masking passwords in DSNs, URLs, server lists and free text (outboxkit.masking), and the
CLI error that names an unreachable NATS server by its address."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outboxkit.cli import main
from outboxkit.masking import mask_dsn, mask_text, mask_url, mask_urls, masker, scrub


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/orders", "postgresql://app:***@db:5432/orders"),
        ("postgresql://app@db/orders", "postgresql://app@db/orders"),
        ("postgresql://db/orders", "postgresql://db/orders"),
        ("postgresql://app:p@ss:w/rd@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:p%40ss@[::1]:5432/x", "postgresql://app:***@[::1]:5432/x"),
        ("postgresql://app:pw@db:notaport/x", "postgresql://app:***@db:notaport/x"),
        (
            "postgresql://db/x?user=app&password=s3cret&ssl=1",
            "postgresql://db/x?user=app&password=***&ssl=1",
        ),
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password='s3 cret' dbname=x", "host=db password=*** dbname=x"),
        (
            "mongodb://u:pw@h1:27017,h2:27017/db?replicaSet=rs",
            "mongodb://u:***@h1:27017,h2:27017/db?replicaSet=rs",
        ),
    ],
)
def test_mask_dsn_hides_passwords_only(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


def test_mask_url_keeps_malformed_urls_readable() -> None:
    assert mask_url("nats://127.0.0.1:1") == "nats://127.0.0.1:1"
    assert mask_url("nats://127.0.0.1:1:") == "nats://127.0.0.1:1:"
    assert mask_url("nats://u:pw@127.0.0.1:1:") == "nats://u:***@127.0.0.1:1:"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("nats://s3cr3t@host:4222", "nats://***@host:4222"),
        ("nats://u:p4ss@host:4222", "nats://u:***@host:4222"),
        ("tls://host:4222", "tls://host:4222"),
    ],
)
def test_a_user_alone_is_masked_where_it_is_a_token(url: str, masked: str) -> None:
    assert mask_url(url, user_is_secret=True) == masked
    assert mask_url("postgresql://app@db/x") == "postgresql://app@db/x"


def test_mask_urls_lists_servers() -> None:
    servers = ["nats://a:pw1@n1:4222", "nats://tok2@n2:4222", "nats://n3:4222"]
    assert mask_urls(servers, user_is_secret=True) == (
        "nats://a:***@n1:4222, nats://***@n2:4222, nats://n3:4222"
    )
    assert mask_urls([]) == ""


def test_mask_text_masks_every_url_and_key_value_password_in_a_sentence() -> None:
    text = (
        "cannot connect to NATS at nats://127.0.0.1:1: refused; tried postgresql://u:pw1@h/db, "
        "'mongodb://m:pw2@h:27017/' and host=h password=pw3 (nats://a:pw4@n:4222)"
    )
    masked = mask_text(text)
    assert "pw1" not in masked and "pw2" not in masked and "pw3" not in masked
    assert "pw4" not in masked
    assert masked.startswith("cannot connect to NATS at nats://127.0.0.1:1: refused;")
    assert "postgresql://u:***@h/db," in masked and "'mongodb://m:***@h:27017/'" in masked
    assert "password=*** (nats://a:***@n:4222)" in masked


def test_scrub_hides_a_password_quoted_on_its_own() -> None:
    url = "mongodb://app:hunter22@db/x"
    text = "auth failed for user app with password hunter22 at mongodb://app:hunter22@db/x"
    assert (
        scrub(text, url) == "auth failed for user app with password *** at mongodb://app:***@db/x"
    )
    assert scrub("token tok123 refused", "nats://tok123@h", user_is_secret=True) == (
        "token *** refused"
    )


def test_masker_hides_plain_secrets_urls_and_their_passwords() -> None:
    mask = masker(["tok-123456", "postgresql://app:hunter22@db/x", "pw"])
    text = mask("tok-123456 at postgresql://app:hunter22@db/x said hunter22; pw stays")
    assert text == "*** at postgresql://app:***@db/x said ***; pw stays"


def test_unreachable_nats_server_is_named_by_its_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("OUTBOXKIT_")]:
        monkeypatch.delenv(name)
    assert main(["migrate"]) == 0
    nats = ["--publisher", "nats", "--nats-servers", "nats://u:pw9@127.0.0.1:1"]
    timeouts = ["--nats-connect-timeout", "1", "--startup-timeout", "2.5s"]
    code = main(["relay", *nats, *timeouts, "--exit-when-idle"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith("outboxkit: error: cannot connect to NATS at nats://u:***@127.0.0.1:1: ")
    assert "pw9" not in err and "unparseable" not in err
