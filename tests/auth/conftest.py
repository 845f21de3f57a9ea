from __future__ import annotations

import pytest
from idp.provider import idp, idp_ready

from ._support import Pki

__all__ = ["idp", "idp_ready", "pki"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Server CA + server cert for ``localhost``; client CAs and client certificates."""
    return Pki.create(tmp_path_factory.mktemp("auth-pki"))
