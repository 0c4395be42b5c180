"""`pid`: the pseudonym a retailer id gets in the lake, under the key this process uses
($LAKECDP_PSEUDONYM_KEY, which tests/conftest.py sets, else conf/local/pseudonym.key)."""

from __future__ import annotations

from functools import lru_cache

from lakecdp.privacy.pseudonyms import Pseudonymizer, load_pseudonymizer


@lru_cache(maxsize=1)
def _pseudonymizer() -> Pseudonymizer:
    return load_pseudonymizer()


def pid(external_id: str) -> str:
    return _pseudonymizer().of(external_id)
