"""Parsing PROPFIND answers: servers spell hrefs and prefixes their own way."""

from __future__ import annotations

import pytest

from ensemble_orchestra.storage.multistatus import Entry, MultistatusError, parse_children, parse_properties

# As Apache mod_dav answers a Depth 1 PROPFIND (a collection, a file, an encoded name).
APACHE = b"""<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response><D:href>/webdav/env/charms/</D:href>
<D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/webdav/env/charms/sub/</D:href>
<D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/webdav/env/charms/a%20b%C3%A9.zip</D:href>
<D:propstat><D:prop><D:resourcetype/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>
"""

# Another server's style: absolute URLs, a default namespace, no trailing slash on collections.
OTHER = b"""<?xml version="1.0"?>
<multistatus xmlns="DAV:">
<response><href>http://h:80/webdav/env/charms</href>
<propstat><prop><resourcetype><collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>http://h:80/webdav/env/charms/x</href>
<propstat><prop><resourcetype/></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/elsewhere/y</href>
<propstat><prop><resourcetype/></prop><status>HTTP/1.1 200 OK</status></propstat></response>
</multistatus>
"""


def test_apache_answer() -> None:
    assert parse_children(APACHE, "/webdav/env/charms") == [
        Entry("a b\u00e9.zip", False),
        Entry("sub", True),
    ]


def test_absolute_hrefs_and_default_namespace() -> None:
    """The collection itself and anything outside it are left out."""
    assert parse_children(OTHER, "/webdav/env/charms/") == [Entry("x", False)]


@pytest.mark.parametrize("xml", [b"<html>502</html>", b"not xml", b"<?xml version='1.0'?><x:multistatus xmlns:x='y'/>"])
def test_not_a_multistatus(xml: bytes) -> None:
    with pytest.raises(MultistatusError):
        parse_children(xml, "/webdav/")


def test_properties_of_a_depth_0_answer() -> None:
    xml = b"""<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:"><D:response><D:href>/webdav/exclusive/claims/u/</D:href>
<D:propstat><D:prop><D:getlastmodified>Tue, 05 May 2026 10:00:00 GMT</D:getlastmodified></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:creationdate/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response></D:multistatus>"""
    assert parse_properties(xml) == {"getlastmodified": "Tue, 05 May 2026 10:00:00 GMT"}
