"""The fixtures in tests/data are the byte-for-byte copies their README lists."""

import hashlib
import re

from conftest import DATA


def test_fixture_checksums():
    listed = re.findall(r"^([0-9a-f]{64})  \./(\S+)$", (DATA / "README.md").read_text(), re.M)
    assert len(listed) >= 20
    files = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*")
                   if p.is_file() and p.name != "README.md")
    assert sorted(name for _, name in listed) == files
    for digest, name in listed:
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
