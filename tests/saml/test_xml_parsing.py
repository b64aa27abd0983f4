"""The hardened parser refuses, before libxml2 acts on them, documents that would make it open files."""

from __future__ import annotations

import base64
import os
import threading

import pytest
from saml2.sigver import XmlsecError

from broker.errors import InvalidResponse
from broker.saml import response as saml_response
from broker.saml.xml_parsing import parse


def _parse_in_time(document: bytes, seconds: float = 2.0):
    """Parse in a thread; return the exception raised, or fail if the parse is still blocked."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            parse(document)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    return worker, outcome


def test_a_doctype_naming_a_fifo_is_refused_without_opening_it(tmp_path):
    """libxml2 opens a DOCTYPE's SYSTEM file before the DTD refusal: reading a FIFO would block forever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    worker, outcome = _parse_in_time(f'<!DOCTYPE x SYSTEM "{fifo}"><x/>'.encode())
    if worker.is_alive():  # unblock the parser so the test ends, then fail
        with open(fifo, "wb"):
            pass
        worker.join(2)
        pytest.fail("the parser opened the file the DOCTYPE names")
    assert isinstance(outcome[0], XmlsecError) and "document type" in str(outcome[0])


@pytest.mark.parametrize("document", [
    '<x/>'.encode("utf-16"),
    b'<?xml version="1.0" encoding="UTF-16"?><x/>',
    b'<?xml version="1.0" encoding="ebcdic-cp-us"?><x/>',
    b"<x>\x00</x>",
    b'<!DOCTYPE x [<!ENTITY a "a">]><x>&a;</x>',
])
def test_documents_whose_bytes_could_hide_a_doctype_are_refused(document):
    with pytest.raises(XmlsecError):
        parse(document)


@pytest.mark.parametrize("document", [b"<x/>", b'<?xml version="1.0" encoding="utf-8"?><x/>',
                                      b"\xef\xbb\xbf<x>\xc3\xa4</x>"])
def test_utf8_documents_parse(document):
    assert parse(document).tag == "x"


def test_at_the_acs_a_doctype_is_an_invalid_response(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    encoded = base64.b64encode(f'<!DOCTYPE x SYSTEM "{fifo}"><x/>'.encode()).decode()
    with pytest.raises(InvalidResponse, match="document type"):
        saml_response._parse(encoded)
